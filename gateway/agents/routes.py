"""/v1/agents and /v1/notifications: the outer loop's HTTP side (CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request

from gateway.agents import service
from gateway.agents.schemas import (
    AgentCreate,
    AgentOut,
    MessagesPage,
    NotificationCreate,
    NotificationOut,
    message_out,
)
from gateway.api.deps import principal, services
from gateway.approvals import service as approvals
from gateway.approvals.present import recipients_out
from gateway.approvals.routes import as_json
from gateway.approvals.schemas import EventOut
from gateway.approvals.views import RequestView
from gateway.keys import Principal
from gateway.models import Agent
from gateway.services import Services
from gateway.streams import EventStream

router = APIRouter(prefix="/v1")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text}
    for code, text in (
        (401, "No API key, or one that is not valid"),
        (403, "A responder key (it answers requests; it has no agents)"),
        (404, "No such agent among your key's"),
        (409, "The call_id is used with other content"),
        (422, "Invalid input (the message says which field and why)"),
    )
}


def _agent_out(svc: Services, agent: Agent) -> AgentOut:
    return AgentOut(
        name=agent.name,
        address=service.address_of(svc, agent),
        allowed_senders=agent.allowed_senders,
        webhook_url=agent.webhook_url,
        created_at=agent.created_at,
    )


@router.post(
    "/agents",
    response_model=AgentOut,
    status_code=201,
    tags=["agents"],
    responses={
        200: {"model": AgentOut, "description": "An existing agent, its senders and webhook updated"},
        **_ERRORS,
    },
    summary="Create an agent humans can write to (or update its allowed senders and webhook)",
)
async def put_agent(body: AgentCreate, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    agent, created = await service.put_agent(svc, who, body)
    return as_json(_agent_out(svc, agent), 201 if created else 200)


@router.get("/agents/{name}", response_model=AgentOut, tags=["agents"], responses=_ERRORS, summary="An agent")
async def get_agent(name: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
    return as_json(_agent_out(svc, await service.get_agent(svc, who, name)))


@router.get(
    "/agents/{name}/messages",
    response_model=MessagesPage,
    tags=["agents"],
    responses=_ERRORS,
    summary="The agent's messages after a cursor, oldest first, optionally waiting for the next",
)
async def messages(
    name: str,
    after: str | None = Query(
        None, max_length=30, description="The `next` of the previous answer; none: from the start"
    ),
    wait: float = Query(0, ge=0, le=60, description="Hold the answer up to this many seconds for a message."),
    limit: int = Query(100, ge=1, le=500),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Any:
    rows, cursor = await service.messages(svc, who, name, after, wait, limit)
    return as_json(MessagesPage(messages=[message_out(r) for r in rows], next=cursor), by_alias=True)


@router.get(
    "/agents/{name}/messages/stream",
    tags=["agents"],
    status_code=200,
    response_class=EventStream,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: each message as `event: message`, its cursor as `id`, its JSON"
            " (as in `messages`) as `data`; a comment line every GATEWAY_STREAM_HEARTBEAT seconds",
        },
        **_ERRORS,
    },
    summary="The agent's messages as a stream: those after the cursor, then each the moment it arrives",
)
async def message_stream(
    request: Request,
    name: str,
    after: str | None = Query(
        None, max_length=30, description="The id of the last event seen (or a `next`); none: from the start"
    ),
    last_event_id: str | None = Header(
        None, max_length=30, description="Sent by a reconnecting EventSource; wins over `after`"
    ),
    seconds: float | None = Query(
        None,
        alias="timeout",
        gt=0,
        le=86400,
        description="End the stream after this many seconds; by default it stays open",
    ),
    who: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> EventStream:
    key = request.headers.get("authorization", "").partition(" ")[2].strip()
    return await service.stream(svc, who, key, name, last_event_id or after, seconds)


def _notification_out(view: RequestView, agent: str | None) -> NotificationOut:
    r = view.request
    return NotificationOut(
        id=r.id,
        call_id=r.call_id,
        run_id=r.run_id,
        agent=agent,
        message=r.message or "",
        created_at=r.created_at,
        ref=r.ref,
        recipients=recipients_out(view),
    )


@router.post(
    "/notifications",
    response_model=NotificationOut,
    status_code=201,
    tags=["notifications"],
    responses={200: {"model": NotificationOut, "description": "The same call_id and content again"}, **_ERRORS},
    summary="Send a one-way update; a reply to it reaches the agent",
)
async def notify(
    body: NotificationCreate, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    view, created = await service.notify(svc, who, body)
    return as_json(_notification_out(view, body.agent), 201 if created else 200)


@router.get(
    "/notifications/{notification_id}",
    response_model=NotificationOut,
    tags=["notifications"],
    responses=_ERRORS,
    summary="A notification and how its mails are doing",
)
async def get_notification(
    notification_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    view = await approvals.get_view(svc, who, "notification", notification_id)
    agent = await service.agent_by_id(svc, view.request.agent_id) if view.request.agent_id else None
    return as_json(_notification_out(view, agent.name if agent else None))


@router.get(
    "/notifications/{notification_id}/events",
    response_model=list[EventOut],
    tags=["notifications"],
    responses=_ERRORS,
    summary="A notification's audit trail (its mails, and the replies that reached the agent), oldest first",
)
async def notification_events(
    notification_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    rows = await approvals.list_events(svc, who, "notification", notification_id)
    return [EventOut.model_validate(e, from_attributes=True) for e in rows]
