"""Alembic environment for epochflow's PostgreSQL schema.

`epochflow.sinks.schema.migrate()` hands in an open connection (already holding the
migration lock) through `config.attributes["connection"]`; the `alembic` command line
connects itself, to `sqlalchemy.url` or else $DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from epochflow.sinks.models import Base
from epochflow.sinks.schema import create_engine

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL", "")
    if not url:
        raise RuntimeError("set sqlalchemy.url or DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    # One transaction for all pending revisions: PostgreSQL DDL is transactional, so a
    # failed upgrade leaves the schema as it was.
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    asyncio.run(_run_with_own_engine())
