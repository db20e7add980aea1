"""The database: engines, sessions, and the write discipline that keeps SQLite and PostgreSQL equal.

SQLite allows one writer. A deferred transaction that reads and then writes can fail at once with
SQLITE_BUSY when another writer got in between, without waiting for ``busy_timeout``. So on SQLite every
write session starts with ``BEGIN IMMEDIATE`` on a separate engine, and reads use a plain one; WAL lets
readers and the writer run side by side. SQLite statements run on the event loop's thread (microseconds
each; see ``gateway._sqlite_inline``), but a server's WAL checkpoints do not (see ``Checkpointer``). On
PostgreSQL both engines are the same asyncpg one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, insert, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import _sqlite_inline, audit
from gateway.models import Event, column_values
from gateway.settings import normalise_database_url

log = logging.getLogger("gateway.db")


def _sqlite_connect(busy_timeout_ms: int, autocheckpoint: bool = True) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) issue BEGIN, so we can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if not autocheckpoint:  # a Checkpointer thread does it
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cursor.close()

    return on_connect


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to once checkpointed


class Checkpointer:
    """Runs SQLite's WAL checkpoints on a thread of its own, on its own connection.

    By default the connection whose commit pushes the WAL past 1,000 pages copies it into the database file
    there and then, fsyncs included: with statements on the event loop, that was two thirds of a commit's time
    under load, and every request waited for it. A PASSIVE checkpoint never blocks readers or the writer, and
    SQLite releases the GIL while it copies, so here it runs beside the loop (on the second core, if there is
    one). If this thread stops, the WAL only grows: nothing is lost or blocked.
    """

    def __init__(self, path: str, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.runs = 0
        self.frames = 0  # WAL frames copied into the database so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        _busy, _log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        self.frames += max(copied, 0)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as exc:
                    # Another process checkpointing at the same moment is routine; a full disk is not. Either
                    # way the WAL keeps everything, and the next round tries again.
                    busy = "locked" in str(exc) or "busy" in str(exc)
                    log.log(logging.DEBUG if busy else logging.WARNING, "sqlite checkpoint failed: %s", exc)
        except Exception:
            log.exception("the sqlite checkpointer stopped; the WAL will grow until the next start")
        finally:
            if conn is not None:
                conn.close()


WRITE_LOCK_WAIT = 10.0  # seconds a writer waits for another process to release SQLite's write lock


def _begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock without blocking the event loop.

    The connection runs on the loop (see ``gateway._sqlite_inline``) with a zero busy timeout, so when another
    process (a separate worker, a CLI command) holds the lock, SQLite answers "locked" at once and we sleep
    on the loop, not in SQLite, before trying again.
    """
    delay, waited = 0.001, 0.0
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or waited >= WRITE_LOCK_WAIT:
                raise
        await_(asyncio.sleep(delay))
        waited += delay
        delay = min(delay * 2, 0.05)


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL keeps its data in (None for PostgreSQL and in-memory databases)."""
    url = normalise_database_url(url)
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


class Database:
    def __init__(self, url: str, *, echo: bool = False, background_checkpoints: bool = False) -> None:
        """``background_checkpoints``: a long-running server's SQLite WAL is checkpointed by a thread of its own
        (see Checkpointer), not by whichever commit fills it; started here, stopped by ``dispose``."""
        self.url = normalise_database_url(url)
        audit.install()
        self.is_sqlite = self.url.startswith("sqlite")
        self.checkpointer: Checkpointer | None = None
        if self.is_sqlite:
            path = make_url(self.url).database
            if background_checkpoints and path and path != ":memory:":
                self.checkpointer = Checkpointer(path)
            # Statements run on the loop's thread (no aiosqlite hop); a fixed pool of cheap connections, one
            # per concurrently open session. One writer connection: SQLite allows one writer anyway.
            dbapi = _sqlite_inline.dbapi()
            self.engine = create_async_engine(
                self.url, echo=echo, module=dbapi, pool_size=12, max_overflow=0, pool_timeout=120
            )
            self.write_engine = create_async_engine(
                self.url, echo=echo, module=dbapi, pool_size=1, max_overflow=0, pool_timeout=120
            )
            # Readers never wait in WAL mode but for a moment around a checkpoint; the writer never waits in
            # SQLite at all (see _begin_immediate).
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect(2000))
            event.listen(self.engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
            event.listen(
                self.write_engine.sync_engine, "connect", _sqlite_connect(0, autocheckpoint=self.checkpointer is None)
            )
            if self.checkpointer is not None:
                self.checkpointer.start()
            event.listen(self.write_engine.sync_engine, "begin", _begin_immediate)
        else:
            self.engine = create_async_engine(self.url, echo=echo, pool_size=20, max_overflow=20, pool_pre_ping=True)
            self.write_engine = self.engine
        # Plain reads on PostgreSQL without BEGIN and ROLLBACK (two round trips each): under READ COMMITTED every
        # statement takes its own snapshot anyway. SQLite's readers keep their BEGIN: one snapshot for all.
        self._reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for Core reads (no ORM session: the hot read paths copy rows with ``from_row``)."""
        async with self._reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on any error."""
        async with self._write() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)


async def insert_rows(conn: Any, rows: Sequence[Any]) -> None:
    """New rows as Core INSERTs, one executemany per table, tables in the order they first appear: the rows are
    new and written once, so the ORM's unit of work (identity map, state tracking) would be pure cost."""
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_table.setdefault(type(row).__table__, []).append(column_values(row))
    for table, values in by_table.items():
        await conn.execute(_insert(table), values)


