"""Signed intake (issue 5): the key and signature of each result; refusals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("key_id", sa.String(64)))
        batch.add_column(sa.Column("signature", sa.LargeBinary))
    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("subnet", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("assignment_id", sa.String(40)),
        sa.Column("issued", sa.Boolean),
        sa.Column("run_id", sa.String(40)),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_refusals_run_id", "refusals", ["run_id"])


def downgrade() -> None:
    op.drop_table("refusals")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("signature")
        batch.drop_column("key_id")
