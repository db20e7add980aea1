"""the life of a request: scheduler columns, escalation, webhook opt-in, the audit hash chain

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.models
from gateway.audit import GENESIS, digest

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_due_at", gateway.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reminders", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reminders_sent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("escalation", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", gateway.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("callback_responses", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index("ix_requests_due", ["status", "next_due_at"], unique=False)
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalated", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(), nullable=True))

    # Seal the events written before the chain existed, in the order they were written.
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.Integer),
        sa.column("request_id", sa.String),
        sa.column("at", gateway.models.UTCDateTime()),
        sa.column("type", sa.String),
        sa.column("actor", sa.String),
        sa.column("data", sa.JSON),
        sa.column("seq", sa.Integer),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    rows = bind.execute(
        sa.select(events.c.id, events.c.request_id, events.c.at, events.c.type, events.c.actor, events.c.data).order_by(
            events.c.request_id, events.c.id
        )
    ).all()
    current, prev, seq = None, GENESIS, 0
    updates = []
    for row in rows:
        if row.request_id != current:
            current, prev, seq = row.request_id, GENESIS, 0
        seq += 1
        value = digest(prev, row.request_id, seq, row.at, row.type, row.actor, row.data)
        updates.append({"b_id": row.id, "seq": seq, "prev_hash": prev, "hash": value})
        prev = value
    if updates:
        bind.execute(
            events.update()
            .where(events.c.id == sa.bindparam("b_id"))
            .values(seq=sa.bindparam("seq"), prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
            updates,
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_events_request_seq", ["request_id", "seq"])


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_request_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.drop_column("late")
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_column("escalated")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_due")
        batch_op.drop_column("callback_responses")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("escalation")
        batch_op.drop_column("reminders_sent")
        batch_op.drop_column("reminders")
        batch_op.drop_column("next_due_at")
