"""The database layer: SQLite's WAL checkpoints on a thread of their own in a server; plain reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.db import Database


async def pragma(db: Database, name: str) -> int:
    async with db.write() as session:
        return int((await (await session.connection()).execute(text(f"PRAGMA {name}"))).scalar_one())


async def fill(db: Database, pages: int) -> None:
    async with db.write() as session:
        await (await session.connection()).execute(text("CREATE TABLE IF NOT EXISTS filler (b BLOB)"))
    for _ in range(pages // 100):
        async with db.write() as session:
            await (await session.connection()).execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
                    " INSERT INTO filler SELECT randomblob(4000) FROM n"
                )
            )


async def test_a_server_database_is_checkpointed_by_its_own_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.sqlite3", background_checkpoints=True)
    try:
        assert db.checkpointer is not None
        assert await pragma(db, "wal_autocheckpoint") == 0  # commits on the event loop never checkpoint
        await fill(db, 1500)
        for _ in range(100):
            if db.checkpointer.frames >= 1500:
                break
            await asyncio.sleep(0.05)
        assert db.checkpointer.frames >= 1500, (db.checkpointer.runs, db.checkpointer.frames)
        async with db.read() as session:  # everything written is still there, checkpointed or not
            assert (
                await (await session.connection()).execute(text("SELECT count(*) FROM filler"))
            ).scalar_one() == 1500
    finally:
        await db.dispose()
    assert not db.checkpointer._thread.is_alive()


async def test_other_processes_keep_sqlites_own_checkpoints(tmp_path: Path) -> None:
    # A CLI command or a test harness has no checkpointer: turning SQLite's off there would let the WAL grow.
    db = Database(f"sqlite:///{tmp_path}/g.sqlite3")
    try:
        assert db.checkpointer is None
        assert await pragma(db, "wal_autocheckpoint") == 1000
    finally:
        await db.dispose()


async def test_plain_reads_on_postgresql_run_without_a_transaction(database_url: str) -> None:
    # Under READ COMMITTED each statement has its own snapshot anyway; BEGIN and ROLLBACK were two round trips
    # on every view read. SQLite's reads keep one snapshot for all their statements (next test).
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's behaviour; SQLite's is the next test")
    db = Database(database_url)

    async def started(conn: Any) -> Any:
        """When the statement's transaction began; two statements 10 ms apart in one transaction share it."""
        await asyncio.sleep(0.01)
        return (await conn.execute(text("SELECT transaction_timestamp()"))).scalar_one()

    try:
        async with db.reading() as conn:
            first = await started(conn)
            assert await started(conn) > first
        async with db.write() as session:  # writes still run in a transaction
            conn = await session.connection()
            first = await started(conn)
            assert await started(conn) == first
    finally:
        await db.dispose()


async def test_a_sqlite_read_sees_one_snapshot(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.sqlite3")
    try:
        async with db.write() as session:
            await (await session.connection()).execute(text("CREATE TABLE t (x INTEGER)"))
        async with db.reading() as conn:
            before = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
            async with db.write() as session:
                await (await session.connection()).execute(text("INSERT INTO t VALUES (1)"))
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == before == 0
        async with db.reading() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        await db.dispose()
