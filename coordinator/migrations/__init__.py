"""The store's schema history, as Alembic migrations applied when the store opens.

``upgrade`` brings any database, SQLite or PostgreSQL, to the newest schema;
one made by the spine's ``create_all`` (tables but no version) is first
recognised as revision 0001.  ``alembic -c coordinator/migrations/alembic.ini``
works too, for an operator who wants to look or step by hand.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from coordinator.tables import metadata

HERE = Path(__file__).parent
SPINE_REVISION = "0001"  # the schema the spine created without Alembic


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for segscan's migrations, on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection

    return cfg


def head() -> str:
    """The newest revision."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None

    return revision


def current(connection: sa.Connection) -> str | None:
    """The revision the database on ``connection`` is at, if it has one."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: sa.Connection) -> None:
    """Bring the database on ``connection`` to the newest schema.

    An empty database gets the newest schema at once, as Alembic's cookbook
    suggests: tests/coordinator/test_migrations.py proves that the same as
    walking every migration.
    """
    cfg = config(connection)
    if current(connection) is None:
        if not sa.inspect(connection).has_table("runs"):
            metadata.create_all(connection)
            command.stamp(cfg, "head")
            return
        command.stamp(cfg, SPINE_REVISION)
    command.upgrade(cfg, "head")
