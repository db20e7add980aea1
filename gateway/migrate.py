"""Schema migrations (Alembic), applied through the gateway's own engine so SQLite and PostgreSQL match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from gateway.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    def run(sync_conn: Any) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    async with db.write_engine.begin() as conn:
        await conn.run_sync(run)


async def revision(db: Database, message: str) -> None:
    """Autogenerate a new revision from the models (a developer's tool, not used at run time)."""

    def run(sync_conn: Any) -> None:
        command.revision(alembic_config(sync_conn), message=message, autogenerate=True)

    async with db.write_engine.begin() as conn:
        await conn.run_sync(run)
