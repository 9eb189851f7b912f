"""The Alembic migrations, on SQLite and PostgreSQL: they build what the store
declares, adopt a spine database without losing a row, and step down again."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from coordinator import migrations
from coordinator.store import ChunkState, Store
from coordinator.tables import metadata
from tests.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database never touched, on each backend: these tests build schemas."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")

    return server.new_database()


def _differences(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection)

    return list(compare_metadata(context, metadata))


def _walk_up(connection: sa.Connection) -> None:
    command.upgrade(migrations.config(connection), "head")


def _walk_down(connection: sa.Connection) -> None:
    command.downgrade(migrations.config(connection), "base")


async def test_walking_every_migration_builds_what_the_store_declares(
    db_url: str,
) -> None:
    """The schema a store opens with equals the one the migrations make."""
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_walk_up)
            differences = await conn.run_sync(_differences)
            revision = await conn.run_sync(migrations.current)
    finally:
        await engine.dispose()

    assert differences == []
    assert revision == migrations.head()


async def test_a_store_opened_on_an_empty_database_is_at_the_newest_revision(
    db_url: str,
) -> None:
    store = await Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            revision = await conn.run_sync(migrations.current)
            differences = await conn.run_sync(_differences)
    finally:
        await store.close()

    assert revision == migrations.head()
    assert differences == []


async def test_a_spine_database_is_adopted_and_upgraded_with_its_rows(
    db_url: str,
) -> None:
    """Made by the spine's create_all (no version table): rows survive."""
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_spine_schema)
            await conn.execute(sa.text(SPINE_ROWS))
    finally:
        await engine.dispose()

    store = await Store.open(db_url)
    try:
        [chunk] = await _chunk_rows(store)
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await store.close()

    assert chunk.state == ChunkState.DONE
    assert chunk.budget_pps is None
    assert differences == []


async def test_every_migration_steps_down_to_nothing_and_up_again(
    db_url: str,
) -> None:
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_walk_up)
            await conn.run_sync(_walk_down)
            left = await conn.run_sync(
                lambda c: sorted(sa.inspect(c).get_table_names())
            )
            await conn.run_sync(_walk_up)
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()

    assert left == ["alembic_version"]
    assert differences == []


SPINE_ROWS = (
    "INSERT INTO chunks (id, run_id, src, dst, probes, state, assignment) "
    "VALUES ('c1', 'r1', 'corp-a', 'cde-a', 14, 'done', 'x')"
)


def _spine_schema(connection: sa.Connection) -> None:
    """The tables exactly as revision 0001 describes them, without Alembic."""
    spine = importlib.import_module("coordinator.migrations.versions.0001_spine")
    with Operations.context(MigrationContext.configure(connection)):
        spine.upgrade()


async def _chunk_rows(store: Store) -> list[sa.Row[object]]:
    from coordinator.store import chunks

    async with store.engine.connect() as conn:
        return list((await conn.execute(sa.select(chunks))).all())
