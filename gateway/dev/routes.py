"""The dev mailbox: a page and JSON over the mail `gateway dev` captured."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.dev.mailbox import DevMailbox
from gateway.errors import GatewayError

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


@router.get("/mailbox", response_class=HTMLResponse, include_in_schema=False)
async def mailbox_page(request: Request) -> HTMLResponse:
    svc = request.app.state.services
    html = svc.templates.get_template("dev/mailbox.html").render(messages=list(_mailbox(request).messages))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
