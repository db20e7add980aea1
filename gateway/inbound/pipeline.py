"""Replies by email: receive → match → screen → authenticate → read → act.

Each step is small and each refusal is its own exception, carrying its data and an audit ``reason``. Every
message ends as one ``inbound_messages`` row (its Message-ID and content unique, so a message seen twice acts
once, and a reused Message-ID hides nothing) and,
when it could be matched, as an event in that request's audit trail.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from gateway import addresses, forms, replies
from gateway.agents import service as agents
from gateway.approvals import service
from gateway.approvals.views import IS_REQUEST_MAIL
from gateway.errors import (
    AlreadyRespondedError,
    ArgumentsChangedError,
    FieldsRefusedError,
    NotAnApproverError,
    NotPendingError,
)
from gateway.links.tokens import TokenError
from gateway.mail import notices
from gateway.mail.compose import answer_fields, links_for, round_of
from gateway.models import (
    Agent,
    AgentMessage,
    InboundMessage,
    OutboxMessage,
    Recipient,
    Request,
    Response,
    build,
    from_row,
    new_id,
)
from gateway.services import Services

log = logging.getLogger("gateway.inbound")

REF_RE = re.compile(r"\[#([A-Za-z2-7]{8})\]")
MSGID_RE = re.compile(r"<[^<>\s]+>")


# --- refusals -------------------------------------------------------------------------------------------


class InboundError(Exception):
    """A message that decides nothing. ``reason`` is what the audit trail records; ``notify`` says whether the
    human deserves an explanation (never for automatic mail, nor for mail we cannot tie to a request)."""

    reason = "refused"
    notify = False
    # What the person is told, when it says more than the audit may keep (a signed link is theirs alone: the
    # audit trail, which the agent reads, must never hold one).
    explanation: str | None = None

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class DuplicateMessageError(InboundError):
    reason = "duplicate"

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"{message_id} was processed before")


class OwnMessageError(InboundError):
    reason = "own_message"

    def __init__(self, sender: str) -> None:
        self.sender = sender
        super().__init__(f"mail from the gateway's own address {sender} (a loop)")


class NoMatchingRequestError(InboundError):
    reason = "no_matching_request"


class AutomatedMessageError(InboundError):
    reason = "automated"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"automatic mail ({kind})")


class ForgedSenderError(InboundError):
    """From is not the recipient the reply was matched to. Never answered: the From may be anyone's (a forger
    must not be able to make the gateway mail a third party)."""

    reason = "sender_mismatch"

    def __init__(self, sender: str, expected: str) -> None:
        self.sender = sender
        self.expected = expected
        super().__init__(f"sent by {sender or 'nobody'}, but this reply address belongs to {expected}")


class SenderNotAuthenticatedError(InboundError):
    reason = "sender_not_authenticated"

    def __init__(self, sender: str, results: str, route: str = "tag") -> None:
        self.sender = sender
        self.results = results
        self.route = route
        how = "a reply to the signed Reply-To" if route == "tag" else f"a reply matched by its {route}"
        super().__init__(
            f"{how} needs a DMARC or aligned DKIM pass for {sender} from a trusted server"
            f" ({results or 'no Authentication-Results'})"
        )


class SenderNotAllowedError(InboundError):
    """Mail to an agent's address from someone not in its allowed senders."""

    reason = "sender_not_allowed"

    def __init__(self, sender: str, agent: str) -> None:
        self.sender = sender
        self.agent = agent
        super().__init__(f"{sender or 'nobody'} is not among the allowed senders of agent {agent}")


class NoAgentError(InboundError):
    """A reply to a notification that names no agent: nobody to deliver it to."""

    reason = "no_agent"


class UnreadableReplyError(InboundError):
    reason = "empty_reply"
    notify = True


class RequestClosedError(InboundError):
    reason = "request_not_pending"
    notify = True

    def __init__(self, request_id: str, status: str) -> None:
        self.request_id = request_id
        self.status = status
        super().__init__(f"{request_id} is already {status}")


class AlreadyAnsweredError(InboundError):
    reason = "already_responded"
    notify = True


class NotAnApproverReplyError(InboundError):
    reason = "not_an_approver"
    notify = True


