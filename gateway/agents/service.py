"""The outer loop: agents with an address humans write to, one-way notifications, and each agent's messages in
order, read by long-poll with a cursor and pushed to its webhook from the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from gateway import addresses, audit
from gateway.agents.schemas import AgentCreate, NotificationCreate, message_out
from gateway.approvals.service import check_callback, check_sendable
from gateway.approvals.views import RequestView, load_view
from gateway.audit import event
from gateway.errors import CallIdConflictError, InvalidInputError, NotFoundError
from gateway.keys import Principal
from gateway.mail.compose import compose_request_mail
from gateway.models import (
    Agent,
    AgentMessage,
    OutboxMessage,
    Recipient,
    Request,
    build,
    from_row,
    new_id,
    random_token,
    utcnow,
)
from gateway.services import Services
from gateway.streams import EventStream, sse
from gateway.webhooks.service import KIND as WEBHOOK

REF_LENGTH = 8
TAG_PREFIX = "agent-"


def waiter_key(agent_id: str) -> str:
    return f"agent:{agent_id}"


def address_of(svc: Services, agent: Agent) -> str:
    mailbox = svc.settings.reply_address_effective or svc.settings.from_address or "gateway@localhost"
    return addresses.plus_address(mailbox, agent.tag)


def allowed(agent: Agent, sender: str) -> bool:
    sender = sender.lower()
    domain = sender.rpartition("@")[2]
    return any(entry == sender or (entry.startswith("@") and entry[1:] == domain) for entry in agent.allowed_senders)


async def put_agent(svc: Services, principal: Principal, body: AgentCreate) -> tuple[Agent, bool]:
    """Create the agent, or update its senders and webhook (an agent states its configuration at every start).
    Returns (agent, created)."""
    if body.webhook_url:
        check_callback(svc, body.webhook_url)
    try:
        return await _put_agent(svc, principal, body)
    except IntegrityError:  # the same agent made at once by another request (PostgreSQL): it exists now
        return await _put_agent(svc, principal, body)


async def _put_agent(svc: Services, principal: Principal, body: AgentCreate) -> tuple[Agent, bool]:
    async with svc.db.write() as session:
        query = select(Agent).where(Agent.api_key_id == principal.key_id, Agent.name == body.name)
        agent = (await session.exec(query)).first()
        created = agent is None
        if agent is None:
            agent = build(
                Agent,
                id=new_id("agt"),
                api_key_id=principal.key_id,
                name=body.name,
                tag=TAG_PREFIX + random_token(12),
                allowed_senders=body.allowed_senders,
                webhook_url=body.webhook_url,
            )
        else:
            agent.allowed_senders = body.allowed_senders
            agent.webhook_url = body.webhook_url
        session.add(agent)
    return agent, created


async def get_agent(svc: Services, principal: Principal, name: str) -> Agent:
    async with svc.db.read() as session:
        query = select(Agent).where(Agent.api_key_id == principal.key_id, Agent.name == name)
        agent = (await session.exec(query)).first()
    if agent is None:
        raise NotFoundError("agent", name)
    return agent


async def agent_by_tag(svc: Services, tag: str) -> Agent | None:
    async with svc.db.read() as session:
        return (await session.exec(select(Agent).where(Agent.tag == tag))).first()


async def agent_by_id(svc: Services, agent_id: str) -> Agent | None:
    async with svc.db.read() as session:
        return await session.get(Agent, agent_id)


# --- messages -------------------------------------------------------------------------------------------


def _cursor(after: str | None) -> int:
    if not after:
        return 0
    try:
        value = int(after)
    except ValueError:
        raise InvalidInputError("after: give back the `next` of an earlier answer") from None
    if value < 0:
        raise InvalidInputError("after: give back the `next` of an earlier answer")
    return value


# The page after a cursor: one Core statement on the (agent, seq) index (every long-poll runs it, and 10,000
# agents re-ask every minute).
_MESSAGES = AgentMessage.__table__  # type: ignore[attr-defined]
_PAGE = (
    sa_select(_MESSAGES)
    .where(_MESSAGES.c.agent_id == bindparam("agent"), _MESSAGES.c.seq > bindparam("after"))
    .order_by(_MESSAGES.c.seq)
    .limit(bindparam("limit"))
)


async def _page(svc: Services, agent_id: str, after: int, limit: int) -> list[AgentMessage]:
    async with svc.db.reading() as conn:
        rows = (await conn.execute(_PAGE, {"agent": agent_id, "after": after, "limit": limit})).all()
    return [from_row(AgentMessage, row) for row in rows]


async def _agent_id(svc: Services, principal: Principal, name: str) -> str:
    """An agent's id never changes and agents are never renamed: looked up once per process."""
    known = svc.agent_ids
    found = known.get((principal.key_id, name))
    if found is None:
        found = (await get_agent(svc, principal, name)).id
        if len(known) > 100_000:
            known.clear()
        known[(principal.key_id, name)] = found
    return found


async def messages(
    svc: Services, principal: Principal, name: str, after: str | None, wait: float, limit: int = 100
) -> tuple[list[AgentMessage], str]:
    """The agent's messages after the cursor, oldest first; with ``wait``, held until one commits (woken by the
    commit, here or on another replica, never by polling). Returns them and the cursor that follows them."""
    agent_id = await _agent_id(svc, principal, name)
    start = _cursor(after)
    with svc.notifier.subscribe(waiter_key(agent_id)) as arrived:
        rows = await _page(svc, agent_id, start, limit)
        if not rows and wait > 0:
            deadline = asyncio.get_running_loop().time() + wait
            while not rows:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    async with asyncio.timeout(timeout):
                        await arrived.wait()
                except TimeoutError:
                    break
                arrived.clear()
                rows = await _page(svc, agent_id, start, limit)
    return rows, str(rows[-1].seq if rows else start)


