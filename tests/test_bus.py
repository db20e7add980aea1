"""Signals between processes over PostgreSQL LISTEN/NOTIFY, including a listening connection that is killed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway.bus import OUTBOX, REQUEST, Bus
from gateway.runtime import asyncpg_dsn


@pytest.fixture
def dsn(postgres_database: str) -> str:
    return asyncpg_dsn(postgres_database)


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, str | None]] = []
        self.event = asyncio.Event()

    def deliver(self, kind: str, key: str | None) -> None:
        self.got.append((kind, key))
        self.event.set()

    async def wait_for(self, item: tuple[str, str | None], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while item not in self.got:
                self.event.clear()
                await self.event.wait()


@contextlib.asynccontextmanager
async def two_buses(dsn: str, **options: Any) -> AsyncIterator[tuple[Bus, Inbox, Bus, Inbox]]:
    """Two connected buses (two processes, as far as PostgreSQL can tell), stopped on the way out."""
    a_in, b_in = Inbox(), Inbox()
    a, b = Bus(dsn, a_in.deliver, **options), Bus(dsn, b_in.deliver, **options)
    await a.start()
    await b.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 10)
        yield a, a_in, b, b_in
    finally:
        await a.stop()
        await b.stop()


async def test_signals_reach_the_other_process_not_the_sender(dsn: str) -> None:
    async with two_buses(dsn) as (a, a_in, _b, b_in):
        a.publish(REQUEST, "apr_123")
        a.publish(OUTBOX)
        await b_in.wait_for((REQUEST, "apr_123"))
        await b_in.wait_for((OUTBOX, None))
        await asyncio.sleep(0.2)
        assert a_in.got == []  # the sender delivered locally already


async def test_a_killed_listening_connection_reconnects_and_wakes_everything(dsn: str) -> None:
    async with two_buses(dsn, retry_max=0.5) as (a, _a_in, b, b_in):
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", b._pid)
        finally:
            await admin.close()
        # Whatever was signalled while B was away, B's waiters and workers are all woken once to re-check.
        await b_in.wait_for(("*", None), timeout=10)
        assert b.reconnects == 1
        a.publish(REQUEST, "apr_after")
        await b_in.wait_for((REQUEST, "apr_after"))


async def test_stop_while_a_signal_is_in_flight_ends_promptly(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    # Stopping just as a NOTIFY completes used to hang for ever on Python 3.11: asyncio.wait_for returned the
    # statement's result and swallowed the cancel, and the bus went on pumping. Every round must stop in time.
    loop = asyncio.get_running_loop()
    for round_ in range(20):
        async with two_buses(dsn) as (a, _a_in, _b, b_in):
            a.publish(REQUEST, f"apr_{round_}")
            await b_in.wait_for((REQUEST, f"apr_{round_}"))
            started = loop.time()  # the stops run as the block ends
        took = loop.time() - started
        assert took < 3, f"round {round_}: stopping took {took:.1f} s"
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