class IncompleteAnswerError(InboundError):
    """A typed question's reply that misses a required field or gives one that does not parse: the person is
    told what, with the form's link, and the question stays open."""

    reason = "incomplete_answer"
    notify = True

    def __init__(self, errors: dict[str, str], labels: dict[str, str], form: str) -> None:
        self.errors = errors
        listed = "; ".join(f"{labels.get(name, name)} {text}" if name else text for name, text in errors.items())
        super().__init__(f"it does not answer every field the question asks for ({listed})")
        self.explanation = (
            f"{self.detail}. Reply again with one line per field, as 'Name: value', or answer on the form: {form}"
        )


class ArgumentsChangedReplyError(InboundError):
    """An approval by reply to a mail whose arguments an approver has changed since."""

    reason = "arguments_changed"
    notify = True

    def __init__(self, page: str) -> None:
        super().__init__(
            "another approver changed the arguments after the mail you answered was sent, so your approval cannot"
            " count for them"
        )
        self.explanation = (
            f"{self.detail}. The newer mail shows them as they are now; you can also decide on the page: {page}"
        )


# --- the steps ------------------------------------------------------------------------------------------


@dataclass
class Inbound:
    """What the pipeline learns about one message as it goes."""

    raw: bytes
    source: str
    msg: Message
    message_id: str
    sender: str
    subject: str
    digest: str = ""
    request: Request | None = None
    recipient: Recipient | None = None
    agent: Agent | None = None  # mail to an agent's address, or a reply to one of its notifications
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # decided | recorded | ignored | duplicate
    reason: str | None
    request_id: str | None
    detail: str | None = None


def receive(raw: bytes, source: str) -> Inbound:
    msg = replies.parse_message(raw)
    message_id = _first_msgid(_header(msg, "Message-ID"))
    if not message_id:  # no Message-ID: its content identifies it, so a re-read is still a duplicate
        message_id = _digest_id(raw)
    return Inbound(
        raw=raw,
        source=source,
        msg=msg,
        message_id=message_id,
        sender=addresses.normalise(_header(msg, "From")),
        subject=replies.decoded_subject(_header(msg, "Subject"))[:500],
        digest=content_digest(msg, raw),
    )


_CONTENT_HEADERS = ("From", "To", "Cc", "Subject", "Date", "In-Reply-To", "References")


def content_digest(msg: Message, raw: bytes) -> str:
    """What makes two copies the same mail: its author's headers and its body. Trace headers (Received,
    Delivered-To, Authentication-Results…) differ between routes (IMAP, a provider's webhook, a retry) and are
    left out; so a mail re-read or re-delivered is a duplicate, and another mail under a reused Message-ID is
    not."""
    digest = hashlib.sha256()
    for name in _CONTENT_HEADERS:
        digest.update(f"{name}:{' '.join(_header(msg, name).split())}\n".encode("utf-8", "replace"))
    normal = raw.replace(b"\r\n", b"\n")
    _, sep, body = normal.partition(b"\n\n")
    digest.update(body.rstrip() if sep else b"")
    return digest.hexdigest()[:32]


def screen_own(svc: Services, mail: Inbound) -> None:
    ours = {a.lower() for a in (svc.settings.from_address, svc.settings.reply_address_effective) if a}
    bare_ours = {_without_tag(a) for a in ours}
    if mail.sender and (mail.sender in ours or _without_tag(mail.sender) in bare_ours):
        raise OwnMessageError(mail.sender)


# The recipient, their request and the Message-ID of the request mail they got, in one Core statement (every
# reply runs it: a session and ORM loading cost more than the query).
_RECIPIENTS, _REQUESTS = Recipient.__table__, Request.__table__  # type: ignore[attr-defined]
_ORIGINAL = (
    select(OutboxMessage.message_id)
    .where(col(OutboxMessage.recipient_id) == _RECIPIENTS.c.id, IS_REQUEST_MAIL)
    .limit(1)
    .scalar_subquery()
)
_RECIPIENT = (
    sa_select(_RECIPIENTS, _REQUESTS, _ORIGINAL)
    .join_from(_RECIPIENTS, _REQUESTS, _REQUESTS.c.id == _RECIPIENTS.c.request_id)
    .where(_RECIPIENTS.c.id == bindparam("rcp"))
)


