"""inbound messages are one per (Message-ID, content digest), not per Message-ID; API keys record their last use

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0002 left the Message-ID's unique constraint unnamed; this names it as each database did.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique_name() -> str:
    return (
        "inbound_messages_message_id_key"
        if op.get_bind().dialect.name == "postgresql"
        else "uq_inbound_messages_message_id"
    )


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(), nullable=False, server_default=""))
        batch_op.drop_constraint(_old_unique_name(), type_="unique")
        batch_op.create_unique_constraint("uq_inbound_messages_message_digest", ["message_id", "digest"])
        batch_op.create_index(batch_op.f("ix_inbound_messages_message_id"), ["message_id"], unique=False)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", gateway.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
    # Of each Message-ID, the first stored row stays.
    op.execute(
        "DELETE FROM inbound_messages WHERE id NOT IN (SELECT MIN(id) FROM inbound_messages GROUP BY message_id)"
    )
    with op.batch_alter_table("inbound_messages", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_message_id"))
        batch_op.drop_constraint("uq_inbound_messages_message_digest", type_="unique")
        batch_op.create_unique_constraint(_old_unique_name(), ["message_id"])
        batch_op.drop_column("digest")
