"""What the read modules share: running a query, a key's current epoch, a consistent
read transaction, one answer read at one system time (`read_at`), and the one lookup
every audience makes (a key's position_state row)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Select, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.domain.scheduling import JobStatus
from epochflow.sinks.models import daily_position_snapshots, position_state
from epochflow.sinks.versions import start_read

# valuation jobs not ended yet
OPEN_JOB_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING)


@dataclass
class Reading:
    """The reads of one answer (`read_at`): one transaction, opened by the first read, at
    one system time (`at`: None until something was read)."""

    engine: Callable[[], AsyncEngine]
    as_at: datetime | None
    at: datetime | None = None
    _conn: AsyncConnection | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self._stack.enter_async_context(self.engine().connect())
            conn = await conn.execution_options(isolation_level="READ COMMITTED")  # see `versions.start_read`
            await self._stack.enter_async_context(conn.begin())
            self.at = await start_read(conn, self.as_at)
            self._conn = conn
        return self._conn


# the `read_at` in progress: every read of this task runs in its transaction
_reading: ContextVar[Reading | None] = ContextVar("epochflow_reading", default=None)


@asynccontextmanager
async def read_at(engine: Callable[[], AsyncEngine], as_at: datetime | None = None) -> AsyncIterator[Reading]:
    """Run every read of this task, until the block ends, in one transaction at one system
    time: now, or `as_at` (the tables as they were then, exactly; see `sinks.versions`).
    The transaction starts with the first read (`engine()` is called then) and its time is
    the `Reading`'s `at`. The sink's writes wait until the block ends, so keep it short."""
    reading = Reading(engine, as_at)
    token = _reading.set(reading)
    try:
        async with reading._stack:
            yield reading
    finally:
        _reading.reset(token)


@asynccontextmanager
async def _connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    reading = _reading.get()
    if reading is not None:
        yield await reading.connection()
        return
    async with engine.connect() as conn:
        yield conn


async def mappings(engine: AsyncEngine, query: Select[Any]) -> list[RowMapping]:
    async with _connection(engine) as conn:
        return list((await conn.execute(query)).mappings())


async def one(engine: AsyncEngine, query: Select[Any]) -> dict[str, Any] | None:
    """The first row of `query` as a plain dict (None: no row)."""
    rows = await mappings(engine, query)
    return dict(rows[0]) if rows else None


async def scalar(engine: AsyncEngine, query: Select[Any]) -> Any:
    async with _connection(engine) as conn:
        return (await conn.execute(query)).scalar_one()


@asynccontextmanager
async def consistent(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One REPEATABLE READ transaction, so the figures of one answer all come from the
    same moment even while the sink writes. Inside `read_at`: its READ COMMITTED
    transaction, which holds the sink's writes off, so its statements all see the same."""
    reading = _reading.get()
    if reading is not None:
        yield await reading.connection()
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


def current_epoch(portfolio_id: str, security_id: str) -> Any:
    """The key's current epoch (NULL, so matching nothing, when it has no state)."""
    s = position_state.c
    return select(s.epoch).where(s.portfolio_id == portfolio_id, s.security_id == security_id).scalar_subquery()


def same_key(table: Table) -> Any:
    """`table`'s row belongs to the position_state row of the outer query, in its epoch."""
    s = position_state.c
    return and_(
        table.c.portfolio_id == s.portfolio_id, table.c.security_id == s.security_id, table.c.epoch == s.epoch
    )


def latest_snapshot_date(portfolio_id: str) -> Select[Any]:
    """The latest day any key of the portfolio has a snapshot of in its current epoch."""
    s, d = position_state.c, daily_position_snapshots.c
    return (
        select(func.max(d.date))
        .select_from(daily_position_snapshots.join(position_state, same_key(daily_position_snapshots)))
        .where(d.portfolio_id == portfolio_id, s.portfolio_id == portfolio_id)
    )


async def position(engine: AsyncEngine, portfolio_id: str, security_id: str) -> dict[str, Any] | None:
    """The key's position_state row as a plain dict (None: the key has no state)."""
    s = position_state.c
    return await one(engine, select(position_state).where(s.portfolio_id == portfolio_id, s.security_id == security_id))
