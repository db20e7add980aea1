"""The audit trail as a hash chain per request: any edited, removed or reordered event shows.

Every event is sealed as it is written: it takes the next ``seq`` of its request, the ``hash`` of the event
before it (``prev_hash``), and its own ``hash`` over both and its content. Sealing happens in one place for
ORM writes (a ``before_flush`` hook, so no caller can forget it) and through :func:`seal` for the bulk insert of
a new request. On PostgreSQL a transaction-scoped advisory lock per request keeps two writers from forking a
chain; the unique ``(request_id, seq)`` pair refuses a fork if anything slipped through. SQLite has one writer.

What a chain cannot show: its last events removed together. Keeping the heads elsewhere (a signed export) is
the operator's part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, tuple_
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session
from sqlmodel import col
from sqlmodel import select as select_rows

from gateway.models import Event, build, column_values

GENESIS = "0" * 64


def event(request_id: str, type_: str, actor: str | None = None, **data: Any) -> Event:
    """A new audit event (sealed when it is written)."""
    return build(Event, request_id=request_id, type=type_, actor=actor, data=data or None)


def mails_queued(request_id: str, mails: Iterable[Any]) -> list[Event]:
    """One "mail_queued" event for each outbox mail of a request (who it goes to, its Message-ID, its row)."""
    return [
        event(request_id, "mail_queued", None, to=m.rcpt_to[0], message_id=m.message_id, outbox_id=m.id) for m in mails
    ]


def digest(prev_hash: str, request_id: str, seq: int, at: datetime, type_: str, actor: str | None, data: Any) -> str:
    """The hash of one event: its place in the chain and everything it says, in a canonical form."""
    when = at.astimezone(UTC).isoformat()
    body = json.dumps(
        [prev_hash, request_id, seq, when, type_, actor, data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Tail:
    seq: int
    hash: str


def seal(events: Iterable[Event], tails: dict[str, Tail] | None = None) -> dict[str, Tail]:
    """Chain ``events`` (in order) onto ``tails`` (request id -> its last sealed event; none for a new request).
    Returns the new tails."""
    heads = dict(tails or {})
    for ev in events:
        tail = heads.get(ev.request_id, Tail(0, GENESIS))
        ev.seq = tail.seq + 1
        ev.prev_hash = tail.hash
        ev.hash = digest(tail.hash, ev.request_id, ev.seq, ev.at, ev.type, ev.actor, ev.data)
        heads[ev.request_id] = Tail(ev.seq, ev.hash)
    return heads


# PostgreSQL: one writer at a time per request's chain, held to the end of the transaction.
_LOCK_CHAIN = text("SELECT pg_advisory_xact_lock(hashtextextended(:rid, 7))")
_EVENTS = Event.__table__.c  # type: ignore[attr-defined]
_LAST = (
    select(_EVENTS.request_id, func.max(_EVENTS.seq).label("seq"))
    .where(_EVENTS.request_id.in_(bindparam("ids", expanding=True)))
    .group_by(_EVENTS.request_id)
    .subquery()
)
# Built once: it runs on every flush that writes events, and composing it cost more than running it.
_TAILS = select(_EVENTS.request_id, _EVENTS.seq, _EVENTS.hash).where(
    tuple_(_EVENTS.request_id, _EVENTS.seq).in_(select(_LAST.c.request_id, _LAST.c.seq))
)


# The common case, one request's events: its last event by the (request_id, seq) unique index, with no expanding
# IN (whose SQL is rendered again on every execution).
_TAIL = (
    select(_EVENTS.request_id, _EVENTS.seq, _EVENTS.hash)
    .where(_EVENTS.request_id == bindparam("rid"))
    .order_by(_EVENTS.seq.desc())
    .limit(1)
)
_INSERT = insert(Event.__table__)  # type: ignore[attr-defined]


def _tails(session: Session, request_ids: Sequence[str]) -> dict[str, Tail]:
    if len(request_ids) == 1:
        rows = session.execute(_TAIL, {"rid": request_ids[0]})
    else:
        rows = session.execute(_TAILS, {"ids": list(request_ids)})
    return {rid: Tail(seq, digest_) for rid, seq, digest_ in rows if seq is not None}


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, Event) and obj.hash is None]
    if not new:
        return
    ids = sorted({ev.request_id for ev in new})
    with session.no_autoflush:
        if session.get_bind().dialect.name == "postgresql":
            for rid in ids:  # sorted, so two writers never wait on each other in opposite orders
                session.execute(_LOCK_CHAIN, {"rid": rid})
        tails = _tails(session, ids)
    seal(new, tails)  # in the order they were added, which is also the order they are inserted


async def append(conn: Any, events: Sequence[Event]) -> None:
    """Seal and insert ``events`` on an async Core connection inside the caller's transaction: the cheap path
    for hot writers (one delivery outcome) that have no ORM objects to flush."""
    ids = sorted({ev.request_id for ev in events})
    if conn.dialect.name == "postgresql":
        for rid in ids:
            await conn.execute(_LOCK_CHAIN, {"rid": rid})
    rows = await (conn.execute(_TAIL, {"rid": ids[0]}) if len(ids) == 1 else conn.execute(_TAILS, {"ids": ids}))
    seal(events, {rid: Tail(seq, value) for rid, seq, value in rows if seq is not None})
    await conn.execute(_INSERT, [column_values(ev) for ev in events])


def install() -> None:
    """Seal every event any ORM session writes (idempotent)."""
    if not sa_event.contains(Session, "before_flush", _before_flush):
        sa_event.listen(Session, "before_flush", _before_flush)


@dataclass(frozen=True)
class Break:
    """One place where a chain does not hold."""

    request_id: str
    seq: int | None
    event_id: int | None
    problem: str


def check_chain(request_id: str, events: Sequence[Event]) -> list[Break]:
    """Every break in one request's chain (its events in ``seq`` order)."""
    breaks = []
    prev, expected_seq = GENESIS, 1
    for ev in events:
        if ev.hash is None or ev.seq is None:
            breaks.append(Break(request_id, ev.seq, ev.id, "event is not sealed"))
            continue
        if ev.seq != expected_seq:
            breaks.append(Break(request_id, ev.seq, ev.id, f"expected event #{expected_seq} (one is missing)"))
        if ev.prev_hash != prev:
            breaks.append(Break(request_id, ev.seq, ev.id, "does not follow the event before it"))
        actual = digest(ev.prev_hash or "", request_id, ev.seq, ev.at, ev.type, ev.actor, ev.data)
        if actual != ev.hash:
            breaks.append(Break(request_id, ev.seq, ev.id, "content was changed after it was written"))
        prev, expected_seq = ev.hash, ev.seq + 1
    return breaks


async def verify(session: Any, request_id: str | None = None, batch: int = 5000) -> tuple[int, int, list[Break]]:
    """Walk every chain (or one request's) in keyset-paged batches: (requests checked, events checked, breaks)."""
    breaks: list[Break] = []
    requests = events = 0
    current: str | None = None
    chain: list[Event] = []
    after: tuple[str, int] | None = None
    while True:
        query = select_rows(Event).order_by(col(Event.request_id), col(Event.id)).limit(batch)
        if request_id is not None:
            query = query.where(Event.request_id == request_id)
        if after is not None:
            query = query.where(tuple_(col(Event.request_id), col(Event.id)) > tuple_(*after))
        rows = list((await session.exec(query)).all())
        for ev in rows:
            events += 1
            if ev.request_id != current:
                if current is not None:
                    breaks += check_chain(current, sorted(chain, key=lambda e: (e.seq or 0, e.id or 0)))
                current, chain = ev.request_id, []
                requests += 1
            chain.append(ev)
        if len(rows) < batch:
            break
        after = (rows[-1].request_id, rows[-1].id or 0)
        session.expunge_all()
    if current is not None:
        breaks += check_chain(current, sorted(chain, key=lambda e: (e.seq or 0, e.id or 0)))
    return requests, events, breaks
