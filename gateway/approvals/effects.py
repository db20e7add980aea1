"""What follows a change to a request, as rows written in the same transaction as the change: the notices to
the people involved and the webhooks. A change and its consequences stand or fall together, and a crash after
the commit loses none of them (they are outbox rows)."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.approvals.views import RECIPIENTS, THREADS, load_view
from gateway.mail import notices
from gateway.mail.compose import changed_arguments
from gateway.models import Recipient, Request, Response
from gateway.services import Services
from gateway.webhooks import service as webhooks


async def threads(session: AsyncSession, request_id: str) -> dict[str, str]:
    """Recipient id -> the Message-ID of the request mail they got (notices go into that thread)."""
    rows = (await session.exec(THREADS, params={"rid": request_id})).all()
    return {rid: mid for rid, mid in rows if rid}


def _noun(request: Request) -> str:
    return "approval request" if request.kind == "approval" else "question"


def decided_headline(request: Request) -> str:
    if request.kind == "question":
        return f"This question was answered by {request.decided_by}."
    changed = sorted(changed_arguments(request))
    edits = f", with {', '.join(changed)} changed by an approver" if changed and request.status == "approved" else ""
    return f"This approval request was {request.status} by {request.decided_by}{edits}."


async def after_response(
    svc: Services,
    session: AsyncSession,
    request: Request,
    recipients: list[Recipient],
    recipient: Recipient,
    response: Response,
    decided: bool,
) -> list[Any]:
    """The responder's confirmation (a reply gets its own from the inbound pipeline, in the reply's thread),
    the others' word that it was decided and by whom, and the webhooks. ``recipients``: all of the request's."""
    rows: list[Any] = []
    others = [r for r in recipients if r.id != recipient.id] if decided else []
    if response.via == "reply" and not others:  # the pipeline confirms in the reply's thread: nothing here
        return await _webhooks(svc, session, request, final=decided)
    mail_threads = await threads(session, request.id)
    if response.via != "reply":
        rows += notices.link_confirmation(svc, request, recipient, response, mail_threads.get(recipient.id))
    if others:
        detail = "Nothing more is needed from you: the links in the request no longer decide anything."
        for other in others:
            rows += notices.status_notice(
                svc, request, other, mail_threads.get(other.id), decided_headline(request), detail
            )
    return rows + await _webhooks(svc, session, request, final=decided)


async def after_close(svc: Services, session: AsyncSession, request: Request) -> list[Any]:
    """An expiry or a cancel: every recipient is told, in their thread, and the webhooks hear of it."""
    if request.status == "expired":
        headline = f"This {_noun(request)} expired before it was decided; it counts as not approved."
        if request.kind == "question":
            headline = "This question expired before anyone answered it."
    else:
        headline = f"The agent withdrew this {_noun(request)}; nothing more is needed from you."
    detail = "The links in it no longer decide anything, and replies to it are not recorded."
    mail_threads = await threads(session, request.id)
    rows: list[Any] = []
    for recipient in (await session.exec(RECIPIENTS, params={"rid": request.id})).all():
        rows += notices.status_notice(svc, request, recipient, mail_threads.get(recipient.id), headline, detail)
    return rows + await _webhooks(svc, session, request, final=True)


async def _webhooks(svc: Services, session: AsyncSession, request: Request, final: bool) -> list[Any]:
    if not webhooks.wanted(svc, request, final):
        return []
    session.add(request)
    await session.flush()  # the payload shows the request as it is now
    return webhooks.webhook_rows(svc, await load_view(session, request), final)
