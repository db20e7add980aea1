"""Turns a request and one recipient into a ready-to-send message (text and HTML, per-recipient links).

A new request's mails are queued unwritten (``queue_request_mail``: the row, its recipient and its Message-ID,
``raw`` empty) and composed by the sender just before their first attempt (``compose_queued``): rendering was
a third of a submission's cost, and the agent waits for the commit, not for the mail. The composed message is
stored with the attempt's outcome, so what was sent is what is stored. Follow-ups (reminders, escalations,
notices) are composed at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime, formataddr
from typing import Any

from sqlmodel import col, select

from gateway import addresses, forms
from gateway.mail import mime
from gateway.models import ApiKey, OutboxMessage, Recipient, Request, build, new_id, random_token, utcnow
from gateway.services import Services
from gateway.templating import fold, is_multiline, pretty

log = logging.getLogger("gateway.mail.compose")

FROM_NAME = "Approval Gateway"


@dataclass(frozen=True)
class Links:
    page: str
    approve: str | None
    reject: str | None
    options: list[tuple[dict[str, Any], str]]
    answer: str | None


def link_base(svc: Services, recipient: Recipient, request: Request) -> str:
    expires = request.expires_at.timestamp() if request.expires_at else None
    token = svc.signer.sign_link(recipient.id, expires)
    return f"{svc.settings.public_base}/r/{token}"


def inbox_link(svc: Services, address: str) -> str:
    """The approver's inbox page: every request still waiting for them, signed for their address alone."""
    return f"{svc.settings.public_base}/r/inbox/{svc.signer.sign_inbox(address)}"


def links_for(svc: Services, recipient: Recipient, request: Request) -> Links:
    base = link_base(svc, recipient, request)
    if request.kind == "approval":
        return Links(page=base, approve=f"{base}/approve", reject=f"{base}/reject", options=[], answer=None)
    options = [(opt, f"{base}/option/{opt['name']}") for opt in request.options or []]
    return Links(page=base, approve=None, reject=None, options=options, answer=f"{base}/answer")


def new_message_id(ref: str, sender: str, round: int = 0) -> str:
    """Short enough never to be folded: some mail code mangles a folded Message-ID. After an edit to an
    approval's arguments it names the round, so a reply says which arguments its writer saw."""
    marker = f"r{round}." if round else ""
    return f"<gw.{ref.lower()}.{marker}{random_token(16)}@{addresses.domain_of(sender)}>"


_ROUND_RE = re.compile(r"<gw\.[a-z2-7]{8}\.(?:r(\d+)\.)?[a-z2-7]{16}@")


def round_of(message_id: str) -> int | None:
    """The round a mail of ours was sent in (0 before any edit); None for a Message-ID that is not ours."""
    match = _ROUND_RE.match(message_id.strip())
    return int(match.group(1) or 0) if match else None


def subject_for(request: Request) -> str:
    custom = request.channel["email"].get("subject")
    if custom:
        base = custom
    elif request.kind == "approval":
        base = f"Approval needed: {request.fn}"
    elif request.kind == "notification":
        first = (request.message or "").strip().splitlines()[0] if (request.message or "").strip() else "An update"
        base = f"Update: {first[:70]}{'…' if len(first) > 70 else ''}"
    else:
        first = (request.message or "").strip().splitlines()[0] if request.message else "A question"
        base = f"Question: {first[:70]}{'…' if len(first) > 70 else ''}"
    return f"{base} [#{request.ref}]"


def current_kwargs(request: Request) -> dict[str, Any]:
    """The arguments as they stand: as edited by an approver, else as the agent sent them."""
    return dict(request.edited_kwargs if request.edited_kwargs is not None else request.kwargs or {})


def changed_arguments(request: Request) -> list[str]:
    """The arguments an approver changed, by name, in the order they stand."""
    original = request.kwargs or {}
    return [k for k, v in current_kwargs(request).items() if k not in original or original[k] != v]


def edit_fields(request: Request) -> list[forms.FormField]:
    """The inputs of an approval's editable arguments (none when it allows no edits)."""
    if request.kind != "approval" or not request.editable:
        return []
    return forms.editable_fields(current_kwargs(request), request.editable, request.input_schema)


