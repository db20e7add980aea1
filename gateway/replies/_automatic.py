"""Whether a mail is automatic: a bounce (delivery report) or an auto-reply (out of office, autoresponders).

Neither may ever count as a human's decision, so the checks lean to "automatic" for machines and stay quiet for a
human who merely mentions being away.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message
from typing import Literal

from gateway.replies._html import html_to_text
from gateway.replies._mime import body_parts, decoded_subject, parse_message, part_text, safe_header

AutomatedKind = Literal["auto_reply", "bounce"]

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
# An auto-reply's subject opens with its marker ("Automatic reply: …", "Out of Office: …", "Abwesenheitsnotiz: …"
# and kin in the languages Outlook, Exchange, Gmail and Notes speak). Never after a reply prefix: a human's
# "Re: Vacation request [#ABCD]" is a reply to a request about a vacation.
_AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^\s*(?:auto\w*[\s_-]*(?:reply|response|respons|answer|antwort|réponse|respuesta|risposta"
    r"|antwoord|svar|odpowiedź|vastaus|odpověď|yanıt)"
    r"|out of (?:the )?office|ooo\b|away from|away until|on vacation|on holiday|on leave|vacation (?:reply|notice)"
    r"|abwesen\w*|außer haus|ausser haus|absence|absent|réponse automatique|respuesta automática"
    r"|resposta automática|fuera de la oficina|risposta automatica|fuori ufficio|automatisch antwoord|afwezig"
    r"|frånvaro|automatiskt svar|poza biurem|odpowiedź automatyczna|автоответ|нет на месте|自動応答|自动回复|自動回覆"
    r"|不在|자동 응답|autosvar|fravær|poissa|otomatik yanıt|automatická odpověď|αυτόματη απάντηση)",
    re.I,
)
# How clients mark a reply, or a forward, in the subject: what follows is a human's subject, not a robot's.
_REPLY_PREFIX_RE = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|odp|ynt|res|rif|r|wg|tr|fw|fwd|enc|رد|השב|回复|回覆|答复|답장)\s*(?:\[\d+\])?\s*[:：]",
    re.I,
)
# Legacy out-of-office mail with no RFC 3834 header and the original subject: known by how its body opens (the
# absence, in the common languages) together with a return date or a stand-in, and no decision in sight.
_OOO_OPENING_RE = re.compile(
    r"^\W*(?:(?:hello|hi|dear \w+|good (?:morning|afternoon|day)|hallo|bonjour|hola|ciao|hej)\W+)?"
    r"(?:thank you for your (?:e-?mail|message)\W+|thanks for your (?:e-?mail|message)\W+"
    r"|vielen dank für ihre (?:e-?mail|nachricht)\W+|merci (?:pour|de) votre (?:e-?mail|message|courriel)\W+"
    r"|gracias por su (?:correo|mensaje)\W+|grazie per (?:la sua|il suo) (?:e-?mail|messaggio)\W+)?"
    r"(?:(?:i am|i'm|i will be|i'll be)\s+(?:currently\s+|now\s+)?"
    r"(?:out of (?:the )?office|away|on (?:vacation|holiday|leave|annual leave|parental leave|sick leave)"
    r"|travell?ing|out of town|on a business trip|not in the office|absent)"
    r"|ich bin (?:derzeit |zurzeit |momentan |ab .{0,30}? |bis .{0,40}? |vom .{0,40}? )*(?:nicht im büro|abwesend"
    r"|im urlaub|außer haus|nicht erreichbar)"
    r"|je suis (?:actuellement )?(?:absente?|en congés?|en vacances|hors du bureau|en déplacement)"
    r"|(?:je serai|j'?e serai) (?:absente?|en congés?)"
    r"|estoy (?:actualmente )?(?:fuera de la oficina|de vacaciones|ausente)"
    r"|sono (?:attualmente )?(?:fuori ufficio|in ferie|assente)"
    r"|ik ben (?:momenteel |tot .{0,30}? )?(?:afwezig|niet op kantoor|met vakantie)"
    r"|jag är (?:ledig|på semester|inte på kontoret|borta|tjänstledig)"
    r"|estou (?:fora do escritório|de férias|ausente)"
    r"|я (?:в отпуске|нахожусь в отпуске|отсутствую))",
    re.I,
)
_OOO_DETAIL_RE = re.compile(
    r"\buntil\b|\breturn|\bback (?:on|in|at|by)\b|limited access|\burgent|in my absence|\bbis\b|zurück|dringend"
    r"|vertretung|jusqu'|de retour|urgence|\bhasta\b|regreso|urgente|fino al|rientro|tot en met|\bterug\b"
    r"|tillbaka|\bдо\b|вернусь|\buntil\b|\bfrom .{1,30} to\b|\bvom .{1,30} bis\b",
    re.I,
)
# A human who mentions an absence and decides is a human: "I'm out tomorrow, but yes: approved".
_DECISION_HINT_RE = re.compile(
    r"\b(?:approved?|approving|reject(?:ed)?|denied|decline[ds]?|lgtm|go ahead|yes|genehmigt|freigegeben"
    r"|abgelehnt|approuvée?|refusée?|aprobado|rechazado|approvato|rifiutato|goedgekeurd|afgewezen)\b",
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
    subject = decoded_subject(safe_header(msg, "Subject"))
    sender = _address(safe_header(msg, "From"))
    replied = _REPLY_PREFIX_RE.match(subject) is not None
    auto_subject = not replied and _AUTO_REPLY_SUBJECT_RE.match(subject) is not None

    if (
        msg.get_content_type() == "multipart/report"
        or safe_header(msg, "X-Failed-Recipients")
        or any(
            part.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
            for part in msg.walk()
        )
    ):
        return "bounce"
    bounce_subject = not replied and _BOUNCE_SUBJECT_RE.search(subject) is not None
    if (_BOUNCE_SENDER_RE.match(sender) or bounce_subject) and not auto_subject:
        return "bounce"

    auto_submitted = safe_header(msg, "Auto-Submitted").lower()
    precedence = safe_header(msg, "Precedence").lower()
    automatic = (
        (auto_submitted and not auto_submitted.startswith("no"))
        or any(safe_header(msg, h) for h in _AUTO_HEADERS)
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or safe_header(msg, "Return-Path").replace(" ", "") == "<>"
        or _ROBOT_SENDER_RE.match(sender) is not None
        or auto_subject
    )
    if not automatic:
        return "auto_reply" if _legacy_out_of_office(msg) else None
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


def _legacy_out_of_office(msg: Message) -> bool:
    plain, markup = body_parts(msg)
    text = plain if plain is not None and plain.strip() else html_to_text(markup[:20_000]) if markup else ""
    opening = text.lstrip()[:600]
    return (
        _OOO_OPENING_RE.match(opening) is not None
        and _OOO_DETAIL_RE.search(opening) is not None
        and _DECISION_HINT_RE.search(opening) is None
    )


def _looks_like_bounce_body(msg: Message) -> bool:
    for part in msg.walk():
        if part.get_content_maintype() == "text" and _BOUNCE_BODY_RE.search(part_text(part)[:20_000]):
            return True
    return False


def _address(value: str) -> str:
    return email.utils.parseaddr(value)[1].lower()
