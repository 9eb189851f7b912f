"""Alembic's environment: migrate the connection the store hands over, or the
database named by ``sqlalchemy.url`` / ``SEGSCAN_DB_URL`` when run by hand."""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from coordinator.store import DEFAULT_DB_URL
from coordinator.tables import metadata


def _migrate(connection: sa.Connection) -> None:
    # Batch mode lets the same scripts alter tables on SQLite, which cannot
    # ALTER most things in place.
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate)
    finally:
        await engine.dispose()


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "SEGSCAN_DB_URL", DEFAULT_DB_URL
    )
    asyncio.run(_migrate_url(url))


_run()
