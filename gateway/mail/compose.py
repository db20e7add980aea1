"""Turns a request and one recipient into a ready-to-send message (text and HTML, per-recipient links).

The message is built completely at submit time and stored in the outbox, so what was sent is exactly what is
stored, and a restart needs nothing but the row to send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime, formataddr
from typing import Any

from gateway import addresses
from gateway.mail import mime
from gateway.models import OutboxMessage, Recipient, Request, build, new_id, random_token, utcnow
from gateway.services import Services
from gateway.templating import fold, is_multiline, pretty

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


def links_for(svc: Services, recipient: Recipient, request: Request) -> Links:
    base = link_base(svc, recipient, request)
    if request.kind == "approval":
        return Links(page=base, approve=f"{base}/approve", reject=f"{base}/reject", options=[], answer=None)
    options = [(opt, f"{base}/option/{opt['name']}") for opt in request.options or []]
    return Links(page=base, approve=None, reject=None, options=options, answer=f"{base}/answer")


def new_message_id(ref: str, sender: str) -> str:
    """Short enough never to be folded: some mail code mangles a folded Message-ID."""
    return f"<gw.{ref.lower()}.{random_token(16)}@{addresses.domain_of(sender)}>"


def subject_for(request: Request) -> str:
    custom = request.channel["email"].get("subject")
    if custom:
        base = custom
    elif request.kind == "approval":
        base = f"Approval needed: {request.fn}"
    else:
        first = (request.message or "").strip().splitlines()[0] if request.message else "A question"
        base = f"Question: {first[:70]}{'…' if len(first) > 70 else ''}"
    return f"{base} [#{request.ref}]"


def argument_rows(kwargs: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [
        {"name": name, "value": fold(pretty(value)), "multiline": is_multiline(value)}
        for name, value in (kwargs or {}).items()
    ]


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
        "arguments": argument_rows(request.kwargs),
        "context": email.get("context"),
        "links": links_for(svc, recipient, request) if recipient.role == "to" else None,
        "policy_text": policy_text(request, recipients),
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
    settings = svc.settings
    sender = settings.from_address or "gateway@localhost"
    ctx = template_context(svc, request, recipient, recipients, agent, note)
    name = request.kind
    text = svc.templates.get_template(f"email/{name}.txt").render(ctx)
    html = svc.templates.get_template(f"email/{name}.html").render(ctx)

    email = request.channel["email"]
    message_id = new_message_id(request.ref, sender)
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

    return build(
        OutboxMessage,
        id=new_id("msg"),
        request_id=request.id,
        recipient_id=recipient.id,
        kind=kind or f"{request.kind}_request",
        mail_from=sender,
        rcpt_to=[recipient.address],
        message_id=message_id,
        raw=mime.alternative(headers, text, html),
    )
