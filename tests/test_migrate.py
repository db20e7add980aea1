"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import Database
from gateway.migrate import upgrade
from gateway.models import SQLModel


# SQLite cannot reflect an index on an expression (lower(address)), so alembic leaves it out of the comparison
# there, and says so; PostgreSQL compares it.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
async def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    await upgrade(db)  # applying twice is harmless

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    await db.dispose()
    assert differences == []
