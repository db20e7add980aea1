"""SQLite on the event loop's thread: statements never hop threads, and a held write lock never blocks the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from gateway import db as db_module
from gateway.db import Database


@pytest.fixture
async def database(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path}/inline.sqlite3")
    async with database.write() as session:
        await (await session.connection()).execute(text("CREATE TABLE t (n INTEGER)"))
    yield database
    await database.dispose()


async def test_statements_run_on_the_loops_thread(database: Database) -> None:
    async with database.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.create_function("tid", 0, threading.get_ident)
        ran_on = (await conn.execute(text("SELECT tid()"))).scalar_one()
    assert ran_on == threading.get_ident()


async def test_reads_and_writes_round_trip(database: Database) -> None:
    async with database.write() as session:
        await (await session.connection()).execute(text("INSERT INTO t (n) VALUES (1), (2)"))
    async with database.read() as session:
        assert (await (await session.connection()).execute(text("SELECT sum(n) FROM t"))).scalar_one() == 3


def _hold_write_lock(path: str, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    threading.Event().wait(seconds)
    conn.execute("COMMIT")
    conn.close()


async def test_a_writer_waits_for_another_process_lock_without_blocking_the_loop(
    database: Database, tmp_path: Path
) -> None:
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(f"{tmp_path}/inline.sqlite3", 0.4, locked))
    holder.start()
    assert await asyncio.to_thread(locked.wait, 5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = asyncio.get_running_loop().time()
    async with database.write() as session:
        await (await session.connection()).execute(text("INSERT INTO t (n) VALUES (7)"))
    waited = asyncio.get_running_loop().time() - started
    ticker.cancel()
    holder.join()
    assert waited >= 0.3  # it really waited for the lock...
    assert ticks >= 15  # ...while the loop kept running other tasks
    async with database.read() as session:
        assert (await (await session.connection()).execute(text("SELECT n FROM t"))).scalar_one() == 7


async def test_a_writer_gives_up_after_the_lock_wait(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "WRITE_LOCK_WAIT", 0.1)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(f"{tmp_path}/inline.sqlite3", 1.0, locked))
    holder.start()
    assert await asyncio.to_thread(locked.wait, 5)
    try:
        with pytest.raises(OperationalError, match="locked"):
            async with database.write() as session:
                await (await session.connection()).execute(text("INSERT INTO t (n) VALUES (1)"))
    finally:
        await asyncio.to_thread(holder.join)
