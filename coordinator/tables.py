"""The coordinator's tables: runs, pairs, chunks, results and what surrounds them.

The Alembic migrations in coordinator/migrations keep databases at this shape;
a test compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
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

pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("src", sa.String(128), primary_key=True),
    sa.Column("dst", sa.String(128), primary_key=True),
    sa.Column("expect", sa.String(16), nullable=False),
    sa.Column("allowed", sa.Text),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("src", sa.String(128), nullable=False),
    sa.Column("dst", sa.String(128), nullable=False),
    sa.Column("probes", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("assignment", sa.LargeBinary, nullable=False),
    # Delivery (coordinator/budget.py, leasing.py): the destination's budget,
    # this chunk's share of it, when it was leased and settled, and why it died.
    sa.Column("budget_pps", sa.Integer),
    sa.Column("rate_pps", sa.Integer),
    sa.Column("leased_at", sa.Float),
    sa.Column("settled_at", sa.Float),
    sa.Column("dead_reason", sa.Text),
    sa.Index("ix_chunks_run_state", "run_id", "state"),
    sa.Index("ix_chunks_state_dst", "state", "dst"),
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("assignment_id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    # Who sent it: the agent key that signed ``body`` (coordinator/auth.py).
    sa.Column("key_id", sa.String(64)),
    sa.Column("signature", sa.LargeBinary),
    sa.Column("digest", sa.String(64)),  # SHA-256 of body: tells a copy from news
)

# Further results for a chunk that already has one: kept as evidence, never
# counted (a late result of a redelivered chunk, or one for a finished run).
late_results = sa.Table(
    "late_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("assignment_id", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("signature", sa.LargeBinary),
    sa.UniqueConstraint("assignment_id", "digest", name="uq_late_results_digest"),
)

# Messages taken off the dead-letter queues (coordinator/deadletters.py).
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("queue", sa.String(128), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("receive_count", sa.Integer, nullable=False),
    sa.Column("chunk_id", sa.String(40)),  # when the body names one of ours
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

# What agents refused, as they reported it (coordinator/refusals.py).
refusals = sa.Table(
    "refusals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("subnet", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("assignment_id", sa.String(40)),
    sa.Column("issued", sa.Boolean),  # whether we issued that assignment
    sa.Column("run_id", sa.String(40), index=True),  # its run, when we did
    sa.Column("envelope", sa.LargeBinary, nullable=False),  # as signed
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("subnet", sa.String(128), nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("assignment_id", sa.String(40)),
)

# What agents' witnesses saw arrive at their own addresses, window by window
# (coordinator/witnessing.py); ``envelope`` is the signed post, kept as evidence.
sightings = sa.Table(
    "sightings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subnet", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("ip", sa.String(15), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("dropped", sa.Integer, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    sa.Index("ix_sightings_subnet_finished", "subnet", "finished_at"),
)
