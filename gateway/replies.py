"""Reading human replies: what is new in a reply, whether a mail is automatic, and what it decides.

Pure functions, no I/O. The rules are general (how mail clients quote, sign and bounce), not tuned to any
single message: a reply is cut at the first sign of quoted history, then a trailing signature is dropped.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import html as htmllib
import re
from email.message import Message
from typing import Literal

AutomatedKind = Literal["auto_reply", "bounce"]
Decision = Literal["approve", "reject"]

# --- decoding -------------------------------------------------------------------------------------------


def parse_message(raw: bytes) -> Message:
    """Parse leniently (compat32: no header objects, several times faster, and it never raises on a bad
    header); a broken part is handled where it is decoded."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _decode(payload: bytes, declared: str | None) -> str:
    """Bytes to text. Try UTF-8 first when it decodes cleanly (a body labelled Big5 or Latin-1 is often UTF-8),
    then the declared charset, then Windows-1252, which decodes anything."""
    candidates = ["utf-8", declared, "cp1252", "latin-1"]
    if declared and declared.lower().replace("_", "-") in ("us-ascii", "ascii"):
        candidates = ["utf-8", "cp1252", "latin-1"]
    for charset in candidates:
        if not charset:
            continue
        try:
            return payload.decode(charset)
        except Exception:  # unknown, malformed (a NUL in its name) or not this charset
            continue
    return payload.decode("latin-1", "replace")


def part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the library trips on: take the bytes as they are
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    try:
        declared = part.get_content_charset()
    except Exception:
        declared = None
    return _decode(payload, declared)


def _body_parts(msg: Message) -> tuple[str | None, str | None]:
    """The first inline text/plain and text/html of the message (attachments and forwarded mails skipped)."""
    plain: str | None = None
    html: str | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "message":
            continue
        disposition = _safe_header(part, "Content-Disposition").lower()
        if disposition.startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part_text(part)
        elif ctype == "text/html" and html is None:
            html = part_text(part)
    return plain, html


# --- HTML -----------------------------------------------------------------------------------------------

_Q = "[\"']?"  # attribute values come double-quoted, single-quoted or bare
_HTML_QUOTE_MARKERS = [
    # Gmail, and Gmail-alikes
    rf"<div[^>]+class={_Q}[^>]*\bgmail_quote\b",
    rf"<div[^>]+class={_Q}[^>]*\bgmail_extra\b",
    # Outlook desktop / web / Hotmail
    rf"<div[^>]+id={_Q}divRplyFwdMsg",
    rf"<div[^>]+id={_Q}appendonsend",
    r"<div[^>]+style=[\"'][^\"']*border-top:\s*solid\s+#(?:B5C4DF|E1E1E1)",
    rf"<hr[^>]+id={_Q}stopSpelling",
    rf"<div[^>]+class={_Q}OutlookMessageHeader",
    rf"<span[^>]+id={_Q}OLK_SRC_BODY_SECTION",
    # Thunderbird
    rf"<div[^>]+class={_Q}moz-cite-prefix",
    rf"<blockquote[^>]+type={_Q}cite",
    # Apple Mail, Yahoo, Zimbra, Yandex, AOL, ProtonMail
    rf"<div[^>]+(?:class|id)={_Q}(?:ydp[a-z0-9]*)?yahoo_quoted",
    rf"<div[^>]+class={_Q}zmail_extra",
    rf"<div[^>]+data-marker={_Q}__QUOTED_TEXT__",
    rf"<div[^>]+class={_Q}protonmail_quote",
    rf"<div[^>]+id={_Q}AOLMsgPart",
    r"<blockquote",
]
_HTML_MARKER_RE = re.compile("|".join(_HTML_QUOTE_MARKERS), re.IGNORECASE)
_BREAK = re.compile(r"(?i)<br\s*/?>")
_BLOCK_EDGE = re.compile(r"(?i)</(?:p|div|tr|li|h[1-6]|blockquote|pre|table)\s*>|(?=<(?:p|div|tr|li|h[1-6]|hr)[\s/>])")


