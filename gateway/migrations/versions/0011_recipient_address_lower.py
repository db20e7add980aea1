"""an index on recipients' addresses whatever their case (the approver's inbox)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_recipients_address_lower", "recipients", [sa.text("lower(address)")])


def downgrade() -> None:
    op.drop_index("ix_recipients_address_lower", table_name="recipients")
