"""outbox.raw may be empty: a new request's mails are composed by the sender just before their first attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("raw", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE outbox SET raw = '' WHERE raw IS NULL")  # unsent mails lose their message: fail them
    op.execute("UPDATE outbox SET status = 'failed', last_error = 'downgraded before it was composed' WHERE raw = ''")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("raw", existing_type=sa.Text(), nullable=False)
