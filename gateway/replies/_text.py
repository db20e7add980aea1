"""The new text of a plain-text reply: cut at the first sign of quoted history, then drop a trailing signature.

Each rule names the mail client or convention it reads. The history starts at an attribution ("On … wrote:" and
its kin in many languages and date formats), an Outlook or Lotus Notes header block, a separator line ("-----
Original Message -----"), a block of ">" lines, a mobile client's signature, or a forwarded message. New text is
above the history (top posting), below it (bottom posting), or between its ">" lines (an inline reply, kept
whole, as talon and Mailspring keep it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# "On <date>, <person> wrote:" in many languages; the header may be wrapped over up to five lines.
_WROTE = (
    r"wrote|writes|schrieb|a écrit|a ecrit|escribió|escribio|ha escrito|scrisse|ha scritto|schreef|heeft geschreven"
    r"|skrev|kirjoitti|napisał|napisal|napsal|написал|написала|писал|пишет|escreveu|yazdı|írta|έγραψε|kirjutas"
    r"|rašė|rakstīja|написа|napísal|je napisal|je napisala|a scris|wrote on|寫道|写道|のメッセージ|님이 작성"
    r"|kaj|skrifaði|sendte|كتب|כתב|כתבה|は書きました"
)
_ON = r"On|Am|Le|El|Il|In data|Op|Den|På|Pe|Em|No|Dne|Dnia|W dniu|Dňa|Ons|Στις|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"
# The same words as plain endings, and the last words of the spaced ones: a set lookup of a line's last word,
# and an endswith only for the scripts written without spaces (Chinese, Japanese, Korean).
_WROTE_ENDINGS = tuple(word.lower() for word in _WROTE.split("|"))
_WROTE_BY_LAST_WORD: dict[str, tuple[str, ...]] = {}
for _phrase in _WROTE_ENDINGS:
    _WROTE_BY_LAST_WORD[_phrase.split()[-1]] = (*_WROTE_BY_LAST_WORD.get(_phrase.split()[-1], ()), _phrase)
del _phrase
_WROTE_UNSPACED = tuple(word for word in _WROTE_ENDINGS if any(ch > "\u2fff" for ch in word))
# "reply text On <date>, <someone> wrote:" on one line: the attribution starts mid-line.
_INLINE_ATTRIBUTION_RE = re.compile(
    rf"^(?P<reply>.*?\S)[\s\-]*\b(?:On|Le|Am|El|Il|Op)\s+(?P<rest>.{{8,300}}?(?:{_WROTE})(?:\s*\(a\))?\s*:?\s*)$",
    re.IGNORECASE,
)
_ON_START_RE = re.compile(rf"^\s*(?:{_ON})\b", re.IGNORECASE)
# A time, a year (also CJK's "2026年"), or a numeric date.
_DATE_HINT_RE = re.compile(r"[0-9][0-9]?(?::[0-9]{2}|[./-][0-9]{1,2}[./-][0-9]{2})|(?:19|20)[0-9]{2}(?![0-9])")
# Bidirectional formatting marks: Gmail wraps right-to-left attributions (Hebrew, Arabic) in them.
_BIDI_RE = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_DASHES = "-=_*–—"
_SEPARATOR_RES = [
    re.compile(
        rf"^\s*[{_DASHES}]{{2,}}\s*(?:Original Message|Original Mail|Ursprüngliche Nachricht|Message d'origine"
        r"|Mensaje original|Messaggio originale|Oorspronkelijk bericht|Originalmeddelande|Oprindelig meddelelse"
        r"|Opprinnelig melding|Alkuperäinen viesti|Wiadomość oryginalna|Исходное сообщение"
        r"|Mensagem original|Původní zpráva|Eredeti üzenet|Αρχικό μήνυμα|Orijinal Mesaj|原始邮件|原始郵件"
        rf"|元のメッセージ|원본 메시지|Reply Message)\s*[{_DASHES}]{{2,}}\s*$",
        re.I,
    ),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's line before its header block
    re.compile(r"^\s*\*?\s*(?:Reply above this line|Antworten Sie oberhalb dieser Zeile)", re.I),
]

# A forwarded message is not the reply's text: Gmail's and Thunderbird's "---- Forwarded message ----" line,
# Apple Mail's "Begin forwarded message:", Lotus Notes' "----- Forwarded by Name/Org on <date> -----", in the
# languages those clients speak.
_FORWARD_WORD = (
    r"forward(?:ed|ing)?|weitergeleitet\w*|transf[ée]r[ée]|r[ée]exp[ée]di[ée]|reenviado|inoltrato|doorgestuurd"
    r"|vidarebefordrat|encaminhad[ao]|reencaminhad[ao]|пересыла\w*|переадресован\w*|przekazan[aey]|videresendt"
    r"|välitetty|転送|转发|轉寄|전달된|iletilen|přeposlan\w*|továbbított"
)
_FORWARD_RE = re.compile(
    rf"^\s*(?:[{_DASHES}]{{2,}}[^\n]{{0,40}}?\b(?:{_FORWARD_WORD})[^\n]{{0,90}}?[{_DASHES}]{{2,}}"
    rf"|(?:(?:Begin|Anfang|Début|Inicio|Inizio|Início|Начало|Start)\b[^:\n]{{0,40}}?)?(?:{_FORWARD_WORD})"
    r"[^:\n]{0,30}?\s*[:：])\s*$",
    re.I,
)
# A note that only points at the forward below ("FYI", "see below") hands the forwarded message over as the
# content: then it is kept, note and all.
_POINTER_RE = re.compile(
    r"^\W*(?:fyi|f\.y\.i\.?|for your (?:information|info|reference)|see (?:the )?(?:forwarded |forward )?"
    r"(?:message |mail |email |note |thread )?below|please see (?:below|the forward)|pfa|siehe unten|zur info"
    r"|zur kenntnis|z\.k\.|pour info(?:rmation)?|voir ci-dessous|para (?:tu|su) información|ver abajo|vedi sotto"
    r"|per conoscenza|zie hieronder|ter info|se nedan|för kännedom|til orientering|см\. ниже|для информации|参考)\b",
    re.I,
)
# Any localized header field: a few words, a colon, a value ("Message du : …", "Copie à : …").
_FIELD_LIKE_RE = re.compile(r"^\s*\**\s*[^\W\d][\w .'’-]{0,24}?\s*\**\s*:(?:\s|$)")
_RULE_LINE_RE = re.compile(rf"^\s*[{_DASHES}]{{3,}}\s*$")


# Outlook-style header blocks: "From: …" followed within a few lines by "Sent:/Date:/To:/Subject:", in the languages
# Outlook, Thunderbird, Apple Mail, Lotus Notes and the webmails write them. Looked up by name, not matched.
def _names(spec: str) -> frozenset[str]:
    return frozenset(spec.split("|"))


_FROM_NAMES = _names(
    "from|von|de|da|van|från|fra|lähettäjä|od|от|feladó|kimden|送信者|发件人|寄件者|보낸 사람|mittente|remitente"
    "|afzender|avsändare|nadawca|от кого"
)
_FIELD_NAMES = _names(
    "sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha|para|asunto|inviato|data|a"
    "|oggetto|verzonden|aan|onderwerp|skickat|till|ämne|sendt|til|emne|lähetetty|vastaanottaja|aihe|wysłano|do"
    "|temat|отправлено|дата|кому|тема|elküldve|címzett|tárgy|gönderildi|kime|konu|odesláno|komu|předmět|送信日時"
    "|宛先|件名|发送时间|收件人|主题|日期|sujet|pour|copie à|kopie|please respond to|받는 사람|제목"
    "|보낸 날짜"
)


def _field_name(line: str) -> str | None:
    """The name of a header-like "Name: value" line ("*From:*" and "Von :" too), lowercased, or None."""
    colon = line.find(":", 0, 40)
    if colon < 0:
        colon = line.find("：", 0, 40)
        if colon < 0:
            return None
    if line[colon + 1 : colon + 3] == "//":
        return None  # a URL
    return line[:colon].strip().strip("*").strip().lower()


def _is_from(line: str) -> bool:
    return _field_name(line) in _FROM_NAMES


def _is_field(line: str) -> bool:
    return _field_name(line) in _FIELD_NAMES


_QUOTE_LINE_RE = re.compile(r"^\s*>")
# A quoted line that the client wrapped inside a link leaves the link's tail unmarked (talon's observation).
_LINK_START_RE = re.compile(r"^\s*[(<]?(?:https?://|www\.)", re.I)
_OPEN_LINK_RE = re.compile(r"\((?:https?://|www\.)[^)]*$", re.I)

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
# The first letters the mobile signatures above start with: a set lookup spares most lines the pattern.
_MOBILE_FIRST = frozenset("SsGgEeVvIiLlWwОо从發")


class Reading(NamedTuple):
    text: str
    forwarded: bool  # a forwarded message followed the new text (it is not part of it)


def _ends_with_wrote(line: str) -> bool:
    tail = line.rstrip(" \t\xa0:：-_")
    if tail[-1:] in _NEVER_LAST:
        return False
    if tail.endswith("(a)"):
        tail = tail[:-3].rstrip()
    last = tail[tail.rfind(" ") + 1 :].lower()
    phrases = _WROTE_BY_LAST_WORD.get(last)
    if phrases is not None:
        return (len(phrases) == 1 and " " not in phrases[0]) or tail.lower().endswith(phrases)
    return not last.isascii() and last.endswith(_WROTE_UNSPACED)


# A line ending so does not end with a "wrote" word (nor with Polish's "napisał(a)").
_NEVER_LAST = frozenset(".,;!?\"'>]}0123456789…")


class _Wrote(dict[str, bool]):
    """Whether a line ends with a "wrote" word, worked out on first use (the scan stops at the history, so most
    lines of a long quote are never looked at)."""

    def __missing__(self, line: str) -> bool:
        value = self[line] = _ends_with_wrote(line)
        return value


def _is_quote_header(chunk: list[str], wrote: _Wrote) -> bool:
    """Whether these consecutive non-blank lines are an attribution line ("On … wrote:" and kin)."""
    ends_with_wrote = wrote[chunk[-1]]
    if not ends_with_wrote and not chunk[-1].rstrip().endswith((":", "：")):
        return False
    text = " ".join(part.strip().lstrip(">").strip() for part in chunk).strip("-_ ")
    if len(text) > 400:
        return False
    has_address = "@" in text
    if ends_with_wrote:
        return bool(has_address or _ON_START_RE.match(text) or _DATE_HINT_RE.search(text))
    # Verb-last or verb-first with the date at the end: "2017-11-24 16:32 GMT+01:00 Name <a@b.c>:" (Gmail in
    # many locales), "Max Muster schrieb am 02.04.2012 14:20:" (Thunderbird and Outlook in German).
    if not _DATE_HINT_RE.search(text):
        return False
    if has_address:
        return True
    lowered = text.lower()
    return any(word in lowered for word in _WROTE_ENDINGS)


def _sentence_then_gap(lines: list[str], i: int) -> bool:
    """A blank line follows line ``i``, which ends a sentence or names no date: text of its own ("No." / "no"),
    not the first part of a wrapped attribution (those carry the date: "On Mon, 1 Jan 2026 at 10:00,")."""
    if i + 1 >= len(lines) or lines[i + 1].strip():
        return False
    line = lines[i].rstrip()
    return line.endswith((".", "!", "?")) or not _DATE_HINT_RE.search(line)


def _starts_like_attribution(line: str) -> bool:
    first = line.strip().lstrip(">").strip().strip("-_ ")
    return bool(_ON_START_RE.match(first) or _DATE_HINT_RE.search(first))


def _attribution_at(lines: list[str], i: int, wrote: _Wrote, enders: list[bool]) -> bool:
    # An attribution may be wrapped over a few lines, some clients even leave blank lines inside it.
    for span in range(1, 6 if _starts_like_attribution(lines[i]) else 2):
        end = min(i + span, len(lines)) - 1
        if not enders[end] or not lines[end].strip():
            continue
        chunk = [x for x in lines[i : i + span] if x.strip()]
        if len(chunk) > 1 and _sentence_then_gap(lines, i) and _is_quote_header(chunk[-1:], wrote):
            return False  # "No, wrong." + blank + "On … wrote:": the reply's own sentence, then the attribution
        if _is_quote_header(chunk, wrote):
            return True
    return False


def _quote_start(lines: list[str], wrote: _Wrote) -> tuple[int, bool] | None:
    """(index of the first line of quoted history, whether it is a forwarded message), or None."""
    # Per line, worked out as the scan reaches nine lines ahead: ends like an attribution; looks like a field.
    enders: list[bool] = []
    colons: list[bool] = []
    count = len(lines)
    for i, line in enumerate(lines):
        while len(enders) < count and len(enders) < i + 9:
            ahead = lines[len(enders)]
            colon = ":" in ahead or "：" in ahead
            enders.append((colon and ahead.rstrip().endswith((":", "："))) or wrote[ahead])
            colons.append(colon and _field_name(ahead) is not None)
        first = line.lstrip()[:1]
        if not first:
            continue
        if (enders[i] or (any(enders[i + 1 : i + 5]) and _starts_like_attribution(line))) and _attribution_at(
            lines, i, wrote, enders
        ):
            return i, False
        # Cheap tests first: most lines are plain text, and every pattern below needs a dash, a colon or a ">".
        dashed = first in _DASHES
        colon = colons[i]
        if (dashed or colon) and _FORWARD_RE.match(line):
            return i, True
        if (dashed or first in "*RrAa") and any(rx.match(line) for rx in _SEPARATOR_RES):
            return i, False
        if colon and _is_from(line) and (_header_block(lines, i) or _last_from(lines, i)):
            return _with_rule_above(lines, i), False
        if colon and _field_block(lines, i):
            return _with_rule_above(lines, i), False
        if first == ">" and _rest_is_quoted(lines, i):
            return i, False
        if first in _MOBILE_FIRST and _MOBILE_SIGNATURE_RE.match(line):
            return i, False  # mobile clients put the unmarked original right below
        if ("@" in line or "/" in line) and _notes_header(lines, i, colons):
            return i, False
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
    known = any(_is_from(x) or _is_field(x) for x in run)
    return len(run) >= 3 and known and any("@" in x for x in run)


def _header_block(lines: list[str], start: int) -> bool:
    """A "From:" line opens a quoted header block when it is followed by another header field, or when two more
    follow closely."""
    following = next((x for x in lines[start + 1 : start + 3] if x.strip()), "")
    if _is_field(following) and lines[start + 1].strip():
        return True
    fields = 0
    for line in lines[start + 1 : start + 8]:
        if _is_field(line):
            fields += 1
        if fields >= 2:
            return True
    return fields >= 1 and any(_field_name(x) == "subject" for x in lines[start : start + 8])


def _last_from(lines: list[str], i: int) -> bool:
    """A "From: <address>" as the last line: Outlook for Mac writes it just above the section an HTML reader has
    already cut as history."""
    return "@" in lines[i] and not any(x.strip() for x in lines[i + 1 :])


_NOTES_PERSON_RE = re.compile(r"@|\b\w+/\w+")  # an address, or a Notes name "Jane Doe/Sales/Acme"


def _notes_header(lines: list[str], start: int, colons: list[bool]) -> bool:
    """Lotus Notes' reply header: the sender (an address or "Name/Org") with the date on its line or the next,
    then an indented block of To:, cc:, Subject: within a few lines."""
    if sum(colons[start + 1 : start + 9]) < 2:
        return False
    line = lines[start]
    if len(line) > 200 or not _NOTES_PERSON_RE.search(line) or _QUOTE_LINE_RE.match(line):
        return False
    if not (_DATE_HINT_RE.search(line) or (start + 1 < len(lines) and _DATE_HINT_RE.search(lines[start + 1]))):
        return False
    fields = [_field_name(x) for x in lines[start + 1 : start + 9]]
    fields = [x for x in fields if x in _FIELD_NAMES]
    return len(fields) >= 2 and any(x in ("to", "subject", "an", "betreff") for x in fields)


def _rest_is_quoted(lines: list[str], start: int) -> bool:
    """From here on, only quoted lines, blank lines, and at most a short trailer (a signature)."""
    unquoted = [x for x in lines[start:] if x.strip() and not _QUOTE_LINE_RE.match(x)]
    return len(unquoted) <= 4


def _inline_reply(lines: list[str], cut: int) -> bool:
    """An attribution followed by its ">" block, then the human's own text, then more ">" lines: a reply written
    between the quoted lines (talon's and Mailspring's convention: the whole is the reply). A quoted line that
    the client wrapped leaves a lone link unmarked; that is not text of the human's."""
    i = cut if _QUOTE_LINE_RE.match(lines[cut]) else cut + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or not _QUOTE_LINE_RE.match(lines[i]):
        return False  # unmarked history (Outlook and kin): everything below is the original
    seen_text = False
    previous = ""
    for line in lines[i:]:
        if not line.strip():
            continue
        if _QUOTE_LINE_RE.match(line):
            if seen_text:
                return True
        elif _SIGNATURE_DELIMITER_RE.match(line) or _MOBILE_SIGNATURE_RE.match(line):
            return False
        elif not (_LINK_START_RE.match(line) or _OPEN_LINK_RE.search(previous)):
            seen_text = True
        previous = line
    return False