def answer_fields(request: Request) -> list[forms.FormField]:
    """The inputs of a typed question's answer (none for a free answer)."""
    if request.kind != "question" or request.input_schema is None:
        return []
    return forms.fields_from_schema(request.input_schema)


def argument_rows(kwargs: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "value": fold(pretty(value)),
            "multiline": is_multiline(value),
            "json": not isinstance(value, str),
        }
        for name, value in (kwargs or {}).items()
    ]


def page_title(request: Request) -> str:
    """What a person sees as the request's name: the agent's subject, else what it asks."""
    custom = request.channel["email"].get("subject")
    if custom:
        return str(custom)
    if request.kind == "approval":
        return f"Run {request.fn}?"
    first = (request.message or "").strip().splitlines()[0] if (request.message or "").strip() else "A question"
    return first[:120] + ("…" if len(first) > 120 else "")


def policy_text(request: Request, recipients: int) -> str | None:
    kind = request.policy.get("kind", "any")
    if request.kind != "approval" or recipients <= 1:
        return None
    if kind == "all":
        return f"All {recipients} approvers must approve."
    if kind == "quorum":
        return f"{request.policy['quorum']} of {recipients} approvers must approve."
    return f"The first of {recipients} approvers to answer decides."


def template_context(
    svc: Services, request: Request, recipient: Recipient, recipients: int, agent: str, note: str | None = None
) -> dict[str, Any]:
    email = request.channel["email"]
    return {
        "request": request,
        "kind": request.kind,
        "recipient": recipient,
        "is_cc": recipient.role == "cc",
        "agent": agent,
        "arguments": argument_rows(current_kwargs(request)),
        "edited": request.edited_kwargs is not None,
        "context": email.get("context"),
        "links": links_for(svc, recipient, request)
        if recipient.role == "to" and request.kind != "notification"
        else None,
        "replies_reach_agent": request.agent_id is not None,
        "inbox": inbox_link(svc, recipient.address)
        if recipient.role == "to" and request.kind != "notification"
        else None,
        "policy_text": policy_text(request, recipients),
        "answer_fields": answer_fields(request),
        "subject": subject_for(request),
        "note": note,
    }


def compose_request_mail(
    svc: Services,
    request: Request,
    recipient: Recipient,
    recipients: int,
    agent: str,
    *,
    note: str | None = None,
    thread: str | None = None,
    kind: str | None = None,
) -> OutboxMessage:
    """The request mail for one recipient. With ``thread`` (the Message-ID of the mail it follows up), it is a
    reply in that thread (a reminder); ``note`` is shown above the request (why this mail was sent)."""
    mail = queue_request_mail(svc, request, recipient, kind=kind)
    mail.raw = request_message(svc, request, recipient, recipients, agent, mail.message_id, note=note, thread=thread)
    return mail


def queue_request_mail(svc: Services, request: Request, recipient: Recipient, kind: str | None = None) -> OutboxMessage:
    """The outbox row of a request mail, its message not yet written (see :func:`compose_queued`)."""
    sender = svc.settings.from_address or "gateway@localhost"
    return build(
        OutboxMessage,
        id=new_id("msg"),
        request_id=request.id,
        recipient_id=recipient.id,
        kind=kind or f"{request.kind}_request",
        mail_from=sender,
        rcpt_to=[recipient.address],
        message_id=new_message_id(request.ref, sender, request.round),
        raw=None,
    )


def request_message(
    svc: Services,
    request: Request,
    recipient: Recipient,
    recipients: int,
    agent: str,
    message_id: str,
    *,
    note: str | None = None,
    thread: str | None = None,
) -> str:
    """The whole RFC 822 message of one recipient's request mail."""
    settings = svc.settings
    sender = settings.from_address or "gateway@localhost"
    ctx = template_context(svc, request, recipient, recipients, agent, note)
    name = request.kind
    text = svc.templates.get_template(f"email/{name}.txt").render(ctx)
    html = svc.templates.get_template(f"email/{name}.html").render(ctx)

    email = request.channel["email"]
    reply_to = settings.reply_address_effective or sender
    headers = [
        ("Subject", f"Re: {ctx['subject']}" if thread else ctx["subject"]),
        ("From", formataddr((FROM_NAME, sender))),
        ("To", recipient.address),
        ("Reply-To", addresses.plus_address(reply_to, svc.signer.sign_reply(recipient.id))),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
    ]
    parent = thread or email.get("in_reply_to")
    if parent:
        headers.append(("In-Reply-To", parent))
    refs = list(email.get("references") or [])
    for ref in (email.get("in_reply_to"), thread):
        if ref and ref not in refs:
            refs.append(ref)
    if refs:
        headers.append(("References", " ".join(refs)))
    headers += [
        ("Auto-Submitted", "auto-generated"),
        # Asks Exchange/Outlook not to send out-of-office and other automatic replies to this mail.
        ("X-Auto-Response-Suppress", "All"),
        ("X-Gateway-Request", f"{request.id} {request.ref}"),
    ]

    return mime.alternative(headers, text, html)