@functools.cache
def _insert(table: Any) -> Any:
    """One INSERT statement object per table: a statement built anew each time is composed and keyed for the
    compiled cache again, which cost more than executing it."""
    return insert(table)


async def write_rows(conn: Any, rows: Sequence[Any]) -> None:
    """:func:`insert_rows` for the rows that follow a change (outbox mails, inbound records), with their audit
    events sealed onto their requests' chains (:func:`gateway.audit.append`)."""
    await insert_rows(conn, [row for row in rows if not isinstance(row, Event)])
    events = [row for row in rows if isinstance(row, Event)]
    if events:
        await audit.append(conn, events)


class _Batcher:
    """A queue of units that one task, started on demand, works through; ``close`` stops it."""

    _task: asyncio.Task[None] | None = None

    def _start(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(run(), name=name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class GroupCommit(_Batcher):
    """Commits many small insert-only units in one transaction.

    Each unit is a list of tiers (rows of a tier may reference rows of an earlier one). While one transaction
    is in flight, new units queue up; the next transaction takes them all, so under load the cost of a
    commit is shared by every unit in it. If a batch fails (say, a unique key taken), each of its units is
    retried alone, so one unit's error is its own.
    """

    def __init__(self, db: Database, max_batch: int = 500) -> None:
        self._db = db
        self._max = max_batch
        self._queue: asyncio.Queue[tuple[list[list[Any]], asyncio.Future[None]]] = asyncio.Queue()

    async def insert(self, tiers: list[list[Any]]) -> None:
        self._start(self._run, "group-commit")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((tiers, future))
        await future

    async def _write(self, units: list[list[list[Any]]]) -> None:
        async with self._db.write() as session:
            conn = await session.connection()
            depth = max(len(u) for u in units)
            for level in range(depth):
                await insert_rows(conn, [row for unit in units for row in (unit[level] if level < len(unit) else ())])

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write([tiers for tiers, _ in batch])
            except Exception:
                if len(batch) == 1:
                    _settle(batch[0][1], sys.exc_info()[1])
                    continue
                for tiers, future in batch:  # one by one, so each unit gets its own outcome
                    try:
                        await self._write([tiers])
                    except Exception as exc:
                        _settle(future, exc)
                    else:
                        _settle(future, None)
                continue
            for _, future in batch:
                _settle(future, None)


T = TypeVar("T")
Unit = Callable[[AsyncSession], Awaitable[T]]


class GroupWrite(_Batcher):
    """Runs small read-modify-write units (one answer each) in shared SQLite transactions.

    A unit is a coroutine function given the session; each runs in a savepoint of its own, one after
    another, and the transaction commits when the queue is empty or ``max_batch`` units ran. A unit's error
    rolls back its savepoint only and is its own; a failed BEGIN or COMMIT is every unit's. Every caller
    returns after the commit, so nobody is told of a change that is not yet visible. Under load the commit and
    the pages written with it are shared (what limits one SQLite writer); alone, a unit costs one savepoint
    more than a plain transaction. On PostgreSQL, where writers do not queue for one lock, each unit is a
    transaction of its own.
    """

    def __init__(self, db: Database, max_batch: int = 16) -> None:
        self._db = db
        self._max = max_batch  # a unit's answer waits for at most this many units before its commit
        self._queue: collections.deque[tuple[Unit[Any], asyncio.Future[Any]]] = collections.deque()

    async def run(self, unit: Unit[T]) -> T:
        if not self._db.is_sqlite:
            async with self._db.write() as session:
                return await unit(session)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        self._start(self._run, "group-write")
        return await future

    async def _run(self) -> None:
        try:
            await self._groups()
        finally:  # stopped: nobody waits forever on a unit that will not run
            while self._queue:
                self._queue.popleft()[1].cancel()

    async def _groups(self) -> None:
        while self._queue:
            taken: list[asyncio.Future[Any]] = []  # this group's callers, in order
            done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            try:
                async with self._db.write() as session:
                    while self._queue and len(taken) < self._max:
                        unit, future = self._queue.popleft()
                        if future.cancelled():
                            continue
                        taken.append(future)
                        try:
                            async with session.begin_nested():
                                result = await unit(session)
                        except Exception as exc:
                            done.append((future, None, exc))
                        else:
                            done.append((future, result, None))
                        finally:
                            session.expunge_all()  # the next unit reads what is stored, not this one's objects
            except Exception as exc:  # BEGIN or COMMIT: nothing of this group was stored
                for future, _, error in done:
                    _settle(future, error or exc)
                continue
            except BaseException:  # stopped mid-group: rolled back, and nobody is left waiting for it
                for future in taken:
                    future.cancel()
                raise
            for future, result, error in done:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)


def _settle(future: asyncio.Future[Any], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