def html_to_text(markup: str) -> str:
    """Readable text from HTML: blocks become lines, entities are decoded, nothing else is interpreted."""
    text = re.sub(r"(?is)<(script|style|head|title)\b.*?</\1\s*>", "", markup)
    text = re.sub(r"(?is)<!--.*?-->", "", text)
    text = _BREAK.sub("\n", text)
    text = _BLOCK_EDGE.sub("\x00", text)  # block edges: one line break however many meet
    text = re.sub(r"(?s)<[^>]*>", "", text)
    text = re.sub(r"[ \t]*\x00(?:[ \t]*\x00)*[ \t]*", "\n", text)
    text = htmllib.unescape(text).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _strip_html_quotes(markup: str) -> str:
    match = _HTML_MARKER_RE.search(markup)
    return markup[: match.start()] if match else markup


# --- plain-text quotes ----------------------------------------------------------------------------------

# "On <date>, <person> wrote:" in many languages; the header may be wrapped over up to three lines.
_WROTE = (
    r"wrote|writes|schrieb|a écrit|a ecrit|escribió|escribio|ha escrito|scrisse|ha scritto|schreef|heeft geschreven"
    r"|skrev|kirjoitti|napisał|napisal|napsal|написал|написала|писал|пишет|escreveu|yazdı|írta|έγραψε|kirjutas"
    r"|rašė|rakstīja|написа|napísal|je napisal|je napisala|a scris|wrote on|寫道|写道|のメッセージ|님이 작성"
    r"|kaj|skrifaði|sendte"
)
_ON = r"On|Am|Le|El|Il|In data|Op|Den|På|Pe|Em|No|Dne|Dnia|W dniu|Dňa|Ons|Στις|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"
# The same words as plain endings: str.endswith with a tuple runs at C speed on every line.
_WROTE_ENDINGS = tuple(word.lower() for word in _WROTE.split("|"))
# "reply text On <date>, <someone> wrote:" on one line: the attribution starts mid-line.
_INLINE_ATTRIBUTION_RE = re.compile(
    rf"^(?P<reply>.*?\S)[\s\-]*\b(?:On|Le|Am|El|Il|Op)\s+(?P<rest>.{{8,300}}?(?:{_WROTE})(?:\s*\(a\))?\s*:?\s*)$",
    re.IGNORECASE,
)
_ON_START_RE = re.compile(rf"^\s*(?:{_ON})\b", re.IGNORECASE)
_DATE_HINT_RE = re.compile(r"\d{1,2}:\d{2}|\b(?:19|20)\d{2}\b|\d{1,2}[./]\d{1,2}", re.IGNORECASE)

_SEPARATOR_RES = [
    re.compile(
        r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original"
        r"|Messaggio originale|Oorspronkelijk bericht|Originalmeddelande|Oprindelig meddelelse"
        r"|Opprinnelig melding|Alkuperäinen viesti|Wiadomość oryginalna|Исходное сообщение"
        r"|Mensagem original|Původní zpráva|Eredeti üzenet|Αρχικό μήνυμα|Orijinal Mesaj)\s*-{2,}\s*$",
        re.I,
    ),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's line before its header block
    re.compile(r"^\s*\*?\s*(?:Reply above this line|Antworten Sie oberhalb dieser Zeile)", re.I),
]

# A forwarded message is material the human added, not our thread's history: it stays, and ends the search.
_FORWARD_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|Mensaje reenviado"
    r"|Messaggio inoltrato|Doorgestuurd bericht|Vidarebefordrat meddelande|Пересылаемое сообщение"
    r"|Mensagem encaminhada)\s*-{2,}|(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht"
    r"|Début du message réexpédié|Inicio del mensaje reenviado)\s*:)\s*$",
    re.I,
)
# Any localized header field: a few words, a colon, a value ("Message du : …", "Copie à : …").
_FIELD_LIKE_RE = re.compile(r"^\s*\**\s*[^\W\d][\w .'’-]{0,24}?\s*\**\s*:(?:\s|$)")
_RULE_LINE_RE = re.compile(r"^\s*(?:={3,}|-{3,}|_{3,}|\*{3,})\s*$")

