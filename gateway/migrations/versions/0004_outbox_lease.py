"""outbox leases: several senders (replicas) claim mail without sending it twice; index on recipient_id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", gateway.models.UTCDateTime(timezone=True), nullable=True))
        # A reply is matched to its recipient's original mail by this column: without the index, a scan.
        batch_op.create_index(batch_op.f("ix_outbox_recipient_id"), ["recipient_id"], unique=False)
        batch_op.create_index("ix_outbox_kind_due", ["kind", "status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_kind_due")
        batch_op.drop_index(batch_op.f("ix_outbox_recipient_id"))
        batch_op.drop_column("lease_until")
