"""The scheduler with many pending requests: its idle cost and how late a due event fires.

N pending requests carrying reminders and expiries (due hours from now) are bulk-loaded; then K requests due
in the next few seconds are added the normal way (through the service, so the scheduler is woken as in
production). The gateway's own Scheduler runs in this process. Measured:
- CPU and SQL statements while nothing is due (an idle window before the first due time): should be ~zero;
- lateness of each due event: the time its reminder was written minus the time it was due.

    python bench/scheduler.py [--requests 100000] [--due 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select

from bench.common import machine, percentile, rss_mib, table
from gateway.approvals import service
from gateway.approvals.schemas import ApprovalCreate
from gateway.approvals.tasks import Scheduler
from gateway.db import Database
from gateway.keys import Principal, create_key
from gateway.links.tokens import Signer
from gateway.migrate import upgrade
from gateway.models import Event, Recipient, Request, new_id, utcnow
from gateway.services import Services
from gateway.settings import Settings
from gateway.templating import make_environment


async def bulk_load(db: Database, key_id: str, count: int) -> None:
    """``count`` pending requests, each with one approver, a reminder plan and an expiry, due 1-3 hours out."""
    now = utcnow()
    batch = 5000
    for start in range(0, count, batch):
        requests, recipients = [], []
        for i in range(start, min(count, start + batch)):
            rid = new_id("apr")
            first = 3600 + (i % 7200)
            requests.append(
                {
                    "id": rid,
                    "kind": "approval",
                    "api_key_id": key_id,
                    "call_id": f"bulk-{i}",
                    "ref": f"B{i:07d}",
                    "fn": "bulk",
                    "kwargs": {"i": i},
                    "channel": {"email": {"to": [f"p{i}@example.com"]}},
                    "policy": {"kind": "any"},
                    "status": "pending",
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                    "content_hash": "bulk",
                    "reminders": {"first_after": first, "every": 3600, "max": 3},
                    "reminders_sent": 0,
                    "next_due_at": now + timedelta(seconds=first),
                    "callback_responses": False,
                }
            )
            recipients.append(
                {
                    "id": new_id("rcp"),
                    "request_id": rid,
                    "address": f"p{i}@example.com",
                    "role": "to",
                    "created_at": now,
                    "escalated": False,
                }
            )
        async with db.write() as session:
            conn = await session.connection()
            await conn.execute(insert(Request.__table__), requests)  # type: ignore[attr-defined]
            await conn.execute(insert(Recipient.__table__), recipients)  # type: ignore[attr-defined]


async def measure(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    tmp = tempfile.mkdtemp(prefix="gw-bench-sched-")
    url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        secret_keys="bench-secret-key-0123456789",
        from_address="gateway@bench.test",
        public_url="http://127.0.0.1:1",
    )
    db = Database(settings.async_database_url)
    await upgrade(db)
    key, _ = await create_key(db, "bench")
    svc = Services(
        settings=settings,
        db=db,
        signer=Signer(settings.secret_key_list, settings.link_max_age),
        templates=make_environment(None),
    )
    t0 = time.perf_counter()
    await bulk_load(db, key.id, args.requests)
    load_s = time.perf_counter() - t0

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    for engine in {db.engine.sync_engine, db.write_engine.sync_engine}:
        sa_event.listen(engine, "before_cursor_execute", count)

    scheduler = Scheduler(svc)
    t0 = time.perf_counter()
    _, next_at = await scheduler.tick()
    first_tick_ms = (time.perf_counter() - t0) * 1000
    runner = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.5)

    # Idle: nothing due for an hour. Count CPU and SQL while the scheduler sleeps.
    cpu0, stmts0 = time.process_time(), statements
    await asyncio.sleep(args.idle)
    idle_cpu = (time.process_time() - cpu0) / args.idle
    idle_statements = statements - stmts0

    # K requests due 2..(2 + K/10) seconds from now, submitted the normal way.
    principal = Principal(key_id=key.id, name="bench")
    due: dict[str, Any] = {}
    for i in range(args.due):
        body = ApprovalCreate.model_validate(
            {
                "fn": "soon",
                "kwargs": {"i": i},
                "channel": {"email": {"to": [f"soon{i}@example.com"]}},
                "reminders": {"first_after": 2 + i // 10},
            }
        )
        view, _ = await service.create_request(svc, principal, body)
        assert view.request.next_due_at is not None
        due[view.request.id] = view.request.next_due_at
    last_due = max(due.values())
    while utcnow() < last_due + timedelta(seconds=2):
        await asyncio.sleep(0.2)
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Event.request_id, Event.at).where(  # type: ignore[call-overload]
                    Event.type == "reminder",
                    Event.request_id.in_(list(due)),  # type: ignore[attr-defined]
                )
            )
        ).all()
    lateness = [(at - due[rid]).total_seconds() * 1000 for rid, at in rows]
    runner.cancel()
    await svc.group_commit.close()
    await db.dispose()
    current, peak = rss_mib(os.getpid())

    return [
        ("bulk load", f"{load_s:.1f} s", ""),
        ("first tick (due query + next-due query)", f"{first_tick_ms:.1f} ms", ""),
        ("next due after load", f"{(next_at - utcnow()).total_seconds() / 60:.0f} min" if next_at else "-", ""),
        (f"idle CPU over {args.idle:.0f} s", f"{idle_cpu * 100:.2f} %", "flat: ~0"),
        (f"SQL statements over {args.idle:.0f} s idle", f"{idle_statements}", "0 (no scanning)"),
        ("due events fired", f"{len(lateness)}/{args.due}", f"{args.due}"),
        ("lateness p50", f"{percentile(lateness, 50):.1f} ms", ""),
        ("lateness p99", f"{percentile(lateness, 99):.1f} ms", "< 1000 ms"),
        ("lateness max", f"{max(lateness) if lateness else float('nan'):.1f} ms", "< 1000 ms"),
        ("process RSS (peak)", f"{current:.0f} MiB ({peak:.0f})", ""),
    ]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=50, help="requests due within the measured window")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of the idle window")
    parser.add_argument("--database-url", default=None)
    return parser.parse_args(argv)


async def main() -> None:
    args = arguments()
    rows = await measure(args)
    backend = "PostgreSQL" if args.database_url else "SQLite (WAL)"
    print(f"machine: {machine()}")
    print(f"database: {backend}; command: python bench/scheduler.py --requests {args.requests} --due {args.due}")
    print()
    print(table(f"scheduler with {args.requests:,} pending requests (reminders + expiries)", rows))


if __name__ == "__main__":
    asyncio.run(main())
