"""Signals between processes: a request changed, mail was queued, a request is due.

In one process the in-process notifier and events are enough; with several processes on one database
(replicas behind a load balancer, `serve --processes N`, or `serve --no-workers` beside `worker`) each signal is
also sent to every other process, which turns it back into its local wake-up: over PostgreSQL LISTEN/NOTIFY
(`Bus`), or, for processes sharing a SQLite file and so one machine, over Unix sockets in a directory beside
that file (`SocketBus`). Signals are hints, never the data: whoever is woken reads the database. So a lost
listening connection loses nothing that cannot be recovered: after reconnecting, every local waiter and worker
is woken once to re-check what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
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


MAX_BUFFERED = 4 * 1024 * 1024  # bytes of signals held for one slow peer


class SocketBus:
    """`Bus` for processes on one machine that share a SQLite file: no server to relay through, so each process
    listens on a Unix socket in ``directory`` (beside the database) and sends every signal to every socket there.

    A process finds the others by listing the directory before each batch, so one that starts later hears every
    signal sent after its socket exists; a change committed before that is in the database it reads when it
    begins to wait. The socket of a process that died without removing it refuses connections and is deleted.
    Writes are buffered by the connection and never block the publisher.
    """

    def __init__(self, directory: str | Path, deliver: Callable[[str, str | None], None]) -> None:
        self.directory = Path(directory)
        self.deliver = deliver
        self.connected = asyncio.Event()
        self.reconnects = 0  # kept for the same /healthz and /metrics fields as `Bus`; a local socket never drops
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._peers: dict[str, asyncio.StreamWriter] = {}
        self._behind: set[str] = set()  # peers dropped while stuck: told to re-check everything when back
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._dir_fd: int | None = None

    def publish(self, kind: str, key: str = "") -> None:
        self._queue.put_nowait(f"{kind}:{key}")

    def _path(self, name: str) -> str:
        """A socket's address. sun_path holds 107 bytes; a deeper directory is reached through its descriptor."""
        full = str(self.directory / name)
        if len(full.encode()) < 100:
            return full
        if self._dir_fd is None:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    async def start(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=self._path(self.name))
        self.connected.set()
        self._task = asyncio.create_task(self._pump(), name="socket-bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(OSError):
            (self.directory / self.name).unlink()
        for reader in list(self._readers):
            reader.cancel()
        for writer in self._peers.values():
            writer.close()
        self._peers.clear()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        try:
            while line := await reader.readline():
                kind, _, key = line.decode(errors="replace").rstrip("\n").partition(":")
                try:
                    self.deliver(kind, key or None)
                except Exception:
                    log.exception("bus: delivering %r failed", line)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except ValueError:  # a line past the reader's limit: not one of ours; re-check everything to be safe
            log.warning("bus: an over-long signal line; waking everything here to re-check")
            self.deliver("*", None)
        finally:
            writer.close()
            if task is not None:
                self._readers.discard(task)

    async def _peer(self, name: str) -> asyncio.StreamWriter | None:
        writer = self._peers.get(name)
        if writer is not None and not writer.is_closing():
            return writer
        try:
            _, writer = await asyncio.open_unix_connection(self._path(name))
        except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
            self._peers.pop(name, None)
            return None
        except OSError as exc:
            log.warning("bus: cannot reach %s: %s", name, exc)
            return None
        self._peers[name] = writer
        return writer

    async def _pump(self) -> None:
        while True:
            batch = {await self._queue.get()}
            while not self._queue.empty() and len(batch) < 5000:
                batch.add(self._queue.get_nowait())
            payload = "".join(f"{item}\n" for item in sorted(batch)).encode()
            try:
                names = [e.name for e in os.scandir(self.directory) if e.name.endswith(".sock")]
            except OSError as exc:
                log.warning("bus: cannot list %s: %s", self.directory, exc)
                names = []
            for name in names:
                if name == self.name:
                    continue
                writer = await self._peer(name)
                if writer is None:
                    continue
                if name in self._behind:
                    self._behind.discard(name)
                    writer.write(b"*:\n")
                writer.write(payload)
                if writer.transport.get_write_buffer_size() > MAX_BUFFERED:
                    # That process has stopped reading (stuck, or stopped without closing): rather than hold
                    # its signals here without end, drop them, and wake everything there if it comes back.
                    log.warning("bus: %s is not reading its signals; dropping them", name)
                    self._peers.pop(name).transport.abort()
                    self._behind.add(name)
            for name in set(self._peers) - set(names):  # removed by a process that stopped
                self._peers.pop(name).close()
            self._behind &= set(names)
