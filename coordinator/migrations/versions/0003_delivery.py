"""Delivery accounting (issue 4): chunk leases and budgets, result digests,
late results kept as evidence, dead letters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("budget_pps", sa.Integer))
        batch.add_column(sa.Column("rate_pps", sa.Integer))
        batch.add_column(sa.Column("leased_at", sa.Float))
        batch.add_column(sa.Column("settled_at", sa.Float))
        batch.add_column(sa.Column("dead_reason", sa.Text))
        batch.drop_index("ix_chunks_run_id")
        batch.create_index("ix_chunks_run_state", ["run_id", "state"])
        batch.create_index("ix_chunks_state_dst", ["state", "dst"])
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("digest", sa.String(64)))
    op.create_table(
        "late_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("assignment_id", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("signature", sa.LargeBinary),
        sa.UniqueConstraint("assignment_id", "digest", name="uq_late_results_digest"),
    )
    op.create_index("ix_late_results_run_id", "late_results", ["run_id"])
    op.create_table(
        "dead_letters",
        sa.Column("message_id", sa.String(128), primary_key=True),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("receive_count", sa.Integer, nullable=False),
        sa.Column("chunk_id", sa.String(40)),
        sa.Column("run_id", sa.String(40)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_dead_letters_run_id", "dead_letters", ["run_id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("late_results")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("digest")
    with op.batch_alter_table("chunks") as batch:
        batch.drop_index("ix_chunks_state_dst")
        batch.drop_index("ix_chunks_run_state")
        batch.create_index("ix_chunks_run_id", ["run_id"])
        for column in ("dead_reason", "settled_at", "leased_at", "rate_pps"):
            batch.drop_column(column)
        batch.drop_column("budget_pps")
