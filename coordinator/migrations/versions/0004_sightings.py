"""Witness sightings: what agents saw arrive at their own addresses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sightings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subnet", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("ip", sa.String(15), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("dropped", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_sightings_subnet_finished", "sightings", ["subnet", "finished_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_sightings_subnet_finished", "sightings")
    op.drop_table("sightings")