async def match(svc: Services, mail: Inbound) -> None:
    """Find the request and recipient: the plus-address tag, then threading headers, then the subject ref; or
    the agent whose address the mail was sent to, or whose notification it answers."""
    tags = _tags(svc, mail.msg)
    recipient_id = _signed_recipient(svc, tags)  # a request's Reply-To wins over an agent's address beside it
    agent_tag = next((t for t in tags if t.startswith(agents.TAG_PREFIX)), None) if recipient_id is None else None
    if agent_tag is not None:
        mail.agent = await agents.agent_by_tag(svc, agent_tag)
        if mail.agent is None:
            raise NoMatchingRequestError(f"no agent at this address ({agent_tag})")
        mail.extra["matched_by"] = "agent_address"
        return
    await _match_request(svc, mail, recipient_id)
    if mail.request is not None and mail.request.kind == "notification":
        if mail.request.agent_id is None:
            raise NoAgentError(f"a reply to notification #{mail.request.ref}, which names no agent")
        mail.agent = await agents.agent_by_id(svc, mail.request.agent_id)


async def _match_request(svc: Services, mail: Inbound, tagged: str | None) -> None:
    recipient_id = tagged or await _untagged(svc, mail)
    if recipient_id is None:
        if mail.request is not None:
            return  # a known request, but the sender is none of its recipients
        raise NoMatchingRequestError("no reply tag, known thread or subject reference")
    async with svc.db.reading() as conn:
        found = (await conn.execute(_RECIPIENT, {"rcp": recipient_id})).first()
    if found is None:
        raise NoMatchingRequestError(f"the reply tag names no known recipient ({recipient_id})")
    mail.recipient, mail.request = from_row(Recipient, found), from_row(Request, found)
    mail.extra["original_message_id"] = found[-1]
    mail.extra.setdefault("matched_by", "tag")


async def _untagged(svc: Services, mail: Inbound) -> str | None:
    """A reply without our tag (a client that replied to From, a forwarded copy): by thread, then subject."""
    async with svc.db.read() as session:
        ids = MSGID_RE.findall(_header(mail.msg, "In-Reply-To") + " " + _header(mail.msg, "References"))
        if ids:
            found = await session.exec(
                select(OutboxMessage.recipient_id, OutboxMessage.request_id).where(
                    col(OutboxMessage.message_id).in_(ids[-50:])
                )
            )
            row = found.first()
            if row is not None:
                mail.extra["matched_by"] = "thread"
                return row[0] or await _recipient_by_sender(session, row[1], mail.sender)
        ref = REF_RE.search(mail.subject)
        if ref:
            request = (await session.exec(select(Request).where(Request.ref == ref.group(1).upper()))).first()
            if request is not None:
                mail.request = request
                mail.extra["matched_by"] = "subject"
                return await _recipient_by_sender(session, request.id, mail.sender)
    return None


def screen_automated(mail: Inbound) -> None:
    kind = replies.automated_kind(mail.msg)
    if kind is not None:
        raise AutomatedMessageError(kind)


def authenticate_for_agent(svc: Services, mail: Inbound) -> None:
    """Mail to an agent's own address: the address is public, so From proves nothing by itself. Delivered only
    from an allowed sender with a DMARC (or aligned DKIM) pass from a trusted server."""
    assert mail.agent is not None
    if not agents.allowed(mail.agent, mail.sender):
        raise SenderNotAllowedError(mail.sender, mail.agent.name)
    _require_auth_pass(svc, mail, "agent address")
    mail.extra["authenticated"] = True


def _require_auth_pass(svc: Services, mail: Inbound, route: str) -> None:
    """A DMARC or aligned DKIM pass for the sender in an Authentication-Results header of a trusted server."""
    results = [str(v) for v in mail.msg.get_all("Authentication-Results") or []]
    if not auth_passes(results, svc.settings.trusted_authserv_id_list, mail.sender):
        raise SenderNotAuthenticatedError(mail.sender, " | ".join(results)[:300], route=route)


