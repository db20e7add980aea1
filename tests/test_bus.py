"""Signals between processes over PostgreSQL LISTEN/NOTIFY, including a listening connection that is killed."""

from __future__ import annotations

import asyncio

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


async def test_signals_reach_the_other_process_not_the_sender(dsn: str) -> None:
    a_in, b_in = Inbox(), Inbox()
    a, b = Bus(dsn, a_in.deliver), Bus(dsn, b_in.deliver)
    await a.start()
    await b.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 10)
        a.publish(REQUEST, "apr_123")
        a.publish(OUTBOX)
        await b_in.wait_for((REQUEST, "apr_123"))
        await b_in.wait_for((OUTBOX, None))
        await asyncio.sleep(0.2)
        assert a_in.got == []  # the sender delivered locally already
    finally:
        await a.stop()
        await b.stop()


async def test_a_killed_listening_connection_reconnects_and_wakes_everything(dsn: str) -> None:
    a_in, b_in = Inbox(), Inbox()
    a, b = Bus(dsn, a_in.deliver, retry_max=0.5), Bus(dsn, b_in.deliver, retry_max=0.5)
    await a.start()
    await b.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 10)
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
    finally:
        await a.stop()
        await b.stop()


async def test_stop_while_a_signal_is_in_flight_ends_promptly(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    # Stopping just as a NOTIFY completes used to hang for ever on Python 3.11: asyncio.wait_for returned the
    # statement's result and swallowed the cancel, and the bus went on pumping. Every round must stop in time.
    for round_ in range(20):
        a_in, b_in = Inbox(), Inbox()
        a, b = Bus(dsn, a_in.deliver), Bus(dsn, b_in.deliver)
        await a.start()
        await b.start()
        try:
            await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 10)
            a.publish(REQUEST, f"apr_{round_}")
            await b_in.wait_for((REQUEST, f"apr_{round_}"))
        finally:
            started = asyncio.get_running_loop().time()
            await a.stop()
            await b.stop()
            took = asyncio.get_running_loop().time() - started
        assert took < 3, f"round {round_}: stopping took {took:.1f} s"
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