# Outlook-style header blocks: "From: …" followed within a few lines by "Sent:/Date:/To:/Subject:".
_FROM_RE = re.compile(
    r"^\s*\**\s*(?:From|Von|De|Da|Van|Från|Fra|Lähettäjä|Od|От|Feladó|Kimden|送信者|发件人|寄件者|보낸 사람)"
    r"\s*\**\s*:",
    re.I,
)
_HEADER_FIELD_RE = re.compile(
    r"^\s*\**\s*(?:Sent|Date|To|Subject|Cc|Gesendet|Datum|An|Betreff|Envoyé|Date|À|Objet|Enviado|Fecha|Para|Asunto"
    r"|Inviato|Data|A|Oggetto|Verzonden|Aan|Onderwerp|Skickat|Till|Ämne|Sendt|Til|Emne|Lähetetty|Vastaanottaja"
    r"|Aihe|Wysłano|Do|Temat|Отправлено|Дата|Кому|Тема|Elküldve|Címzett|Tárgy|Gönderildi|Kime|Konu|Odesláno|Komu"
    r"|Předmět|送信日時|宛先|件名|发送时间|收件人|主题|日期)\s*\**\s*:",
    re.I,
)

_QUOTE_LINE_RE = re.compile(r"^\s*>")

# --- signatures -----------------------------------------------------------------------------------------

_MOBILE_SIGNATURE_RE = re.compile(
    r"^\s*(?:"
    r"Sent from (?:my|the|Mail|Outlook|Yahoo|Samsung|Windows|a mobile|an? )"
    r"|Sent with |Sent via |Get Outlook for |Envoyé de mon |Envoyé depuis |Gesendet von meinem |Von meinem .* gesendet"
    r"|Gesendet mit |Enviado desde mi |Enviado do meu |Enviado desde |Inviato da(?:l)? mio |Inviato da "
    r"|Verzonden met |Verzonden vanaf |Verstuurd vanaf mijn |Skickat från min |Sendt fra min |Lähetetty "
    r"|Wysłane z mojego |Отправлено с |Отправлено из |iPhoneから送信|从我的iPhone发送|發自我的 ?iPhone"
    r")",
    re.I,
)
_SIGNATURE_DELIMITER_RE = re.compile(r"^(?:-- ?|--|__)\s*$")


def _ends_with_wrote(line: str) -> bool:
    tail = line.rstrip(" \t:-_").lower()
    if tail.endswith("(a)"):
        tail = tail[:-3].rstrip()
    return tail.endswith(_WROTE_ENDINGS)


def _wrote_lines(lines: list[str]) -> set[str]:
    """The lines that end with a "wrote" word, found once per text and looked up after."""
    return {line for line in lines if _ends_with_wrote(line)}


def _is_quote_header(chunk: list[str], wrote: set[str]) -> bool:
    """Whether these consecutive non-blank lines are an attribution line ("On … wrote:" and kin)."""
    ends_with_wrote = chunk[-1] in wrote
    if not ends_with_wrote and not chunk[-1].rstrip().endswith(":"):
        return False
    text = " ".join(part.strip().lstrip(">").strip() for part in chunk).strip("-_ ")
    if len(text) > 400:
        return False
    has_date = bool(_DATE_HINT_RE.search(text))
    has_address = "@" in text
    if ends_with_wrote:
        return bool(_ON_START_RE.match(text) or has_date or has_address)
    # Date-first attributions without a verb: "2017-11-24 16:32 GMT+01:00 Name <a@b.c>:"
    return text.endswith(":") and has_date and has_address


def _sentence_then_gap(lines: list[str], i: int) -> bool:
    """A blank line follows line ``i``, which ends a sentence or names no date: text of its own ("No." / "no"),
    not the first part of a wrapped attribution (those carry the date: "On Mon, 1 Jan 2026 at 10:00,")."""
    if i + 1 >= len(lines) or lines[i + 1].strip():
        return False
    line = lines[i].rstrip()
    return line.endswith((".", "!", "?")) or not _DATE_HINT_RE.search(line)


