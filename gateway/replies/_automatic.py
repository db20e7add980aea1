"""Whether a mail is automatic: a bounce (delivery report) or an auto-reply (out of office, autoresponders).

Neither may ever count as a human's decision, so the checks lean to "automatic" for machines and stay quiet for a
human who merely mentions being away.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message
from typing import Literal

from gateway.replies._mime import decoded_subject, parse_message, part_text, safe_header

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
    auto_subject = bool(_AUTO_REPLY_SUBJECT_RE.search(subject))

    if (
        msg.get_content_type() == "multipart/report"
        or safe_header(msg, "X-Failed-Recipients")
        or any(
            part.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
            for part in msg.walk()
        )
    ):
        return "bounce"
    if (_BOUNCE_SENDER_RE.match(sender) or _BOUNCE_SUBJECT_RE.search(subject)) and not auto_subject:
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
