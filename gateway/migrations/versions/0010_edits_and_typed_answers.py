"""edits to an approval's arguments (rounds of answers), typed answers to questions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("editable", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("input_schema", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("edited_kwargs", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
        batch_op.drop_constraint("uq_responses_request_recipient", type_="unique")
        batch_op.create_unique_constraint(
            "uq_responses_request_recipient_round", ["request_id", "recipient_id", "round"]
        )


def downgrade() -> None:
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.drop_constraint("uq_responses_request_recipient_round", type_="unique")
        batch_op.create_unique_constraint("uq_responses_request_recipient", ["request_id", "recipient_id"])
        batch_op.drop_column("data")
        batch_op.drop_column("round")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        for name in ("round", "data", "edited_kwargs", "input_schema", "editable"):
            batch_op.drop_column(name)
