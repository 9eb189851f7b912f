"""The spine's schema: runs, their pairs and chunks, results, agents.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("base_run", sa.String(40)),
        sa.Column("policy_source", sa.Text, nullable=False),
        sa.Column("policy_text", sa.Text, nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deadline", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("verdict", sa.String(16)),
        sa.Column("report", sa.Text),
    )
    op.create_table(
        "pairs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("src", sa.String(128), primary_key=True),
        sa.Column("dst", sa.String(128), primary_key=True),
        sa.Column("expect", sa.String(16), nullable=False),
        sa.Column("allowed", sa.Text),
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("src", sa.String(128), nullable=False),
        sa.Column("dst", sa.String(128), nullable=False),
        sa.Column("probes", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("assignment", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_chunks_run_id", "chunks", ["run_id"])
    op.create_table(
        "results",
        sa.Column("assignment_id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_results_run_id", "results", ["run_id"])
    op.create_table(
        "agents",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("subnet", sa.String(128), nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("assignment_id", sa.String(40)),
    )


def downgrade() -> None:
    for table in ("agents", "results", "chunks", "pairs", "runs"):
        op.drop_table(table)
