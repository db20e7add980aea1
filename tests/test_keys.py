from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlmodel import select

from gateway.db import Database
from gateway.keys import KeyNotFoundError, KeyStore, create_key, ensure_key, hash_key, list_keys, revoke_key
from gateway.migrate import upgrade
from gateway.models import ApiKey


async def test_only_a_hash_is_stored_and_keys_authenticate(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path}/k.sqlite3")
    await upgrade(db)
    key, plaintext = await create_key(db, "agent-1")
    async with db.read() as session:
        (row,) = (await session.exec(select(ApiKey))).all()
    assert row.key_hash == hash_key(plaintext) != plaintext
    assert plaintext not in repr(row.model_dump())
    assert plaintext.startswith(f"gw_{row.prefix}_")

    store = KeyStore(db)
    found = await store.authenticate(plaintext)
    assert found is not None and found.key_id == key.id and found.name == "agent-1"
    assert await store.authenticate(plaintext + "x") is None
    assert await store.authenticate(f"gw_{row.prefix}_wrongwrongwrongwrongwrong") is None
    assert await store.authenticate("garbage") is None

    again = await ensure_key(db, "dev", plaintext)
    assert again.id == key.id
    await db.dispose()


async def test_a_revoked_key_stops_working_on_every_process_within_a_second(database_url: str) -> None:
    """Two processes' key stores (each its own engine) on one database, SQLite or PostgreSQL: both have the key
    cached as valid; after a revoke by name, both refuse it within a second, and ``list_keys`` shows when."""
    setup = Database(database_url)
    await upgrade(setup)
    key, plaintext = await create_key(setup, "agent-to-revoke")
    _, other = await create_key(setup, "agent-kept")
    first, second = Database(database_url), Database(database_url)
    stores = [KeyStore(first), KeyStore(second)]
    try:
        for store in stores:
            assert await store.authenticate(plaintext) is not None  # cached as valid from now on
        revoked = await revoke_key(setup, "agent-to-revoke")
        assert revoked.id == key.id and revoked.revoked_at is not None
        started = time.monotonic()
        for store in stores:
            while await store.authenticate(plaintext) is not None:
                assert time.monotonic() - started < 1.0, "still accepted a second after the revoke"
                await asyncio.sleep(0.02)
            assert await store.authenticate(other) is not None  # the other key is untouched
        listed = {k.name: k for k in await list_keys(setup)}
        assert listed["agent-to-revoke"].revoked_at is not None and listed["agent-kept"].revoked_at is None
        assert (await revoke_key(setup, key.id)).revoked_at == revoked.revoked_at  # twice keeps the first time
        with pytest.raises(KeyNotFoundError):
            await revoke_key(setup, "nobody")
    finally:
        for db in (first, second, setup):
            await db.dispose()


async def test_a_key_chosen_by_the_team_works_and_its_use_is_recorded(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/k.sqlite3")
    await upgrade(db)
    try:
        chosen = "my-team-dev-key"
        key = await ensure_key(db, "dev", chosen)
        assert await ensure_key(db, "dev", chosen) == key  # every start
        store = KeyStore(db)
        assert (await store.authenticate(chosen)) is not None
        for bad in ("my team key", "", "x" * 501, "tab\there"):
            with pytest.raises(ValueError):
                await ensure_key(db, "dev", bad)

        async def used() -> bool:
            return (await list_keys(db))[0].last_used_at is not None

        for _ in range(100):
            if await used():
                break
            await asyncio.sleep(0.02)
        assert await used()
        await revoke_key(db, "dev")
        with pytest.raises(ValueError, match="revoked"):
            await ensure_key(db, "dev", chosen)
    finally:
        await db.dispose()


async def test_a_responder_key_carries_its_role(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/k.sqlite3")
    await upgrade(db)
    _, agent = await create_key(db, "agent-1")
    _, bot = await create_key(db, "chat-bot", role="responder")
    store = KeyStore(db)
    found_agent, found_bot = await store.authenticate(agent), await store.authenticate(bot)
    assert found_agent is not None and found_agent.role == "agent"
    assert found_bot is not None and found_bot.role == "responder"
    assert {k.name: k.role for k in await list_keys(db)} == {"agent-1": "agent", "chat-bot": "responder"}
    with pytest.raises(ValueError, match="role"):
        await create_key(db, "admin", role="admin")
    await db.dispose()
