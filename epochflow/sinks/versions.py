"""System time: every version of the rows reads show is kept (`<table>_versions`, filled
by triggers, migration 0006), so any read can be answered again exactly as it was.

The rule that makes "as at T" exact: the sink's writes and the API's reads take one
PostgreSQL advisory lock, a write exclusively and a read shared. A write stamps its rows
with `clock_timestamp()` taken once it holds the lock (`epochflow_system_time()`, called
by the sink first and by the triggers of any other writer) and keeps the lock until it
commits; a read takes its time once it holds the lock and reads under it. So every write
stamped at or before a read's time had committed before the read began, and every write
stamped after it commits after the read ended: the versions current at a read's time are
exactly the rows that read saw. Reading "as at T" then means reading the `as_at` schema,
whose views (same names, same columns as the tables) show the versions current at T.

Retention (`EPOCHFLOW_VERSIONS_RETENTION_DAYS`, default: keep everything) drops versions
superseded longer ago than that; the API refuses an as-at time before then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.sinks.models import VERSIONS

# the same forever: "epochsys" as ASCII (migration 0006's epochflow_system_time() has it too)
_SYSTEM_TIME_LOCK = 0x65706F6368737973
AS_AT_SCHEMA = "as_at"
READ_TIMEOUT_S = 30  # a read waits this long for the lock, and runs each statement this long, at most


class AsAtInFuture(ValueError):
    """An as-at time after the read's own time: its answer could still change."""


async def stamp_write(conn: AsyncConnection) -> None:
    """Start a write: wait for reads in flight, then fix the system time of its versions
    (`epochflow_system_time()`, migration 0006, takes the lock and reads the clock)."""
    await conn.execute(text("SELECT epochflow_system_time()"))


async def start_read(conn: AsyncConnection, as_at: datetime | None = None) -> datetime:
    """Start a read in `conn`'s transaction (READ COMMITTED: each statement sees what was
    committed when it started): hold writes off until it ends and return its time; with
    `as_at`, make the transaction's reads see the tables as they were then."""
    await conn.execute(text(f"SET LOCAL lock_timeout = '{READ_TIMEOUT_S}s'"))
    await conn.execute(text(f"SET LOCAL statement_timeout = '{READ_TIMEOUT_S}s'"))
    await conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _SYSTEM_TIME_LOCK})
    now = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    if as_at is None:
        return now
    if as_at > now:
        raise AsAtInFuture(f"as_at {as_at.isoformat()} is later than the database's time {now.isoformat()}")
    path = (await conn.execute(text("SELECT current_setting('search_path')"))).scalar_one()
    await conn.execute(
        text("SELECT set_config('search_path', :path, true), set_config('epochflow.as_at', :at, true)"),
        {"path": f"{AS_AT_SCHEMA}, {path}", "at": as_at.isoformat()},
    )
    return as_at


async def prune(engine: AsyncEngine, keep: timedelta) -> int:
    """Drop the versions superseded more than `keep` ago; how many were dropped."""
    dropped = 0
    async with engine.begin() as conn:
        for table in VERSIONS.values():
            result = await conn.execute(
                text(f"DELETE FROM {table.name} WHERE system_to < clock_timestamp() - CAST(:keep AS interval)"),
                {"keep": keep},
            )
            dropped += result.rowcount or 0
    return dropped


async def storage(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per versioned table: its rows and bytes, and its versions' rows and bytes."""
    sizes: dict[str, dict[str, int]] = {}
    async with engine.connect() as conn:
        for name, versions in VERSIONS.items():
            row = (
                await conn.execute(
                    text(
                        f"SELECT (SELECT count(*) FROM {name}), pg_total_relation_size('{name}'), "
                        f"(SELECT count(*) FROM {versions.name}), pg_total_relation_size('{versions.name}')"
                    )
                )
            ).one()
            sizes[name] = {"rows": row[0], "bytes": row[1], "versions": row[2], "versions_bytes": row[3]}
    return sizes