def _quote_start(lines: list[str], wrote: set[str]) -> int | None:
    """Index of the first line of quoted history, or None. ``wrote``: see _wrote_lines."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _FORWARD_RE.match(line):
            return None
        if any(rx.match(line) for rx in _SEPARATOR_RES):
            return i
        first = line.strip().lstrip(">").strip().strip("-_ ")
        starts_like_attribution = bool(_ON_START_RE.match(first) or _DATE_HINT_RE.search(first))
        # An attribution may be wrapped over a few lines, some clients even leave blank lines inside it.
        for span in range(1, 6 if starts_like_attribution else 2):
            chunk = [x for x in lines[i : i + span] if x.strip()]
            if not lines[min(i + span, len(lines)) - 1].strip():
                continue
            if len(chunk) > 1 and _sentence_then_gap(lines, i) and _is_quote_header(chunk[-1:], wrote):
                break  # "No, wrong." + blank + "On … wrote:": the reply's own sentence, then the attribution
            if _is_quote_header(chunk, wrote):
                return i
        if _FROM_RE.match(line) and _header_block(lines, i):
            return _with_rule_above(lines, i)
        if _field_block(lines, i):
            return _with_rule_above(lines, i)
        if _QUOTE_LINE_RE.match(line) and _rest_is_quoted(lines, i):
            return i
        if _MOBILE_SIGNATURE_RE.match(line):
            return i  # mobile clients put the unmarked original right below
    return None


def _with_rule_above(lines: list[str], i: int) -> int:
    """Take a ruler line (=====, -----) just above a header block along with it."""
    j = i
    while j > 0 and (not lines[j - 1].strip() or _RULE_LINE_RE.match(lines[j - 1])):
        j -= 1
    return j if any(_RULE_LINE_RE.match(x) for x in lines[j:i]) else i


def _field_block(lines: list[str], start: int) -> bool:
    """Three or more header-like lines in a row, one a known header name and one with an address: a quoted
    header block in any language (a human's "Name: / Email: / Phone:" note has no header name)."""
    if not _FIELD_LIKE_RE.match(lines[start]) or (start > 0 and _FIELD_LIKE_RE.match(lines[start - 1])):
        return False
    run = []
    for line in lines[start : start + 8]:
        if not _FIELD_LIKE_RE.match(line):
            break
        run.append(line)
    known = any(_FROM_RE.match(x) or _HEADER_FIELD_RE.match(x) for x in run)
    return len(run) >= 3 and known and any("@" in x for x in run)


def _header_block(lines: list[str], start: int) -> bool:
    """A "From:" line opens a quoted header block when it is followed by another header field, or when two more
    follow closely."""
    following = next((x for x in lines[start + 1 : start + 3] if x.strip()), "")
    if _HEADER_FIELD_RE.match(following) and lines[start + 1].strip():
        return True
    fields = 0
    for line in lines[start + 1 : start + 8]:
        if _HEADER_FIELD_RE.match(line):
            fields += 1
        if fields >= 2:
            return True
    return fields >= 1 and any(_HEADER_FIELD_RE.match(x) and "subject" in x.lower() for x in lines[start : start + 8])


def _rest_is_quoted(lines: list[str], start: int) -> bool:
    """From here on, only quoted lines, blank lines, and at most a short trailer (a signature)."""
    unquoted = [x for x in lines[start:] if x.strip() and not _QUOTE_LINE_RE.match(x)]
    return len(unquoted) <= 4


def _split_inline_attribution(lines: list[str], wrote: set[str]) -> list[str]:
    """'reply On <date>, <someone> wrote:' becomes two lines, so the attribution is found like any other."""
    for i, line in enumerate(lines):
        if line not in wrote:
            continue
        match = _INLINE_ATTRIBUTION_RE.match(line)
        if match and _DATE_HINT_RE.search(match.group("rest")) and not _QUOTE_LINE_RE.match(line):
            head = match.group("reply").rstrip("- ")
            tail = line[len(match.group("reply")) :].lstrip("- ")
            wrote.add(tail)
            return [*lines[:i], head, tail, *lines[i + 1 :]]
    return lines


def _after_quote(lines: list[str], cut: int, wrote: set[str]) -> list[str]:
    """The unquoted lines after an attribution and its '>' block, up to any further quoted history."""
    i = cut + 1
    while i < len(lines) and (not lines[i].strip() or _QUOTE_LINE_RE.match(lines[i])):
        i += 1
    rest = lines[i:]
    again = _quote_start(rest, wrote)
    return rest[:again] if again is not None else rest


def _strip_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIGNATURE_DELIMITER_RE.match(line) and i > 0 and len(lines) - i <= 15:
            return lines[:i]
        if _MOBILE_SIGNATURE_RE.match(line) and len(lines) - i <= 4:
            return lines[:i]
    return lines


def _clean_text(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    wrote = _wrote_lines(lines)
    lines = _split_inline_attribution(lines, wrote)
    cut = _quote_start(lines, wrote)
    if cut is not None:
        above = lines[:cut]
        # Top-posted: the new text is above the quote. Bottom-posted: it follows the quote.
        lines = above if any(x.strip() for x in above) else _after_quote(lines, cut, wrote)
    # Inline-quoted lines left after the new text (rare): drop trailing ones.
    while lines and (not lines[-1].strip() or _QUOTE_LINE_RE.match(lines[-1])):
        lines.pop()
    lines = _strip_signature(lines)
    return "\n".join(lines).strip()


# --- public API -----------------------------------------------------------------------------------------


def extract_reply(raw: bytes | str | Message, *, html: bool = False) -> str:
    """The new text of a reply, without quoted history or signature.

    ``raw`` as bytes is a whole RFC 822 message (the text part is preferred, else the HTML one), or that message
    already parsed (by :func:`parse_message`: the pipeline parses each mail once); as str it is a bare body, HTML
    when ``html``. Never raises: a message it cannot take apart gives its body as plain text, not an error (the
    human's words are not lost to a parser's fault).
    """
    try:
        return _extract_reply(raw, html=html)
    except Exception:
        return _last_resort_text(raw)


def _last_resort_text(raw: bytes | str | Message) -> str:
    try:
        if isinstance(raw, Message):
            raw = raw.as_bytes()
        if isinstance(raw, bytes):
            head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
            raw = (body if sep else head).decode("utf-8", "replace")
        lines = raw.replace("\x00", "").splitlines()
        return "\n".join(line for line in lines if not line.startswith(">")).strip()[:100_000]
    except Exception:
        return ""


def _extract_reply(raw: bytes | str | Message, *, html: bool) -> str:
    if isinstance(raw, bytes | Message):
        plain, markup = _body_parts(parse_message(raw) if isinstance(raw, bytes) else raw)
        if plain is not None and plain.strip():
            return _clean_text(plain)
        if markup is not None:
            return _clean_text(html_to_text(_strip_html_quotes(markup)))
        return ""
    if html:
        return _clean_text(html_to_text(_strip_html_quotes(raw)))
    return _clean_text(raw)


# --- automatic mail -------------------------------------------------------------------------------------

_BOUNCE_SENDER_RE = re.compile(
    r"^(?:mailer[-_]?daemon|post[-_]?master|mail-daemon|bounces?|mail\.delivery|maildelivery|"
    r"mdaemon|smtp|delivery)(?:[+.\-][^@]*)?@",
    re.I,
)
_BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|delivery (?:status|failure|has failed|notification|problem|report)|"
    r"returned mail|mail delivery (?:failed|failure|system|subsystem)|failure notice|failed delivery|"
    r"delivery failed|could not be delivered|non[- ]?delivery|nondeliverable|rejected|"
    r"mail system error|returned to sender|message not delivered|permanent error|"
    r"unzustellbar|nicht zustellbar|non remis|non distribuable|no se puede entregar|"
    r"non recapitabile|onbestelbaar|kan inte levereras|ошибка доставки|不能送達|配信不能|"
    r"warning: could not send|delayed mail|delivery delayed|mail could not be|error sending|"
    r"message you sent|smtp error|permanent failure|delivery status notification",
    re.I,
)
_AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^(?:re:\s*)?(?:auto\w*[\s_-]*(?:reply|response|respons|answer|antwort|réponse|respuesta|risposta"
    r"|antwoord|svar|odpowiedź)"
    r"|out of (?:the )?office|ooo\b|away from|on vacation|on holiday|on leave|vacation|abwesend|abwesenheit"
    r"|außer haus|ausser haus|absence|absent|réponse automatique|respuesta automática|fuera de la oficina"
    r"|risposta automatica|fuori ufficio|automatisch antwoord|afwezig|frånvaro|automatiskt svar|poza biurem"
    r"|odpowiedź automatyczna|автоответ|нет на месте|自動応答|不在|자동 응답|autosvar|fravær|poissa)",
    re.I,
)
_BOUNCE_BODY_RE = re.compile(
    r"(?:^|\n)\s*(?:Diagnostic-Code|Final-Recipient|Original-Recipient|Action:\s*failed|Status:\s*5\.\d)|"
    r"could not be delivered|delivery to the following recipient|undeliverable|permanent(?:ly)? fail|"
    r"message could not be delivered|the following address(?:es)? (?:had|failed)|user unknown|"
    r"mailbox (?:unavailable|full|not found|does not exist)|no such user|address rejected|"
    r"this is the mail system at host|delivery has failed|returned to sender|unrouteable address|"
    r"invalid (?:user|recipient|address)|requested action not taken|not a member|loop (?:alert|detected)|"
    r"mail loop|duplicated message-id|\b55[0-4][ -]",
    re.I,
)


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return str(value).strip() if value is not None else ""


def _safe_header(msg: Message, name: str) -> str:
    try:
        return _header(msg, name)
    except Exception:  # a malformed header is as good as none
        return ""


def automated_kind(raw: bytes | Message) -> AutomatedKind | None:
    """ "bounce" for delivery reports, "auto_reply" for out-of-office and other automatic answers, or None.

    Neither ever counts as a human's decision. First: is it automatic at all (RFC 3834 headers, robot senders,
    list managers, an empty return path, an out-of-office subject, a delivery report)? Then: a bounce or an
    auto-reply, by structure, sender, subject and body. ``raw`` may be the message already parsed.
    """
    try:
        return _automated_kind(parse_message(raw) if isinstance(raw, bytes) else raw)
    except Exception:  # a mail too broken to read is no human's decision either
        return "auto_reply"


def _automated_kind(msg: Message) -> AutomatedKind | None:
    subject = _decoded_subject(_safe_header(msg, "Subject"))
    sender = _address(_safe_header(msg, "From"))
    auto_subject = bool(_AUTO_REPLY_SUBJECT_RE.search(subject))

    if (
        msg.get_content_type() == "multipart/report"
        or _safe_header(msg, "X-Failed-Recipients")
        or any(
            part.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
            for part in msg.walk()
        )
    ):
        return "bounce"
    if (_BOUNCE_SENDER_RE.match(sender) or _BOUNCE_SUBJECT_RE.search(subject)) and not auto_subject:
        return "bounce"

    auto_submitted = _safe_header(msg, "Auto-Submitted").lower()
    precedence = _safe_header(msg, "Precedence").lower()
    automatic = (
        (auto_submitted and not auto_submitted.startswith("no"))
        or any(_safe_header(msg, h) for h in _AUTO_HEADERS)
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or _safe_header(msg, "Return-Path").replace(" ", "") == "<>"
        or _ROBOT_SENDER_RE.match(sender) is not None
        or auto_subject
    )
    if not automatic:
        return None
    return "bounce" if not auto_subject and _looks_like_bounce_body(msg) else "auto_reply"


# Headers only automatic mail carries: auto-responders, and mailing-list managers' own notices.
_AUTO_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponse",
    "X-Autoresponder",
    "X-MLServer",
    "X-ML-Name",
    "Mailing-List",
    "X-Mailing-List",
    "List-Id",
    "X-Loop",
)
_ROBOT_SENDER_RE = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|auto[-_.]?reply|autoresponder|notifications?|"
    r"post[-_]?master|mailer[-_]?daemon|[a-z0-9._-]*-(?:admin|owner|request|bounces?))(?:[+.\-][^@]*)?@",
    re.I,
)


