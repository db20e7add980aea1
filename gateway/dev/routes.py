"""The dev mailbox: a page and JSON over the mail `gateway dev` captured."""

import html
from email.utils import format_datetime, formataddr, make_msgid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.dev.mailbox import DevMailbox, DevReply
from gateway.errors import GatewayError
from gateway.inbound import pipeline
from gateway.mail import mime
from gateway.models import new_id, utcnow

router = APIRouter(prefix="/dev", tags=["dev"])


class NoSuchMessageError(GatewayError):
    status = 404
    code = "not_found"


def _mailbox(request: Request) -> DevMailbox:
    box: DevMailbox = request.app.state.dev_mailbox
    return box


@router.get("/messages", summary="Captured mail, newest first")
async def messages(request: Request) -> list[dict[str, Any]]:
    return [
        {
            "id": m.id,
            "to": m.to,
            "subject": m.subject,
            "message_id": m.message_id,
            "links": m.links,
            "received_at": m.received_at.isoformat(),
        }
        for m in _mailbox(request).messages
    ]


@router.get("/messages/{message_id}.eml", summary="One captured message, raw")
async def raw_message(message_id: str, request: Request) -> Response:
    found = _mailbox(request).get(message_id)
    if found is None:
        raise NoSuchMessageError(f"no captured message {message_id!r}")
    return Response(found.raw, media_type="message/rfc822")


PAGE_SIZE = 20


@router.get("/mailbox", response_class=HTMLResponse, include_in_schema=False)
async def mailbox_page(request: Request, page: int = 1) -> HTMLResponse:
    """The captured mail, newest first, a page at a time (usable after hundreds of mails)."""
    svc = request.app.state.services
    box = _mailbox(request)
    everything = list(box.messages)
    pages = max(1, -(-len(everything) // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = everything[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    html = svc.templates.get_template("dev/mailbox.html").render(
        messages=shown,
        total=len(everything),
        page=page,
        pages=pages,
        replies={m.id: box.replies_to(m.id) for m in shown},
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/replies/{reply_id}.eml", summary="A reply written on the mailbox page, raw (for gateway parse-reply)")
async def raw_reply(reply_id: str, request: Request) -> Response:
    found = _mailbox(request).reply(reply_id)
    if found is None:
        raise NoSuchMessageError(f"no reply {reply_id!r}")
    headers = {"Content-Disposition": f'attachment; filename="{reply_id}.eml"'}
    return Response(found.raw, media_type="message/rfc822", headers=headers)


@router.post("/inbound", summary="Feed a raw RFC 822 message to the inbound pipeline (as the IMAP poller would)")
async def inbound(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise EmptyMessageError("send a raw RFC 822 message as the request body")
    outcome = await pipeline.process(request.app.state.services, raw, source="dev")
    return {"outcome": outcome.outcome, "reason": outcome.reason, "request_id": outcome.request_id}


class EmptyMessageError(GatewayError):
    status = 422
    code = "invalid_request"


@router.post("/messages/{message_id}/reply", include_in_schema=False)
async def reply_form(message_id: str, request: Request, text: Annotated[str, Form(max_length=20_000)] = "") -> Response:
    """The mailbox page's reply form: writes a reply the way a mail client would, and feeds it in."""
    original = _mailbox(request).get(message_id)
    if original is None:
        raise NoSuchMessageError(f"no captured message {message_id!r}")
    sender = original.to[0]
    quoted = "\n".join(f"> {line}" for line in original.text.splitlines())
    body = f"{text}\n\nOn {format_datetime(original.received_at)}, {original.mail_from} wrote:\n{quoted}\n"
    headers = [
        ("From", formataddr(("", sender))),
        ("To", original.headers.get("Reply-To", "")),
        ("Subject", f"Re: {original.subject}"),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", make_msgid(domain="dev-mailbox.localhost")),
        ("In-Reply-To", original.message_id),
        ("References", original.message_id),
    ]
    raw = mime.alternative(headers, body, f"<p>{_escape(text)}</p><blockquote>{_escape(original.text)}</blockquote>")
    outcome = await pipeline.process(request.app.state.services, raw.encode(), source="dev")
    box = _mailbox(request)
    box.replies.appendleft(
        DevReply(
            id=new_id("rpl"),
            message_id=message_id,
            raw=raw.encode(),
            text=text,
            outcome=outcome.outcome,
            reason=outcome.reason,
            at=utcnow(),
        )
    )
    page = next((i // PAGE_SIZE + 1 for i, m in enumerate(box.messages) if m.id == message_id), 1)
    return RedirectResponse(f"/dev/mailbox?page={page}#{message_id}", status_code=303)


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")