def authenticate(svc: Services, mail: Inbound) -> None:
    """Who may decide by reply (docs/security.md): the sender must be the recipient matched. Only a reply to that
    recipient's own signed Reply-To carries a secret; a reply matched by its thread headers or the subject's
    reference carries none (both are in every copy of the mail, and From is forgeable), so it decides only with
    a DMARC or aligned DKIM pass from a trusted server. INBOUND_REQUIRE_AUTH asks that of tagged replies too."""
    assert mail.request is not None
    if mail.recipient is None:
        raise ForgedSenderError(mail.sender, "another recipient")
    expected = addresses.normalise(mail.recipient.address)
    if mail.sender != expected:
        raise ForgedSenderError(mail.sender, expected)
    tagged = mail.extra.get("matched_by") == "tag"
    if svc.settings.inbound_require_auth or not tagged:
        _require_auth_pass(svc, mail, mail.extra.get("matched_by", "tag"))
    mail.extra["authenticated"] = True


FORWARD_NOTE = "reply included a forwarded message"


def read(mail: Inbound) -> None:
    reply = replies.read_reply(mail.msg)
    if reply.forwarded:
        mail.extra["note"] = FORWARD_NOTE  # not the reply's text, but worth a line in the audit trail
    if not reply.text.strip():
        if reply.forwarded:
            raise UnreadableReplyError("no new text in the reply, only a forwarded message")
        raise UnreadableReplyError("no new text in the reply (only quoted history, or an unreadable body)")
    mail.text = reply.text


async def act(svc: Services, mail: Inbound, record: InboundMessage) -> service.Decision:
    """Record the answer; the inbound record and the confirmation commit in the same transaction."""
    assert mail.request is not None and mail.recipient is not None and mail.text is not None
    request = mail.request
    recipient = mail.recipient
    meta = {"message_id": mail.message_id, "source": mail.source}
    if "note" in mail.extra:
        meta["note"] = mail.extra["note"]

    def also(current: Request, response: Response, decided: bool) -> list[Any]:
        record.outcome = "decided" if decided else "recorded"
        if response.late:  # kept for the agent to see, but the request was already decided
            record.reason = "late_response"
        original = mail.extra.get("original_message_id")
        return [record, *notices.confirmation(svc, current, recipient, response, mail.message_id, original)]

    try:
        if request.kind == "approval":
            decision, comment = replies.parse_decision(mail.text)
            return await service.respond(
                svc,
                mail.recipient.id,
                decision=decision,
                via="reply",
                comment=comment or None,
                meta=meta,
                also=also,
                seen_round=_seen_round(mail),
            )
        fields = answer_fields(request)
        if fields:
            data = forms.read_form(fields, forms.read_lines(fields, mail.text), absent_is_false=False)
            return await service.respond(
                svc, mail.recipient.id, decision="answer", via="reply", data=data, meta=meta, also=also
            )
        option = _option_named(request, mail.text)
        return await service.respond(
            svc,
            mail.recipient.id,
            decision="answer",
            via="reply",
            comment=mail.text,
            option=option,
            meta=meta,
            also=also,
        )
    except NotPendingError as exc:
        raise RequestClosedError(exc.request_id, exc.request_status) from exc
    except AlreadyRespondedError as exc:
        raise AlreadyAnsweredError(f"{exc.approver} has already answered") from exc
    except NotAnApproverError as exc:
        raise NotAnApproverReplyError(exc.message) from exc
    except (forms.FieldErrors, FieldsRefusedError) as exc:
        labels = {f.name: f.label for f in answer_fields(request)}
        raise IncompleteAnswerError(exc.errors, labels, links_for(svc, recipient, request).answer or "") from exc
    except ArgumentsChangedError as exc:
        raise ArgumentsChangedReplyError(links_for(svc, recipient, request).page) from exc


def _seen_round(mail: Inbound) -> int:
    """The round of the arguments the replier saw: the one of our mails their reply answers (In-Reply-To, else
    the last of ours in References); 0 when it names none of ours."""
    direct = round_of(_first_msgid(_header(mail.msg, "In-Reply-To")))
    if direct is not None:
        return direct
    for ref in reversed(MSGID_RE.findall(_header(mail.msg, "References"))):
        found = round_of(ref)
        if found is not None:
            return found
    return 0