def _looks_like_bounce_body(msg: Message) -> bool:
    for part in msg.walk():
        if part.get_content_maintype() == "text" and _BOUNCE_BODY_RE.search(part_text(part)[:20_000]):
            return True
    return False


def _address(value: str) -> str:
    return email.utils.parseaddr(value)[1].lower()


def _decoded_subject(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


# --- decisions ------------------------------------------------------------------------------------------

_APPROVE_WORDS = frozenset(
    [
        "approve",
        "approved",
        "approves",
        "approving",
        "approval",
        "accept",
        "accepted",
        "agree",
        "agreed",
        "confirm",
        "confirmed",
        "yes",
        "yep",
        "yeah",
        "yup",
        "y",
        "ok",
        "okay",
        "okey",
        "k",
        "kk",
        "lgtm",
        "sure",
        "fine",
        "granted",
        "allow",
        "allowed",
        "authorized",
        "authorised",
        "proceed",
        "+1",
        "ack",
        "affirmative",
        "ja",
        "jawohl",
        "genehmigt",
        "genehmige",
        "einverstanden",
        "zugestimmt",
        "freigegeben",
        "passt",
        "oui",
        "approuvé",
        "approuve",
        "validé",
        "valide",
        "accepté",
        "sí",
        "si",
        "aprobado",
        "apruebo",
        "vale",
        "claro",
        "dale",
        "sì",
        "approvato",
        "approvo",
        "certo",
        "va",
        "bene",
        "akkoord",
        "goedgekeurd",
        "prima",
        "godkänd",
        "godkänt",
        "godkendt",
        "godkjent",
        "jo",
        "tak",
        "zatwierdzam",
        "zatwierdzone",
        "zgoda",
        "da",
        "одобряю",
        "одобрено",
        "да",
        "ок",
        "согласен",
        "sim",
        "aprovado",
        "aprovo",
        "claro",
        "evet",
        "onay",
        "kabul",
        "はい",
        "承認",
        "承認します",
        "了解",
        "ok",
        "です",
        "好",
        "好的",
        "同意",
        "批准",
        "可以",
        "是",
        "네",
        "승인",
        "예",
        "igen",
        "jóváhagyva",
        "ano",
        "schváleno",
        "schvaluji",
        "kyllä",
        "hyväksytty",
        "hyväksyn",
        "ναι",
        "εγκρίνεται",
    ]
)
_APPROVE_PHRASES = (
    "go ahead",
    "go for it",
    "sounds good",
    "looks good",
    "ship it",
    "do it",
    "all good",
    "good to go",
    "let's go",
    "lets go",
    "mach es",
    "mach das",
    "c'est bon",
    "d'accord",
    "vas-y",
    "adelante",
    "de acuerdo",
    "va bene",
    "ga je gang",
    "prosseguir",
    "pode seguir",
)
_APPROVE_EMOJI = ("👍", "✅", "✔", "☑", "👌", "🆗", "💯")
# A yes that comes with a condition is feedback, not approval: "ok, but change the subject".
_QUALIFIER_RE = re.compile(
    r"^\W*(?:but|however|except|only if|unless|although|though|aber|jedoch|außer|ausser|mais|sauf|pero|excepto|"
    r"salvo|però|tranne|maar|behalve|men|utom|ale|но|кроме|mas|exceto|ama|fakat|しかし|但是|不过)\b",
    re.I,
)
_FIRST_TOKEN_RE = re.compile(r"^\s*([^\s,.!?;:()\[\]\"'«»、。！？，：；]+)")


def parse_decision(text: str) -> tuple[Decision, str]:
    """("approve", the rest as comment) when the reply starts with an approve word; else ("reject", the text).

    The comment is the human's feedback for the agent, so a rejection keeps all of the new text. Anything that is
    not text is a rejection without comment.
    """
    if not isinstance(text, str):
        return "reject", ""
    stripped = text.strip()
    lowered = stripped.lower()
    rest: str | None = None
    for emoji in _APPROVE_EMOJI:
        if stripped.startswith(emoji):
            rest = stripped[len(emoji) :].lstrip("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")
            break
    if rest is None:
        for phrase in _APPROVE_PHRASES:
            if lowered.startswith(phrase) and not lowered[len(phrase) : len(phrase) + 1].isalnum():
                rest = stripped[len(phrase) :]
                break
    if rest is None:
        match = _FIRST_TOKEN_RE.match(stripped)
        if match and match.group(1).lower() in _APPROVE_WORDS:
            rest = stripped[match.end() :]
    if rest is None or rest.lstrip().startswith("?") or _QUALIFIER_RE.match(rest):
        return "reject", stripped
    comment = rest.lstrip(" \t,.!:;-–—、，。：！").strip()
    return "approve", comment
