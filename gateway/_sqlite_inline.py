"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's own thread.

aiosqlite runs every statement on a helper thread: each one costs two thread hops and a fight for the GIL,
about 20 times the statement itself (a primary-key lookup in a WAL database takes microseconds). Measured on
the spine's hot paths that hop, not SQLite, set the ceiling. This module has aiosqlite's shape, so
SQLAlchemy's aiosqlite dialect drives it unchanged, but its coroutines finish without ever suspending.

What keeps the loop from blocking on a lock: WAL readers never wait, and the single in-process writer takes
the write lock with ``BEGIN IMMEDIATE`` under a zero busy timeout, retrying on the loop with an async sleep
when another process holds it (see ``gateway.db``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

__version__ = "1.0"

Error = sqlite3.Error
DatabaseError = sqlite3.DatabaseError
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """Stands in for aiosqlite's request queue: SQLAlchemy sets isolation_level through it."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class _NoThread:
    daemon = True


class Connection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._tx = _Immediate()
        self._thread = _NoThread()

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._live().isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self._live().cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return await Cursor(self._live().cursor()).execute(sql, parameters)

    async def commit(self) -> None:
        self._live().commit()

    async def rollback(self) -> None:
        self._live().rollback()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._live().create_function(*args, **kw)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Opening:
    """What ``connect`` returns: awaitable like aiosqlite's, with the ``_thread`` the dialect marks daemon."""

    def __init__(self, database: str, kw: dict[str, Any]) -> None:
        self._thread = _NoThread()
        self._database, self._kw = database, kw

    def __await__(self) -> Generator[Any, None, Connection]:
        # check_same_thread off: the pool may close a connection from the GC or at exit on another thread.
        return Connection(sqlite3.connect(self._database, **{**self._kw, "check_same_thread": False}))
        yield  # a generator that never suspends


def connect(database: str, **kw: Any) -> _Opening:
    return _Opening(database, kw)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI object to hand to ``create_async_engine(..., module=...)``."""
    import sys

    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)
