"""Short mails in the request's thread: a confirmation when a reply decided, and, once per sender and request,
an explanation when a human's reply could not be used. Automatic mail never gets either."""

from __future__ import annotations

from email.utils import format_datetime, formataddr
from typing import Any

from sqlmodel import select

from gateway import addresses
from gateway.approvals.views import THREADS
from gateway.audit import event
from gateway.mail import mime
from gateway.mail.compose import FROM_NAME, links_for, new_message_id, subject_for
from gateway.models import OutboxMessage, Recipient, Request, Response, build, new_id, utcnow
from gateway.services import Services

REASON_TEXT = {
    "sender_mismatch": "it was not sent from the address this request was sent to, so it cannot count as "
    "that person's answer. Please answer from the address the request reached, or use the links in it.",
    "request_not_pending": "this request has already been closed",
    "already_responded": "an answer from you was already recorded for this request; each person answers once",
    "empty_reply": "we could not find any new text in it (only the quoted request). Reply with 'approve', or with "
    "your feedback in your own words",
    "not_an_approver": "you were copied on this request for information; only its approvers can decide it",
}


def _thread(
    svc: Services, request: Request, to: str, their_message_id: str, original: str | None
) -> list[tuple[str, str]]:
    sender = svc.settings.from_address or "gateway@localhost"
    refs = " ".join(dict.fromkeys(x for x in (original, their_message_id) if x))
    headers = [
        ("Subject", f"Re: {subject_for(request)}"),
        ("From", formataddr((FROM_NAME, sender))),
        ("To", to),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", new_message_id(request.ref, sender, request.round)),
    ]
    if their_message_id:
        headers.append(("In-Reply-To", their_message_id))
    if refs:
        headers.append(("References", refs))
    headers += [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]
    return headers


async def original_message_id(svc: Services, request_id: str) -> str | None:
    """The Message-ID of one of the request's own mails: the thread to answer in when the sender is none of its
    recipients."""
    async with svc.db.read() as session:
        row = (await session.exec(THREADS.limit(1), params={"rid": request_id})).first()
    return row[1] if row else None


def build_notice(
    svc: Services,
    request: Request,
    to: str,
    kind: str,
    ctx: dict[str, Any],
    their_message_id: str,
    original: str | None,
    recipient_id: str | None,
    template: str | None = None,
) -> list[Any]:
    """The outbox row of one notice and its audit event (written by the caller's transaction)."""
    headers = _thread(svc, request, to, their_message_id, original)
    full = {"request": request, "subject": headers[0][1], **ctx}
    text = svc.templates.get_template(f"email/{template or kind}.txt").render(full)
    html = svc.templates.get_template(f"email/{template or kind}.html").render(full)
    message_id = headers[4][1]
    row = build(
        OutboxMessage,
        id=new_id("msg"),
        request_id=request.id,
        recipient_id=recipient_id,
        kind=kind,
        mail_from=svc.settings.from_address or "gateway@localhost",
        rcpt_to=[to],
        message_id=message_id,
        raw=mime.alternative(headers, text, html),
    )
    return [row, event(request.id, "notice_queued", None, kind=kind, to=to, message_id=message_id)]


def confirmation(
    svc: Services,
    request: Request,
    recipient: Recipient,
    response: Response,
    their_message_id: str,
    original: str | None,
) -> list[Any]:
    """A reply that counted gets a short confirmation in its thread (with the page's link while the request is
    open: arguments are changed there, never by reply)."""
    page = links_for(svc, recipient, request).page if request.status == "pending" and request.editable else None
    ctx = {"response": response, "decided": request.status != "pending", "page": page}
    return build_notice(
        svc, request, recipient.address, "reply_confirmation", ctx, their_message_id, original, recipient.id
    )


def link_confirmation(
    svc: Services, request: Request, recipient: Recipient, response: Response, original: str | None
) -> list[Any]:
    """An answer given on the page gets the same confirmation by mail, in the request's thread."""
    ctx = {"response": response, "decided": request.status != "pending", "page": None}
    return build_notice(
        svc,
        request,
        recipient.address,
        "confirmation",
        ctx,
        original or "",
        original,
        recipient.id,
        template="reply_confirmation",
    )


def status_notice(
    svc: Services, request: Request, recipient: Recipient, original: str | None, headline: str, detail: str
) -> list[Any]:
    """A short word in one recipient's thread: decided by someone else, expired, or withdrawn."""
    ctx = {"headline": headline, "detail": detail}
    return build_notice(svc, request, recipient.address, "status_notice", ctx, original or "", original, recipient.id)


async def _sent_to(session: Any, request_id: str, kind: str, to: str) -> int:
    rows = await session.exec(
        select(OutboxMessage.rcpt_to).where(OutboxMessage.request_id == request_id, OutboxMessage.kind == kind)
    )
    return sum(1 for r in rows.all() if r and addresses.normalise(r[0]) == addresses.normalise(to))


# Refusals the person can put right by writing again (a typed answer that missed a field, an approval of changed
# arguments): each is explained, up to this many per sender and request. Any other: once, whatever they send.
CORRECTABLE = frozenset({"incomplete_answer", "arguments_changed"})
MAX_CORRECTABLE = 3


async def explain_refusal(
    svc: Services, request: Request, to: str, their_message_id: str, reason: str, detail: str
) -> bool:
    """At most one explanation per sender and request (a few, for refusals they can put right), so no loop
    with another machine can grow from it."""
    original = await original_message_id(svc, request.id)
    rows = build_notice(
        svc,
        request,
        to,
        "reply_refused",
        {"reason": reason, "why": REASON_TEXT.get(reason, detail)},
        their_message_id,
        original,
        None,
    )
    async with svc.db.write() as session:
        if await _sent_to(session, request.id, "reply_refused", to) >= (
            MAX_CORRECTABLE if reason in CORRECTABLE else 1
        ):
            return False
        session.add_all(rows)
    svc.wake_outbox(webhooks=False)
    return True
