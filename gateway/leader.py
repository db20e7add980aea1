"""One holder among replicas, elected with a PostgreSQL session advisory lock.

The holder keeps a dedicated connection open; PostgreSQL releases the lock the moment that connection dies (the
process was killed, the network went away), and another replica's next attempt (every ``retry`` seconds) takes
over. The holder checks its connection as often, and stops its work at once when it is gone: it no longer
holds the lock, so someone else may already be doing the same work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("gateway.leader")


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (say, the mailbox a poller reads)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    def __init__(
        self, dsn: str, key: int, work: Callable[[], Coroutine[Any, Any, None]], *, retry: float = 2.0
    ) -> None:
        self.dsn = dsn
        self.key = key
        self.work = work
        self.retry = retry
        self.leading = False
        self.terms = 0  # how many times this process became the holder

    async def _hold(self, conn: Any) -> None:
        self.leading = True
        self.terms += 1
        log.info("leader: this process now holds lock %s", self.key)
        task: asyncio.Task[None] = asyncio.create_task(self.work())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.retry)
                if task.done():
                    break
                async with asyncio.timeout(self.retry):  # not wait_for: on 3.11 it can swallow a cancel
                    await conn.fetchval("SELECT 1")  # raises when the lock is gone
        finally:
            self.leading = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run(self) -> None:
        import asyncpg

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                    await self._hold(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leader: lost or could not take lock %s: %s", self.key, exc)
            finally:
                if conn is not None:  # dropping the socket releases the lock (close() can hang on a dead one)
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(self.retry)
