"""Signals between replicas over PostgreSQL LISTEN/NOTIFY: a request changed, mail was queued, a request is due.

In one process the in-process notifier and events are enough; with several processes on one PostgreSQL
(replicas behind a load balancer, or `serve --no-workers` beside `worker`) each signal is also sent as a NOTIFY
and every other process turns it back into its local wake-up. Notifications are hints, never the data: whoever
is woken reads the database. So a lost listening connection loses nothing that cannot be recovered: after
reconnecting, every local waiter and worker is woken once to re-check what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gateway.bus")

CHANNEL = "gateway_signals"
REQUEST, OUTBOX, WEBHOOKS, SCHEDULER = "r", "o", "w", "s"


class Bus:
    """Publishes local signals to the other processes and delivers theirs here.

    ``deliver(kind, key)`` is called for every signal from another process (and, with ``key`` None, for
    everything at once after a reconnect). Publishing is non-blocking: signals queue and go out in batches, one
    round trip per batch.
    """

    def __init__(self, dsn: str, deliver: Callable[[str, str | None], None], *, retry_max: float = 5.0) -> None:
        self.dsn = dsn
        self.deliver = deliver
        self.retry_max = retry_max
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._conn: Any = None
        self._pid: int | None = None
        self._task: asyncio.Task[None] | None = None

    def publish(self, kind: str, key: str = "") -> None:
        self._queue.put_nowait(f"{kind}:{key}")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: a shutdown must end even if the task does not (it is only signals).
            done, _ = await asyncio.wait({task}, timeout=5)
            if not done:
                log.warning("bus: the listening task did not stop within 5 s; leaving it")
            elif not task.cancelled() and task.exception() is not None:
                log.warning("bus: the listening task had failed: %s", task.exception())
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None:
            # terminate(), not close(): close() waits on the server, and on a dead connection it can wait for
            # ever, even through a cancelled wait_for. Dropping the socket is enough to end a LISTEN.
            with contextlib.suppress(Exception):
                conn.terminate()

    def _received(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == self._pid:
            return  # our own signal: already delivered locally
        kind, _, key = payload.partition(":")
        try:
            self.deliver(kind, key or None)
        except Exception:
            log.exception("bus: delivering %r failed", payload)

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(CHANNEL, self._received)
        self._conn, self._pid, self._lost = conn, conn.get_server_pid(), lost
        self.connected.set()

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                await self._connect()
            except Exception as exc:
                log.warning("bus: cannot listen (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = 0.1
            if not first:
                self.reconnects += 1
                log.info("bus: listening again; waking everything here to re-check")
                self.deliver("*", None)
            first = False
            try:
                await self._pump()
            except Exception as exc:
                log.warning("bus: connection lost (%s)", exc)
            await self._close()

    async def _pump(self) -> None:
        """Send queued signals until the connection is lost."""
        lost = self._lost
        while not lost.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            waiter = asyncio.ensure_future(lost.wait())
            try:
                done, _ = await asyncio.wait({getter, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                getter.cancel()
                raise
            finally:
                waiter.cancel()
            if getter not in done:
                getter.cancel()
                if not done:  # quiet for a while: make sure the connection is still there
                    async with asyncio.timeout(10):
                        await self._conn.execute("SELECT 1")
                continue
            batch = {getter.result()}
            while not self._queue.empty() and len(batch) < 500:
                batch.add(self._queue.get_nowait())
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as the
                # statement completes, and stop() then waited for ever on a bus that went on pumping.
                async with asyncio.timeout(10):
                    await self._conn.execute(
                        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, sorted(batch)
                    )
            except BaseException:
                for item in batch:  # sent again on the next connection
                    self._queue.put_nowait(item)
                raise
