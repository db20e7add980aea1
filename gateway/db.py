"""The database: engines, sessions, and the write discipline that keeps SQLite and PostgreSQL equal.

SQLite allows one writer. A deferred transaction that reads and then writes can fail at once with
SQLITE_BUSY when another writer got in between, without waiting for ``busy_timeout``. So on SQLite every
write session starts with ``BEGIN IMMEDIATE`` on a separate engine, and reads use a plain one; WAL lets
readers and the writer run side by side. On PostgreSQL both are the same engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.settings import normalise_database_url


def _sqlite_connect(immediate: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the driver) issue BEGIN, so we can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return on_connect


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_async_engine(self.url, echo=echo, pool_size=8, max_overflow=8)
            self.write_engine = create_async_engine(self.url, echo=echo, pool_size=1, max_overflow=0)
            for eng, immediate in ((self.engine, False), (self.write_engine, True)):
                event.listen(eng.sync_engine, "connect", _sqlite_connect(immediate))
                begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
                event.listen(eng.sync_engine, "begin", lambda conn, b=begin: conn.exec_driver_sql(b))
        else:
            self.engine = create_async_engine(self.url, echo=echo, pool_size=20, max_overflow=20, pool_pre_ping=True)
            self.write_engine = self.engine
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

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
