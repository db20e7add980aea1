"""agents humans write to, their messages, notifications that name an agent

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("api_key_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tag", sa.String(), nullable=False),
        sa.Column("allowed_senders", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sa.String(), nullable=True),
        sa.Column("created_at", gateway.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "name", name="uq_agents_key_name"),
        sa.UniqueConstraint("tag"),
    )
    op.create_table(
        "agent_messages",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("notification_id", sa.String(), nullable=True),
        sa.Column("received_at", gateway.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
        sa.ForeignKeyConstraint(["notification_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_agent_messages_agent_seq", "agent_messages", ["agent_id", "seq"], unique=False)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_id", sa.String(), nullable=True))
        batch_op.create_foreign_key("fk_requests_agent_id_agents", "agents", ["agent_id"], ["id"])
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_id", sa.String(), nullable=True))
        batch_op.create_foreign_key("fk_inbound_messages_agent_id_agents", "agents", ["agent_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_inbound_messages_agent_id"), ["agent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_agent_id"))
        batch_op.drop_constraint("fk_inbound_messages_agent_id_agents", type_="foreignkey")
        batch_op.drop_column("agent_id")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint("fk_requests_agent_id_agents", type_="foreignkey")
        batch_op.drop_column("agent_id")
    op.drop_index("ix_agent_messages_agent_seq", table_name="agent_messages")
    op.drop_table("agent_messages")
    op.drop_table("agents")
