"""The database layer: SQLite's WAL checkpoints on a thread of their own in a server; plain reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from gateway.db import Database, GroupWrite


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


# --- GroupWrite -----------------------------------------------------------------------------------------


async def _table(db: Database, name: str) -> None:
    async with db.write() as session:
        conn = await session.connection()
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        await conn.execute(text(f"CREATE TABLE {name} (k INTEGER PRIMARY KEY, v TEXT)"))


Grouped = tuple[Database, GroupWrite]


@pytest.fixture
async def sqlite_group(tmp_path: Path) -> AsyncIterator[Grouped]:
    db = Database(f"sqlite:///{tmp_path}/g.sqlite3")
    group = GroupWrite(db, max_batch=4)  # small groups: ten units make several
    try:
        yield db, group
    finally:
        await group.close()
        await db.dispose()


def _put(table: str, k: int, then: Exception | None = None) -> Any:
    async def unit(session: Any) -> int:
        await (await session.connection()).execute(text(f"INSERT INTO {table} VALUES (:k, 'x')"), {"k": k})
        if then is not None:
            raise then
        return k

    return unit


async def _keys(db: Database, table: str) -> list[int]:
    async with db.reading() as conn:
        return sorted(k for (k,) in await conn.execute(text(f"SELECT k FROM {table}")))


async def test_group_write_units_share_a_commit_and_each_error_is_its_own(database_url: str) -> None:
    db = Database(database_url)
    group = GroupWrite(db)
    commits = []
    event.listen(db.write_engine.sync_engine, "commit", lambda conn: commits.append(1))
    try:
        await _table(db, "gw_units")
        await group.run(_put("gw_units", 100))
        commits.clear()
        units = [_put("gw_units", k, ValueError(f"unit {k}") if k == 3 else None) for k in range(8)]
        units.append(_put("gw_units", 100))  # a key that is taken: this unit's IntegrityError alone
        results = await asyncio.gather(*(group.run(u) for u in units), return_exceptions=True)
        assert results[:3] == [0, 1, 2] and results[4:8] == [4, 5, 6, 7]
        assert isinstance(results[3], ValueError) and isinstance(results[8], IntegrityError)
        assert await _keys(db, "gw_units") == [0, 1, 2, 4, 5, 6, 7, 100]  # the failed units' rows rolled back
        if db.is_sqlite:
            assert len(commits) < 4  # nine units, a handful of transactions
        else:
            assert len(commits) == 7  # on PostgreSQL each unit is a transaction of its own
    finally:
        await group.close()
        async with db.write() as session:  # the PostgreSQL database is shared with the schema's own tests
            await (await session.connection()).execute(text("DROP TABLE IF EXISTS gw_units"))
        await db.dispose()


async def test_group_write_answers_only_after_the_commit(sqlite_group: Grouped) -> None:
    db, group = sqlite_group
    await _table(db, "gw_seen")
    seen: list[tuple[int, list[int]]] = []

    async def write_then_look(k: int) -> None:
        await group.run(_put("gw_seen", k))
        seen.append((k, await _keys(db, "gw_seen")))  # another connection: only committed rows

    await asyncio.gather(*(write_then_look(k) for k in range(10)))
    assert len(seen) == 10 and all(k in keys for k, keys in seen)
    assert await _keys(db, "gw_seen") == list(range(10))


async def test_a_failed_commit_is_every_units_error_and_stores_none_of_them(sqlite_group: Grouped) -> None:
    db, group = sqlite_group
    async with db.write() as session:
        conn = await session.connection()
        await conn.execute(text("CREATE TABLE parent (k INTEGER PRIMARY KEY, v TEXT)"))
        await conn.execute(text("CREATE TABLE child (k INTEGER PRIMARY KEY, p INTEGER REFERENCES parent (k))"))

    async def orphan(session: Any) -> None:  # checked at COMMIT only, so the whole group fails there
        conn = await session.connection()
        await conn.execute(text("PRAGMA defer_foreign_keys = ON"))
        await conn.execute(text("INSERT INTO child VALUES (1, 99)"))

    units = [_put("parent", 1), orphan, _put("parent", 2)]
    results = await asyncio.gather(*(group.run(u) for u in units), return_exceptions=True)
    assert all(isinstance(r, IntegrityError) for r in results), results
    assert await _keys(db, "parent") == [] and await _keys(db, "child") == []
    assert await group.run(_put("parent", 3)) == 3  # and the next group goes on


async def test_a_group_stopped_mid_unit_stores_nothing_and_leaves_nobody_waiting(sqlite_group: Grouped) -> None:
    db, group = sqlite_group
    await _table(db, "gw_stop")
    inside = asyncio.Event()

    async def stuck(session: Any) -> None:
        await (await session.connection()).execute(text("INSERT INTO gw_stop VALUES (9, 'x')"))
        inside.set()
        await asyncio.sleep(30)

    callers = [asyncio.create_task(group.run(u)) for u in (_put("gw_stop", 1), stuck, _put("gw_stop", 2))]
    await inside.wait()
    await group.close()  # the server stops while a group is open: the one before, the stuck one, the queued one
    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 2)
    assert await _keys(db, "gw_stop") == []