def _split_inline_attribution(lines: list[str], wrote: _Wrote) -> list[str]:
    """'reply On <date>, <someone> wrote:' becomes two lines, so the attribution is found like any other."""
    for i, line in enumerate(lines):
        if not wrote[line]:
            continue
        match = _INLINE_ATTRIBUTION_RE.match(line)
        if match and _DATE_HINT_RE.search(match.group("rest")) and not _QUOTE_LINE_RE.match(line):
            head = match.group("reply").rstrip("- ")
            tail = line[len(match.group("reply")) :].lstrip("- ")
            wrote[tail] = True
            return [*lines[:i], head, tail, *lines[i + 1 :]]
    return lines


def _after_quote(lines: list[str], cut: int, wrote: _Wrote) -> tuple[list[str], bool]:
    """The unquoted lines after an attribution and its '>' block, up to any further quoted history."""
    i = cut + 1
    while i < len(lines) and (not lines[i].strip() or _QUOTE_LINE_RE.match(lines[i])):
        i += 1
    rest = lines[i:]
    again = _quote_start(rest, wrote)
    if again is None:
        return rest, False
    return rest[: again[0]], again[1]


def _strip_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        first = line.lstrip()[:1]
        if first in ("-", "_") and _SIGNATURE_DELIMITER_RE.match(line) and i > 0 and len(lines) - i <= 15:
            return lines[:i]
        if first in _MOBILE_FIRST and _MOBILE_SIGNATURE_RE.match(line) and len(lines) - i <= 4:
            return lines[:i]
    return lines


