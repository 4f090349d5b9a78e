"""Connecting to PostgreSQL and bringing its schema to the latest Alembic revision."""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Serialises migrations across processes (e.g. several workers starting at once); the
# value is arbitrary but must stay the same forever ("epochflw" as ASCII).
_MIGRATION_LOCK_KEY = 0x65706F6368666C77

_DRIVER_PREFIXES = ("postgresql+asyncpg://", "postgresql://", "postgres://")


def async_database_url(database_url: str) -> str:
    """The same database as a `postgresql+asyncpg://` URL (the only driver we ship)."""
    for prefix in _DRIVER_PREFIXES:
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {database_url.split('://', 1)[0]}://…")


def tls_options(database_url: str) -> tuple[str, dict[str, Any]]:
    """libpq's TLS parameters in DATABASE_URL (`sslmode`, `sslrootcert`) as asyncpg wants
    them: the URL without them and the `connect_args`. verify-ca and verify-full verify the
    server against `sslrootcert` (or the system's CAs); verify-full checks its name too."""
    base, _, query = database_url.partition("?")
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    mode = (params.pop("sslmode", [None])[0] or "").lower()
    root = params.pop("sslrootcert", [None])[0]
    rest = urllib.parse.urlencode(params, doseq=True)
    url = f"{base}?{rest}" if rest else base
    if not mode:
        return url, {}
    if mode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=root or None)
        context.check_hostname = mode == "verify-full"
        return url, {"ssl": context}
    if mode not in ("disable", "allow", "prefer", "require"):
        raise ValueError(f"sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not {mode!r}")
    return url, {"ssl": mode}


def create_engine(database_url: str, **engine_kwargs: Any) -> AsyncEngine:
    """An asyncpg-backed async engine for a `postgresql://` (or asyncpg) URL, with the URL's
    TLS settings (`?sslmode=verify-full&sslrootcert=/path/ca.pem`) applied."""
    url, connect_args = tls_options(database_url)
    options: dict[str, Any] = {"pool_pre_ping": True, **engine_kwargs}
    if connect_args:
        options["connect_args"] = {**connect_args, **options.get("connect_args", {})}
    return create_async_engine(async_database_url(url), **options)


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(database_url: str) -> None:
    """Upgrade the database to the latest revision; a no-op when it is already there.

    Safe to call concurrently from several processes: each takes the same transaction-level
    advisory lock before Alembic looks at the current revision. Callable from inside a
    running event loop too (it then migrates on a helper thread and blocks until done).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_migrate(database_url))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="epochflow-migrate") as pool:
        pool.submit(asyncio.run, _migrate(database_url)).result()


async def _migrate(database_url: str) -> None:
    engine = create_async_engine(async_database_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade_head)
    finally:
        await engine.dispose()


def _upgrade_head(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
