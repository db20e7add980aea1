from __future__ import annotations

from sqlmodel import select

from gateway.db import Database
from gateway.keys import KeyStore, create_key, ensure_key, hash_key
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