async def deliver(svc: Services, mail: Inbound, record: InboundMessage) -> None:
    """A human's message to an agent: stored in the agent's queue with the inbound record, its webhook and its
    audit line, in one transaction; the agent's waiters woken after the commit."""
    assert mail.agent is not None and mail.text is not None
    record.outcome = "delivered"
    message = build(
        AgentMessage,
        id=new_id("amsg"),
        agent_id=mail.agent.id,
        message_id=mail.message_id,
        sender=mail.sender,
        subject=mail.subject,
        text=mail.text,
        run_id=mail.request.run_id if mail.request else None,
        notification_id=mail.request.id if mail.request else None,
        raw=mail.raw.decode("utf-8", "replace"),
    )
    rows = agents.delivery_rows(svc, mail.agent, message, mail.request)
    async with svc.db.write() as session:
        session.add(record)
        await session.flush()  # the inbound record first: a repeat fails here, before anything is delivered
        session.add(message)
        session.add_all(rows)
    agents.delivered(svc, mail.agent, webhook=any(isinstance(r, OutboxMessage) for r in rows))


# --- the pipeline ---------------------------------------------------------------------------------------


def received(raw: bytes, source: str) -> Inbound:
    """:func:`receive` that never raises: a message the parser gives up on goes on as an empty one, named by
    its content, so it is still recorded (once) with its reason."""
    try:
        return receive(raw, source)
    except Exception as exc:  # the parser is lenient; this is a last resort
        log.warning("inbound: unparseable message: %s", exc)
        return Inbound(
            raw=raw,
            source=source,
            msg=Message(),
            message_id=_digest_id(raw),
            sender="",
            subject="",
            digest=hashlib.sha256(raw).hexdigest()[:32],
        )


async def process(svc: Services, raw: bytes | Inbound, source: str = "imap") -> Outcome:
    """Run one message through every step. Never raises for a bad message: the outcome says what happened.
    ``raw`` may be a message :func:`received` already (the poller reads each sender first, to keep their order)."""
    mail = raw if isinstance(raw, Inbound) else received(raw, source)
    record = build(
        InboundMessage,
        id=new_id("inb"),
        message_id=mail.message_id,
        digest=mail.digest,
        sender=mail.sender or None,
        subject=mail.subject or None,
        source=mail.source,
        outcome="ignored",
    )
    try:
        # No "seen before?" read: the unique Message-ID refuses a repeat when its record is written.
        screen_own(svc, mail)
        await match(svc, mail)
        record.request_id = mail.request.id if mail.request else None
        record.recipient_id = mail.recipient.id if mail.recipient else None
        record.agent_id = mail.agent.id if mail.agent else None
        screen_automated(mail)
        if mail.agent is not None and mail.request is None:
            authenticate_for_agent(svc, mail)
        else:
            authenticate(svc, mail)
        read(mail)
        if mail.agent is not None:
            await deliver(svc, mail, record)
            return Outcome("delivered", None, mail.request.id if mail.request else None)
        record.outcome = "recorded"
        decision = await act(svc, mail, record)
    except InboundError as exc:
        return await _refused(svc, mail, record, exc)
    except IntegrityError:
        return Outcome("duplicate", DuplicateMessageError.reason, None, f"{mail.message_id} was processed before")
    except Exception as exc:
        log.exception("inbound: unexpected error on %s", mail.message_id)
        return await _refused(svc, mail, record, InboundError(f"internal error: {type(exc).__name__}"))
    assert mail.request is not None
    svc.wake_outbox(webhooks=False)  # the confirmation was queued with the decision (respond woke for webhooks)
    return Outcome(
        "decided" if decision.decided else "recorded", "late_response" if decision.late else None, mail.request.id
    )


async def _refused(svc: Services, mail: Inbound, record: InboundMessage, exc: InboundError) -> Outcome:
    record.outcome, record.reason, record.detail = "ignored", exc.reason, exc.detail[:1000]
    request_id = mail.request.id if mail.request else None
    try:
        async with svc.db.write() as session:
            session.add(record)
            if request_id:
                session.add(
                    service.event(
                        request_id,
                        "reply_ignored",
                        mail.sender or None,
                        reason=exc.reason,
                        detail=exc.detail[:500],
                        message_id=mail.message_id,
                        source=mail.source,
                    )
                )
    except IntegrityError:
        return Outcome("duplicate", DuplicateMessageError.reason, None, f"{mail.message_id} was processed before")
    # Only someone who passed the sender checks is ever answered (no backscatter), at the address we hold.
    if (
        exc.notify
        and mail.agent is None
        and mail.request is not None
        and mail.request.kind != "notification"
        and mail.recipient is not None
        and mail.extra.get("authenticated")
    ):
        await notices.explain_refusal(
            svc, mail.request, mail.recipient.address, mail.message_id, exc.reason, exc.explanation or exc.detail
        )
    log.info("inbound %s from %s ignored: %s (%s)", mail.message_id, mail.sender, exc.reason, exc.detail)
    return Outcome("ignored", exc.reason, request_id, exc.detail)


