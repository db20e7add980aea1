"""The audit trail's hash chain: written by every path, checked by `gateway audit verify`, and any edit shows."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from sqlalchemy import text

from gateway import audit
from gateway.db import Database
from gateway.keys import create_key
from gateway.migrate import upgrade
from gateway.models import Event, Request, build, utcnow
from tests.conftest import Live, link_ending
from tests.processes import gateway_cli
from tests.test_links_routes import open_and_submit


def test_digest_covers_every_field() -> None:
    at = utcnow()
    base = audit.digest(audit.GENESIS, "apr_1", 1, at, "created", "agent", {"a": 1})
    assert base == audit.digest(audit.GENESIS, "apr_1", 1, at, "created", "agent", {"a": 1})
    variants = [
        audit.digest("1" * 64, "apr_1", 1, at, "created", "agent", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_2", 1, at, "created", "agent", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_1", 2, at, "created", "agent", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_1", 1, at + timedelta(microseconds=1), "created", "agent", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_1", 1, at, "cancelled", "agent", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_1", 1, at, "created", "someone", {"a": 1}),
        audit.digest(audit.GENESIS, "apr_1", 1, at, "created", "agent", {"a": 2}),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_check_chain_names_each_kind_of_break() -> None:
    events = [build(Event, id=i, request_id="apr_x", type=f"t{i}", actor=None, data={"i": i}) for i in range(1, 5)]
    audit.seal(events)
    assert audit.check_chain("apr_x", events) == []

    events[1].data = {"i": 99}  # edited
    problems = audit.check_chain("apr_x", events)
    assert [(b.seq, b.problem) for b in problems] == [(2, "content was changed after it was written")]

    events[1].data = {"i": 2}
    removed = [events[0], events[2], events[3]]
    problems = audit.check_chain("apr_x", removed)
    assert {b.seq for b in problems} == {3}
    assert any("missing" in b.problem for b in problems)
    assert any("does not follow" in b.problem for b in problems)


async def test_every_path_writes_one_unbroken_chain(live: Live) -> None:
    approval = await live.approval(channel={"email": {"to": ["alice@example.com", "bob@example.com"]}})
    assert live.sink is not None
    mails = await live.sink.wait_for(2)
    page = link_ending(next(m for m in mails if m["To"] == "alice@example.com"), "/approve")
    done = await open_and_submit(page, decision="approve")
    assert done.status_code == 303

    events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
    types = [e["type"] for e in events]
    assert types[0] == "created" and "mail_sent" in types and "response" in types and "decided" in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == audit.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))

    async with live.services.db.read() as session:
        requests, count, breaks = await audit.verify(session, approval["id"])
    assert (requests, count, breaks) == (1, len(events), [])


async def _request(db: Database, request_id: str) -> None:
    key, _ = await create_key(db, f"owner-{request_id}")
    async with db.write() as session:
        session.add(
            build(
                Request,
                id=request_id,
                kind="approval",
                api_key_id=key.id,
                call_id=request_id,
                ref=request_id[-8:].upper(),
                channel={"email": {"to": ["a@example.com"]}},
                policy={"kind": "any"},
                content_hash="x",
            )
        )


async def test_gateway_audit_verify_finds_an_edited_row(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    for n in range(2):
        await _request(db, f"apr_audit{n}")
    async with db.write() as session:
        for n in range(2):
            for step in ("created", "mail_queued", "mail_sent"):
                session.add(audit.event(f"apr_audit{n}", step, None, step=step))
    await db.dispose()

    url = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    clean = await asyncio.to_thread(gateway_cli, url, "audit", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 request(s), 6 event(s) checked: intact" in clean.stdout

    db = Database(database_url)
    async with db.write() as session:
        await (await session.connection()).execute(
            text("UPDATE events SET actor = 'mallory' WHERE request_id = 'apr_audit1' AND seq = 2"),
        )
    await db.dispose()
    broken = await asyncio.to_thread(gateway_cli, url, "audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN apr_audit1 event #2" in broken.stdout
    assert "content was changed" in broken.stdout
    assert "apr_audit0" not in broken.stdout


async def test_concurrent_writers_never_fork_a_chain(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    await _request(db, "apr_race")

    async def writer(n: int) -> None:
        async with db.write() as session:
            session.add(audit.event("apr_race", "note", None, n=n))
            await asyncio.sleep(0)  # let the others interleave before the flush
            session.add(audit.event("apr_race", "note", None, n=n, second=True))

    await asyncio.gather(*(writer(n) for n in range(20)))
    async with db.read() as session:
        requests, count, breaks = await audit.verify(session, "apr_race")
    await db.dispose()
    assert (requests, count, breaks) == (1, 40, [])
