"""Queries over the sink's tables, for the scenario runner and the API.

Rows come back as the same pydantic models the sink writes, so a reader and the writer
share one vocabulary. Every filter is a bound parameter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import PositionHistoryRow, PositionStateRow, TransactionRow
from epochflow.sinks.models import pipeline_barriers, position_history, position_state, transactions


async def fetch_positions(
    engine: AsyncEngine, portfolio_id: str | None = None, security_id: str | None = None
) -> list[PositionStateRow]:
    """Current position and status (`status` tells readers a key is being rebuilt)."""
    query = select(position_state).order_by(position_state.c.portfolio_id, position_state.c.security_id)
    if portfolio_id is not None:
        query = query.where(position_state.c.portfolio_id == portfolio_id)
    if security_id is not None:
        query = query.where(position_state.c.security_id == security_id)
    return [PositionStateRow.model_validate(row) for row in await _mappings(engine, query)]


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
    return [TransactionRow.model_validate(row) for row in await _mappings(engine, query)]


async def fetch_position_history(
    engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int | None = None
) -> list[PositionHistoryRow]:
    """The key's history in `epoch`, or in its current epoch (from position_state) when
    None; empty when the key has no state yet."""
    h, s = position_history.c, position_state.c
    current = select(s.epoch).where(s.portfolio_id == portfolio_id, s.security_id == security_id)
    query = (
        select(position_history)
        .where(
            h.portfolio_id == portfolio_id,
            h.security_id == security_id,
            h.epoch == (epoch if epoch is not None else current.scalar_subquery()),
        )
        .order_by(h.seq, h.transaction_id)
    )
    return [PositionHistoryRow.model_validate(row) for row in await _mappings(engine, query)]


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
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def barriers_seen(engine: AsyncEngine, token: str) -> set[tuple[str, int]]:
    """The (stage, partition) pairs that have written barrier `token`."""
    b = pipeline_barriers.c
    query = select(b.stage, b.partition).where(b.token == token)
    async with engine.connect() as conn:
        return {(row.stage, row.partition) for row in await conn.execute(query)}


async def _mappings(engine: AsyncEngine, query: Select[Any]) -> list[RowMapping]:
    async with engine.connect() as conn:
        return list((await conn.execute(query)).mappings())


# -- one row by identity, as plain dicts (what `epochflow scenario run` compares) ---------


async def position(engine: AsyncEngine, portfolio_id: str, security_id: str) -> dict[str, Any] | None:
    s = position_state.c
    return await _one(
        engine, select(position_state).where(s.portfolio_id == portfolio_id, s.security_id == security_id)
    )


async def transaction(engine: AsyncEngine, transaction_id: str) -> dict[str, Any] | None:
    return await _one(engine, select(transactions).where(transactions.c.transaction_id == transaction_id))


async def history_row(
    engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int, transaction_id: str
) -> dict[str, Any] | None:
    h = position_history.c
    return await _one(
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


async def _one(engine: AsyncEngine, query: Select[Any]) -> dict[str, Any] | None:
    rows = await _mappings(engine, query)
    return dict(rows[0]) if rows else None


# -- summaries (demo, reports) ------------------------------------------------------------


async def positions_overview(engine: AsyncEngine, business_date=None) -> list[dict[str, Any]]:
    """Every key's position with its realized P&L to date and, when a business date is
    given, that day's snapshot of the key's current epoch."""
    from sqlalchemy import text

    query = text(
        """
        SELECT s.*, r.realized_gain_loss, r.realized_gain_loss_local,
               d.market_value, d.unrealized_gain_loss, d.valuation_status
        FROM position_state s
        LEFT JOIN (SELECT portfolio_id, security_id,
                          sum(realized_gain_loss) AS realized_gain_loss,
                          sum(realized_gain_loss_local) AS realized_gain_loss_local
                   FROM transactions GROUP BY portfolio_id, security_id) r
               ON r.portfolio_id = s.portfolio_id AND r.security_id = s.security_id
        LEFT JOIN daily_position_snapshots d
               ON d.portfolio_id = s.portfolio_id AND d.security_id = s.security_id
              AND d.epoch = s.epoch AND d.date = :business_date
        ORDER BY s.portfolio_id, s.security_id
        """
    )
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query, {"business_date": business_date})).mappings()]


async def flagged_transactions(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Transactions still flagged (oversold, waiting for FX)."""
    t = transactions.c
    query = select(transactions).where(t.flags != "").order_by(t.portfolio_id, t.security_id, t.transaction_date)
    return [dict(row) for row in await _mappings(engine, query)]