def compose_digest(svc: Services, items: Sequence[tuple[Request, Recipient, str]]) -> OutboxMessage:
    """One mail to one approver listing several requests that wait for them, each with that person's own links
    (items: request, the approver's recipient row on it, the asking agent's name), newest first."""
    settings = svc.settings
    sender = settings.from_address or "gateway@localhost"
    to = items[0][1].address
    entries = [
        {
            "request": request,
            "title": page_title(request),
            "agent": agent,
            "arguments": argument_rows(current_kwargs(request)) if request.kind == "approval" else [],
            "links": links_for(svc, recipient, request),
        }
        for request, recipient, agent in sorted(items, key=lambda item: item[0].id, reverse=True)
    ]
    ctx = {"entries": entries, "inbox": inbox_link(svc, to), "count": len(entries)}
    subject = f"Reminder: {len(entries)} requests are waiting for your answer"
    message_id = new_message_id(random_token(8), sender)
    headers = [
        ("Subject", subject),
        ("From", formataddr((FROM_NAME, sender))),
        ("To", to),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
    ]
    text = svc.templates.get_template("email/digest.txt").render(ctx)
    html = svc.templates.get_template("email/digest.html").render({**ctx, "subject": subject})
    return build(
        OutboxMessage,
        id=new_id("msg"),
        request_id=None,
        for_requests=[request.id for request, _, _ in items],
        recipient_id=None,
        kind="digest",
        mail_from=sender,
        rcpt_to=[to],
        message_id=message_id,
        raw=mime.alternative(headers, text, html),
    )


class ComposeError(Exception):
    """A queued mail could not be written (its request or recipient is gone, or a template failed on it):
    trying again will not help, so the mail fails and the request shows it."""

    def __init__(self, mail_id: str, reason: str) -> None:
        self.mail_id = mail_id
        self.reason = reason
        super().__init__(f"could not compose mail {mail_id}: {reason}")


async def compose_queued(svc: Services, mails: Sequence[OutboxMessage]) -> dict[str, ComposeError]:
    """Write the message of every queued mail in ``mails`` (sets ``raw``), reading their requests, recipients and
    agents in three statements. Returns the mails that could not be composed, by id; the others are ready."""
    queued = [m for m in mails if m.raw is None]
    if not queued:
        return {}
    async with svc.db.read() as session:
        requests = {
            r.id: r
            for r in (await session.exec(select(Request).where(col(Request.id).in_({m.request_id for m in queued}))))
        }
        recipients = {
            r.id: r
            for r in (
                await session.exec(select(Recipient).where(col(Recipient.id).in_({m.recipient_id for m in queued})))
            )
        }
        agents = dict(
            (
                await session.exec(
                    select(ApiKey.id, ApiKey.name).where(col(ApiKey.id).in_({r.api_key_id for r in requests.values()}))
                )
            ).all()
        )
    failed: dict[str, ComposeError] = {}
    for mail in queued:
        request = requests.get(mail.request_id or "")
        recipient = recipients.get(mail.recipient_id or "")
        if request is None or recipient is None:
            failed[mail.id] = ComposeError(mail.id, "its request or recipient no longer exists")
            continue
        try:
            approvers = len(request.channel["email"].get("to") or [])
            agent = agents.get(request.api_key_id, "an agent")
            mail.raw = request_message(svc, request, recipient, approvers, agent, mail.message_id)
        except Exception as exc:  # a template override that fails on this request: this mail only
            log.exception("could not compose mail %s", mail.id)
            failed[mail.id] = ComposeError(mail.id, f"{type(exc).__name__}: {exc}"[:300])
    return failed