# --- helpers --------------------------------------------------------------------------------------------


def _header(msg: Message, name: str) -> str:
    try:
        values = msg.get_all(name) or []
        return " ".join(str(v) for v in values)
    except Exception:
        return ""


def _first_msgid(value: str) -> str:
    found = MSGID_RE.findall(value)
    return found[0] if found else value.strip()[:500]


def _digest_id(raw: bytes) -> str:
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@inbound.invalid>"


def _without_tag(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _tags(svc: Services, msg: Message) -> list[str]:
    """The plus-address tags of our reply mailbox in Delivered-To, X-Original-To, To and Cc, in that order."""
    mailbox = (svc.settings.reply_address_effective or "").lower()
    if not mailbox:
        return []
    local, _, domain = mailbox.partition("@")
    local = local.split("+", 1)[0]
    values = [str(v) for name in ("Delivered-To", "X-Original-To", "To", "Cc") for v in (msg.get_all(name) or [])]
    found = []
    for _, address in getaddresses(values):
        a_local, _, a_domain = address.lower().partition("@")
        base, plus, tag = a_local.partition("+")
        if a_domain == domain and plus and base == local:
            found.append(tag)
    return found


def _signed_recipient(svc: Services, tags: list[str]) -> str | None:
    """The recipient named by a signed plus-address tag (a request mail's Reply-To)."""
    for tag in tags:
        try:
            return svc.signer.verify_reply(tag)
        except TokenError:
            continue
    return None


async def _recipient_by_sender(session: Any, request_id: str | None, sender: str) -> str | None:
    if request_id is None or not sender:
        return None
    rows = await session.exec(select(Recipient).where(Recipient.request_id == request_id))
    for recipient in rows.all():
        if addresses.normalise(recipient.address) == sender:
            return str(recipient.id)
    return None


def _option_named(request: Request, text: str) -> str | None:
    """A reply to a question that starts with an option's name or title picks that option."""
    first = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
    for option in request.options or []:
        for name in (option["name"], option.get("title") or ""):
            if name and re.match(rf"{re.escape(name.lower())}(?!\w)", first):
                return str(option["name"])
    return None


def auth_passes(headers: list[str], trusted: list[str], sender: str) -> bool:
    """RFC 8601: an Authentication-Results header added by one of our trusted servers that says dmarc=pass for
    the sender's domain (header.from, when given, must be it), or dkim=pass for a signature of the sender's own
    domain (header.d or header.i). Never raises: a malformed header is a header that proves nothing."""
    domain = sender.rpartition("@")[2].lower()
    if not domain:
        return False
    for header in headers:
        authserv, _, results = " ".join(header.split()).partition(";")
        words = authserv.split()
        if not words or words[0].lower() not in trusted:
            continue
        for resinfo in results.split(";"):
            method = re.match(r"\s*(dmarc|dkim)\s*=\s*pass\b", resinfo, re.I)
            if not method:
                continue
            props = {
                k.lower(): v.lower() for k, v in re.findall(r"\b(header\.[a-z]+)\s*=\s*@?([^\s;]+)", resinfo, re.I)
            }
            if method.group(1).lower() == "dmarc":
                if props.get("header.from", domain) == domain:
                    return True
            elif _aligned(props.get("header.d", ""), domain) or _aligned(
                props.get("header.i", "").rpartition("@")[2], domain
            ):
                return True
    return False


def _aligned(signer: str, domain: str) -> bool:
    """DKIM relaxed alignment (RFC 7489 §3.1.1), short of the public suffix list: the signing domain is the
    sender's domain or a parent of it with at least two labels (mail.example.com is aligned with example.com)."""
    return bool(signer) and "." in signer and (domain == signer or domain.endswith("." + signer))


def sender_of(raw: bytes) -> str:
    """The From address, read from the headers alone (cheap: the body is not parsed)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return parseaddr(_header(replies.parse_message(head), "From"))[1]
