"""A request with everything its API representation needs, read in as few statements as possible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import OutboxMessage, Recipient, Request, Response, from_row


@dataclass
class RequestView:
    """A request with everything its API representation needs."""

    request: Request
    recipients: list[Recipient]
    responses: list[Response]
    mail: dict[str, MailState] = field(default_factory=dict)  # recipient id -> its request mail's state


@dataclass(frozen=True)
class MailState:
    status: str
    last_error: str | None


# The mail that asked (not a reminder or a notice): its state is the recipient's mail state in a view, and every
# later mail to that recipient goes into its thread.
IS_REQUEST_MAIL = col(OutboxMessage.kind).endswith("_request")

# Built once: composing a SELECT costs more than SQLite takes to run it, and a view is read on every wait. Core
# statements on tables, rows copied with from_row: loading through the ORM cost more than the queries themselves
# (a view is read on every GET and every renewed wait).
_REQUESTS, _RECIPIENTS, _RESPONSES = (m.__table__ for m in (Request, Recipient, Response))  # type: ignore[union-attr]
RECIPIENTS = select(Recipient).where(Recipient.request_id == bindparam("rid")).order_by(col(Recipient.id))
RESPONSES = select(Response).where(Response.request_id == bindparam("rid")).order_by(col(Response.at), col(Response.id))
_REQUEST_ROW = sa_select(_REQUESTS).where(_REQUESTS.c.id == bindparam("rid"))
_RECIPIENT_ROWS = sa_select(_RECIPIENTS).where(_RECIPIENTS.c.request_id == bindparam("rid")).order_by(_RECIPIENTS.c.id)
_RESPONSE_ROWS = (
    sa_select(_RESPONSES).where(_RESPONSES.c.request_id == bindparam("rid")).order_by(_RESPONSES.c.at, _RESPONSES.c.id)
)
# Only the columns the view shows: the stored message itself is large.
MAIL_STATES = select(OutboxMessage.recipient_id, OutboxMessage.status, OutboxMessage.last_error).where(
    OutboxMessage.request_id == bindparam("rid"), IS_REQUEST_MAIL
)
# Recipient id -> the Message-ID of the request mail they got.
THREADS = select(OutboxMessage.recipient_id, OutboxMessage.message_id).where(
    OutboxMessage.request_id == bindparam("rid"), IS_REQUEST_MAIL
)


async def read_request(conn: AsyncConnection, request_id: str) -> Request | None:
    """The request row alone, as a read-only copy (see :func:`gateway.models.from_row`)."""
    row = (await conn.execute(_REQUEST_ROW, {"rid": request_id})).first()
    return from_row(Request, row) if row is not None else None


async def read_view(conn: AsyncConnection, request: Request) -> RequestView:
    """The view of ``request`` in three statements on ``conn``; its rows are read-only copies."""
    params = {"rid": request.id}
    recipients = (await conn.execute(_RECIPIENT_ROWS, params)).all()
    responses = (await conn.execute(_RESPONSE_ROWS, params)).all()
    mails = (await conn.execute(MAIL_STATES, params)).all()
    return RequestView(
        request=request,
        recipients=[from_row(Recipient, r) for r in recipients],
        responses=[from_row(Response, r) for r in responses],
        mail={rid: MailState(status, error) for rid, status, error in mails if rid},
    )


async def load_view(session: AsyncSession, request: Request) -> RequestView:
    """:func:`read_view` inside a session's transaction (it sees what the session has flushed)."""
    return await read_view(await session.connection(), request)


async def load_views(session: AsyncSession, requests: Sequence[Request]) -> list[RequestView]:
    """Views of many requests in three statements (a listing page), in the given order."""
    ids = [r.id for r in requests]
    if not ids:
        return []
    views = {r.id: RequestView(request=r, recipients=[], responses=[]) for r in requests}
    recipients = await session.exec(
        select(Recipient).where(col(Recipient.request_id).in_(ids)).order_by(col(Recipient.id))
    )
    for rcp in recipients.all():
        views[rcp.request_id].recipients.append(rcp)
    responses = await session.exec(
        select(Response).where(col(Response.request_id).in_(ids)).order_by(col(Response.at), col(Response.id))
    )
    for rsp in responses.all():
        views[rsp.request_id].responses.append(rsp)
    mails = await session.exec(
        select(
            OutboxMessage.request_id, OutboxMessage.recipient_id, OutboxMessage.status, OutboxMessage.last_error
        ).where(col(OutboxMessage.request_id).in_(ids), IS_REQUEST_MAIL)
    )
    for rid, rcp_id, status, error in mails.all():
        if rid and rcp_id:
            views[rid].mail[rcp_id] = MailState(status, error)
    return [views[i] for i in ids]
