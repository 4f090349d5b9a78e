"""Row lookups for the scenario runner (`epochflow scenario run` compares expected rows
with these), the benchmarks and the tests: typed listings, and one row by identity as a
plain dict. The key's position_state row is `query.position`, which the API reads too."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import PositionStateRow, TransactionRow
from epochflow.sinks.models import (
    daily_position_snapshots,
    portfolio_valuation_jobs,
    position_history,
    position_state,
    transactions,
)
from epochflow.sinks.reads.query import current_epoch, mappings, one, scalar


async def fetch_positions(
    engine: AsyncEngine, portfolio_id: str | None = None, security_id: str | None = None
) -> list[PositionStateRow]:
    """Current position and status (`status` tells readers a key is being rebuilt)."""
    query = select(position_state).order_by(position_state.c.portfolio_id, position_state.c.security_id)
    if portfolio_id is not None:
        query = query.where(position_state.c.portfolio_id == portfolio_id)
    if security_id is not None:
        query = query.where(position_state.c.security_id == security_id)
    return [PositionStateRow.model_validate(row) for row in await mappings(engine, query)]


async def fetch_transactions(
    engine: AsyncEngine, portfolio_id: str | None = None, security_id: str | None = None
) -> list[TransactionRow]:
    """Each transaction's latest stored version, in processing order within a key."""
    t = transactions.c
    query = select(transactions).order_by(t.portfolio_id, t.security_id, t.transaction_date, t.transaction_id)
    if portfolio_id is not None:
        query = query.where(t.portfolio_id == portfolio_id)
    if security_id is not None:
        query = query.where(t.security_id == security_id)
    return [TransactionRow.model_validate(row) for row in await mappings(engine, query)]


async def count_position_history(
    engine: AsyncEngine,
    portfolio_id: str | None = None,
    security_id: str | None = None,
    epoch: int | None = None,
) -> int:
    """Number of history rows matching every filter given (all epochs when `epoch` is None)."""
    h = position_history.c
    query = select(func.count()).select_from(position_history)
    if portfolio_id is not None:
        query = query.where(h.portfolio_id == portfolio_id)
    if security_id is not None:
        query = query.where(h.security_id == security_id)
    if epoch is not None:
        query = query.where(h.epoch == epoch)
    return int(await scalar(engine, query))


async def count_snapshots(engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int) -> int:
    """Number of daily snapshots the key has in `epoch`."""
    d = daily_position_snapshots.c
    query = (
        select(func.count())
        .select_from(daily_position_snapshots)
        .where(d.portfolio_id == portfolio_id, d.security_id == security_id, d.epoch == epoch)
    )
    return int(await scalar(engine, query))


# -- one row by identity, as plain dicts (what `epochflow scenario run` compares) ---------


async def transaction(engine: AsyncEngine, transaction_id: str) -> dict[str, Any] | None:
    return await one(engine, select(transactions).where(transactions.c.transaction_id == transaction_id))


async def history_row(
    engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int, transaction_id: str
) -> dict[str, Any] | None:
    h = position_history.c
    return await one(
        engine,
        select(position_history).where(
            h.portfolio_id == portfolio_id,
            h.security_id == security_id,
            h.epoch == epoch,
            h.transaction_id == transaction_id,
        ),
    )


async def history_count(
    engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int
) -> dict[str, Any]:
    count = await count_position_history(engine, portfolio_id, security_id, epoch)
    return {"portfolio_id": portfolio_id, "security_id": security_id, "epoch": epoch, "count": count}


async def snapshot(
    engine: AsyncEngine, portfolio_id: str, security_id: str, date: date, epoch: int
) -> dict[str, Any] | None:
    """The key's snapshot of `date` in `epoch`."""
    d = daily_position_snapshots.c
    return await one(
        engine,
        select(daily_position_snapshots).where(
            d.portfolio_id == portfolio_id, d.security_id == security_id, d.date == date, d.epoch == epoch
        ),
    )


async def snapshot_current_epoch(
    engine: AsyncEngine, portfolio_id: str, security_id: str, date: date
) -> dict[str, Any] | None:
    """The key's snapshot of `date` in its current epoch (position_state's); None when the
    key has no state or that epoch has no snapshot of the day."""
    d = daily_position_snapshots.c
    return await one(
        engine,
        select(daily_position_snapshots).where(
            d.portfolio_id == portfolio_id,
            d.security_id == security_id,
            d.date == date,
            d.epoch == current_epoch(portfolio_id, security_id),
        ),
    )


async def valuation_job(
    engine: AsyncEngine, portfolio_id: str, security_id: str, valuation_date: date, epoch: int
) -> dict[str, Any] | None:
    j = portfolio_valuation_jobs.c
    return await one(
        engine,
        select(portfolio_valuation_jobs).where(
            j.portfolio_id == portfolio_id,
            j.security_id == security_id,
            j.valuation_date == valuation_date,
            j.epoch == epoch,
        ),
    )


async def earliest_job_date(engine: AsyncEngine, portfolio_id: str, security_id: str) -> date | None:
    """The earliest valuation date of any job of the key, in any epoch (None: no job)."""
    j = portfolio_valuation_jobs.c
    query = select(func.min(j.valuation_date)).where(j.portfolio_id == portfolio_id, j.security_id == security_id)
    earliest: date | None = await scalar(engine, query)
    return earliest