async def stream(
    svc: Services, principal: Principal, key: str, name: str, after: str | None, seconds: float | None
) -> EventStream:
    """The agent's messages after the cursor, then each as it commits, as one open response (see
    gateway.streams). The key is checked again before each delivery, and every few minutes while quiet."""
    agent_id = await _agent_id(svc, principal, name)
    start = _cursor(after)

    async def read(cursor: int, limit: int) -> list[tuple[int, bytes]]:
        out = []
        for row in await _page(svc, agent_id, cursor, limit):
            assert row.seq is not None  # stored rows have one
            out.append((row.seq, sse(row.seq, "message", message_out(row).model_dump_json(by_alias=True))))
        return out

    async def allowed() -> bool:
        return await svc.keys.authenticate(key) is not None

    until = None if seconds is None else asyncio.get_running_loop().time() + seconds
    key_ = waiter_key(agent_id)
    return EventStream(svc.streams, read, allowed, lambda s: svc.notifier.watch(key_, s), start, until)


def delivery_rows(svc: Services, agent: Agent, message: AgentMessage, notification: Request | None) -> list[Any]:
    """What a delivered message brings with it, in its transaction: the webhook to the agent (Standard Webhooks,
    from the outbox, retried) and, for a reply to a notification, a line in that notification's audit trail."""
    rows: list[Any] = []
    if agent.webhook_url:
        body = json.dumps(
            {
                "type": "agent.message",
                "timestamp": utcnow().isoformat(),
                "data": {"agent": agent.name, "message": message_out(message).model_dump(mode="json", by_alias=True)},
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        rows.append(
            build(
                OutboxMessage,
                id=new_id("whk"),
                request_id=notification.id if notification else None,
                kind=WEBHOOK,
                mail_from="",
                rcpt_to=[agent.webhook_url],
                message_id=new_id("msg"),
                raw=body,
            )
        )
    if notification is not None:
        rows.append(event(notification.id, "agent_message", message.sender, message=message.id, agent=agent.name))
    return rows


def delivered(svc: Services, agent: Agent, webhook: bool) -> None:
    """After the commit: the agent's waiters here and on every replica, and the webhook sender."""
    svc.request_changed(waiter_key(agent.id))
    if webhook:
        svc.wake_outbox(webhooks=True)


# --- notifications --------------------------------------------------------------------------------------


def _content_hash(body: NotificationCreate) -> str:
    data = body.model_dump(mode="json", exclude={"call_id", "run_id"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def _run_threads(svc: Services, principal: Principal, run_id: str) -> dict[str, str]:
    """The Message-ID of the last mail each address got from this agent's run: a notification continues it."""
    async with svc.db.read() as session:
        query = (
            select(OutboxMessage.rcpt_to, OutboxMessage.message_id)
            .join(Request, col(Request.id) == col(OutboxMessage.request_id))
            .where(Request.api_key_id == principal.key_id, Request.run_id == run_id, OutboxMessage.kind != WEBHOOK)
            .order_by(col(OutboxMessage.created_at))
        )
        rows = (await session.exec(query)).all()
    return {addresses.normalise(rcpt[0]): message_id for rcpt, message_id in rows if rcpt}


async def notify(svc: Services, principal: Principal, body: NotificationCreate) -> tuple[RequestView, bool]:
    """Send a one-way update (in the run's thread when ``run_id`` is given); a reply to it reaches ``agent``.
    Idempotent on ``call_id`` as requests are."""
    check_sendable(svc, [*body.channel.email.to, *body.channel.email.cc])
    agent = await get_agent(svc, principal, body.agent) if body.agent else None
    digest = _content_hash(body)
    call_id = body.call_id or new_id("call")
    threads = await _run_threads(svc, principal, body.run_id) if body.run_id else {}
    email = body.channel.email
    request = build(
        Request,
        id=new_id("ntf"),
        kind="notification",
        api_key_id=principal.key_id,
        call_id=call_id,
        run_id=body.run_id,
        ref=random_token(REF_LENGTH).upper(),
        message=body.message,
        channel=body.channel.model_dump(mode="json"),
        policy={"kind": "any"},
        status="sent",
        content_hash=digest,
        agent_id=agent.id if agent else None,
    )
    recipients = [build(Recipient, id=new_id("rcp"), request_id=request.id, address=a, role="to") for a in email.to]
    recipients += [build(Recipient, id=new_id("rcp"), request_id=request.id, address=a, role="cc") for a in email.cc]
    sender_name = agent.name if agent else principal.name
    mails = [
        compose_request_mail(
            svc, request, r, len(recipients), sender_name, thread=threads.get(addresses.normalise(r.address))
        )
        for r in recipients
    ]
    events = [event(request.id, "created", principal.name, kind="notification", call_id=call_id, ref=request.ref)]
    events += audit.mails_queued(request.id, mails)
    audit.seal(events)
    try:
        await svc.group_commit.insert([[request], recipients, [*mails, *events]])
    except IntegrityError:
        async with svc.db.read() as session:
            query = select(Request).where(Request.api_key_id == principal.key_id, Request.call_id == call_id)
            existing = (await session.exec(query)).first()
            if existing is None:
                raise
            if existing.kind != "notification" or existing.content_hash != digest:
                raise CallIdConflictError(call_id, existing.id) from None
            return await load_view(session, existing), False
    svc.wake_outbox(webhooks=False)
    async with svc.db.read() as session:
        return await load_view(session, request), True