def points_at_forward(note: str) -> bool:
    """Whether the text above a forward only points at it ("FYI", "See below:")."""
    note = note.strip()
    return len(note) <= 100 and bool(_POINTER_RE.match(note))


def read_text(text: str) -> Reading:
    """The new text of a plain-text body."""
    text = _BIDI_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = text.split("\n")
    wrote = _Wrote()
    lines = _split_inline_attribution(lines, wrote)
    forwarded = False
    found = _quote_start(lines, wrote)
    if found is not None:
        cut, forwarded = found
        above = lines[:cut]
        if not forwarded and _inline_reply(lines, cut):
            pass  # the reply is between the quoted lines: keep it all
        elif forwarded and points_at_forward("\n".join(above)):
            pass  # "FYI" above a forward: the forwarded message is what the human sends
        elif forwarded or any(x.strip() for x in above):
            lines = above  # top posting (or a forward, which is not the reply)
        else:
            lines, forwarded = _after_quote(lines, cut, wrote)  # bottom posting: the new text follows the quote
    # Inline-quoted lines left after the new text: drop trailing ones.
    while lines and (not lines[-1].strip() or _QUOTE_LINE_RE.match(lines[-1])):
        lines.pop()
    lines = _strip_signature(lines)
    return Reading("\n".join(lines).strip(), forwarded)
