"""Signals between processes over PostgreSQL LISTEN/NOTIFY, including a listening connection that is killed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway.bus import OUTBOX, REQUEST, Bus, SocketBus
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


# --- SocketBus: processes sharing a SQLite file ------------------------------------------------------------


@contextlib.asynccontextmanager
async def socket_buses(directory: Any, count: int = 2) -> AsyncIterator[list[tuple[SocketBus, Inbox]]]:
    pairs = []
    for _ in range(count):
        inbox = Inbox()
        pairs.append((SocketBus(directory, inbox.deliver), inbox))
    for bus, _ in pairs:
        await bus.start()
    try:
        yield pairs
    finally:
        for bus, _ in pairs:
            await bus.stop()


async def test_socket_bus_signals_reach_every_other_process_not_the_sender(tmp_path: Any) -> None:
    async with socket_buses(tmp_path / "db-gateway", 3) as [(a, a_in), (b, b_in), (_c, c_in)]:
        a.publish(REQUEST, "apr_123")
        a.publish(OUTBOX)
        for inbox in (b_in, c_in):
            await inbox.wait_for((REQUEST, "apr_123"))
            await inbox.wait_for((OUTBOX, None))
        # A barrier instead of a pause: A's pump sent its batch before B had it, and B's answer reaches A only
        # after; had A sent its own signals to itself, they would be in its inbox before B's.
        b.publish(REQUEST, "apr_from_b")
        await a_in.wait_for((REQUEST, "apr_from_b"))
        assert a_in.got == [(REQUEST, "apr_from_b")]


async def test_socket_bus_finds_a_process_that_starts_later_and_forgets_one_that_stopped(tmp_path: Any) -> None:
    directory = tmp_path / "db-gateway"
    async with socket_buses(directory, 1) as [(a, _)]:
        late_in = Inbox()
        late = SocketBus(directory, late_in.deliver)
        await late.start()
        a.publish(REQUEST, "apr_late")
        await late_in.wait_for((REQUEST, "apr_late"))
        await late.stop()
        assert sorted(p.name for p in directory.iterdir()) == [a.name]  # a stop removes its socket
        a.publish(REQUEST, "apr_after")  # nobody else: nothing to do, and no error
        for _ in range(200):
            if a._queue.empty():
                break
            await asyncio.sleep(0.01)
        assert a._queue.empty() and a._task is not None and not a._task.done()  # sent to nobody, pump alive
        again_in = Inbox()
        again = SocketBus(directory, again_in.deliver)
        await again.start()
        try:
            a.publish(REQUEST, "apr_again")
            await again_in.wait_for((REQUEST, "apr_again"))  # and it still reaches whoever comes next
            assert (REQUEST, "apr_after") not in again_in.got
        finally:
            await again.stop()


async def test_socket_bus_removes_the_socket_of_a_process_that_died(tmp_path: Any) -> None:
    directory = tmp_path / "db-gateway"
    async with socket_buses(directory, 2) as [(a, _), (b, b_in)]:
        # A process killed outright leaves its socket file behind, with nobody listening on it.
        import socket

        dead = directory / "999999-deadbeef.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(dead))
        s.close()
        a.publish(REQUEST, "apr_1")
        await b_in.wait_for((REQUEST, "apr_1"))
        for _ in range(200):
            if not dead.exists():
                break
            await asyncio.sleep(0.01)
        assert not dead.exists()
        assert b.name in {p.name for p in directory.iterdir()}


async def test_socket_bus_works_in_a_directory_deeper_than_a_socket_address_allows(tmp_path: Any) -> None:
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(directory)) > 110
    async with socket_buses(directory, 2) as [(a, _), (_b, b_in)]:
        a.publish(REQUEST, "apr_deep")
        await b_in.wait_for((REQUEST, "apr_deep"))


async def test_socket_bus_drops_a_peer_that_stopped_reading_and_wakes_it_all_when_it_reads_again(
    tmp_path: Any,
) -> None:
    directory = tmp_path / "db-gateway"
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    reconnected = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append((reader, writer))  # and never read: a stuck process
        if len(connections) == 2:
            reconnected.set()

    async with socket_buses(directory, 1) as [(a, _)]:
        stuck = await asyncio.start_unix_server(accept, path=str(directory / "4242-stuck.sock"))
        try:
            big = "x" * 100_000
            for n in range(200):  # 20 MB: more than the kernel and MAX_BUFFERED hold
                a.publish(REQUEST, f"{big}{n}")
                await asyncio.sleep(0)
                if "4242-stuck.sock" in a._behind:
                    break
            assert "4242-stuck.sock" in a._behind
            assert "4242-stuck.sock" not in a._peers
            # When it is reachable again, everything it missed is one "re-check all" signal, sent first.
            a.publish(REQUEST, "apr_back")
            async with asyncio.timeout(5):
                await reconnected.wait()
                reader = connections[-1][0]
                assert await reader.readline() == b"*:\n"
                assert await reader.readline() == b"r:apr_back\n"
            assert not a._behind
        finally:
            stuck.close()


async def test_socket_bus_survives_a_line_too_long_and_wakes_everything(tmp_path: Any) -> None:
    directory = tmp_path / "db-gateway"
    async with socket_buses(directory, 1) as [(a, a_in)]:
        _, writer = await asyncio.open_unix_connection(str(directory / a.name))
        writer.write(b"r:" + b"x" * 200_000 + b"\n")
        await writer.drain()
        await a_in.wait_for(("*", None))
        writer.close()
        _, writer = await asyncio.open_unix_connection(str(directory / a.name))  # and still listens
        writer.write(b"r:apr_next\n")
        await writer.drain()
        await a_in.wait_for((REQUEST, "apr_next"))
        writer.close()
        # The over-long line woke everything once and was never taken for a request id.
        assert a_in.got == [("*", None), (REQUEST, "apr_next")]
