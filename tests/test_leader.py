"""Leadership over a PostgreSQL advisory lock: one holder, a takeover when its connection dies, a prompt stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from gateway.leader import Leadership, lock_key
from gateway.runtime import asyncpg_dsn


@pytest.fixture
def dsn(postgres_database: str) -> str:
    return asyncpg_dsn(postgres_database)


class Work:
    """What a holder runs: counts its terms, and runs until cancelled."""

    def __init__(self) -> None:
        self.running = 0
        self.started = asyncio.Event()

    async def __call__(self) -> None:
        self.running += 1
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.running -= 1


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("imap", "host", "user", "INBOX") == lock_key("imap", "host", "user", "INBOX")
    assert lock_key("imap", "host", "user", "INBOX") != lock_key("imap", "host", "user", "Other")
    assert -(2**63) <= lock_key("x") < 2**63


async def test_one_holder_and_a_takeover_when_its_connection_dies(dsn: str) -> None:
    key = lock_key("test", "takeover")
    work_a, work_b = Work(), Work()
    a, b = Leadership(dsn, key, work_a, retry=0.2), Leadership(dsn, key, work_b, retry=0.2)
    task_a = asyncio.create_task(a.run())
    await asyncio.wait_for(work_a.started.wait(), 10)
    task_b = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.6)  # several of B's attempts
        assert (a.leading, b.leading, work_b.running) == (True, False, 0)

        # A's lock connection dies (its process was killed, the network went away): B takes over, A stops work.
        admin = await asyncpg.connect(dsn)
        try:
            pids = await admin.fetch(  # a bigint key shows as its high and low 32 bits
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid::bigint = $1 AND objid::bigint = $2",
                (key >> 32) & 0xFFFFFFFF,
                key & 0xFFFFFFFF,
            )
            assert len(pids) == 1
            await admin.execute("SELECT pg_terminate_backend($1)", pids[0]["pid"])
        finally:
            await admin.close()
        await until(lambda: b.leading and work_b.running == 1)
        await until(lambda: work_a.running == 0)
        assert b.terms == 1
    finally:
        for task in (task_a, task_b):
            task.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert work_a.running == work_b.running == 0


async def test_cancelling_a_holder_stops_it_promptly(dsn: str) -> None:
    # A holder checking its connection all the time is cancelled mid-term: its work stops, it stops in time and
    # the lock is free again. (The asyncio.wait_for race it once had is timing-bound; test_bus pins that down.)
    key = lock_key("test", "cancel")
    loop = asyncio.get_running_loop()
    for _ in range(10):
        work = Work()
        holder = Leadership(dsn, key, work, retry=0.01)  # checks its connection all the time
        task = asyncio.create_task(holder.run())
        await asyncio.wait_for(work.started.wait(), 10)
        await asyncio.sleep(0.05)
        started = loop.time()
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert task.done() and loop.time() - started < 2
        assert work.running == 0
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", key)  # released
    finally:
        await admin.close()
