"""Reads of the timeseries role's rows: cash flows, position and portfolio time series and
the time-weighted return of a period, each with `reprocessing_status` (IN_PROGRESS while a
key of the portfolio, or the key, is being rebuilt: its rows are then of its current
epoch as far as they are rebuilt); and the scenario runner's lookups by identity."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.domain.model import reprocessing_status
from epochflow.domain.returns import DayReturn, time_weighted
from epochflow.domain.timeseries import COMPLETE
from epochflow.sinks.models import cashflows, portfolio_timeseries, position_state, position_timeseries
from epochflow.sinks.reads.query import consistent, current_epoch, one

SERIES_FIELDS = ("date", "bod_market_value", "eod_market_value", "bod_cashflow", "eod_cashflow", "fees",
                 "daily_return", "valuation_status", "keys_unvalued")
POSITION_FIELDS = ("date", "epoch", "bod_market_value", "eod_market_value", "quantity", "cost",
                   "bod_cashflow_position", "eod_cashflow_position", "bod_cashflow_portfolio",
                   "eod_cashflow_portfolio")
CASHFLOW_FIELDS = ("transaction_id", "security_id", "transaction_type", "amount", "currency", "classification",
                   "timing", "calculation_type", "is_position_flow", "is_portfolio_flow", "cashflow_date")


def _between(query: Select[Any], column: Any, start: date | None, end: date | None) -> Select[Any]:
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column <= end)
    return query


async def _portfolio_status(conn: AsyncConnection, portfolio_id: str) -> str | None:
    """IN_PROGRESS when any key of the portfolio is being rebuilt; None: no key at all."""
    s = position_state.c
    statuses = set((await conn.execute(select(s.status).where(s.portfolio_id == portfolio_id))).scalars())
    if not statuses:
        return None
    return "IN_PROGRESS" if any(reprocessing_status(st) != "CURRENT" for st in statuses) else "CURRENT"


async def _rebuilding_from(conn: AsyncConnection, portfolio_id: str) -> date | None:
    """The first day a key of the portfolio being rebuilt has not been valued again yet."""
    s = position_state.c
    query = select(func.min(s.watermark_date)).where(s.portfolio_id == portfolio_id, s.status == "REPROCESSING")
    watermark = (await conn.execute(query)).scalar_one()
    return None if watermark is None else watermark + timedelta(days=1)


async def _series_rows(conn: AsyncConnection, portfolio_id: str, start: date | None, end: date | None) -> list[dict]:
    t = portfolio_timeseries.c
    query = _between(select(*(t[f] for f in SERIES_FIELDS)).where(t.portfolio_id == portfolio_id, t.present),
                     t.date, start, end).order_by(t.date)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def portfolio_series(engine: AsyncEngine, portfolio_id: str, start: date | None = None,
                           end: date | None = None) -> dict[str, Any] | None:
    """The portfolio's daily rows (base currency) with the cumulative return to each day;
    None: an unknown portfolio."""
    async with consistent(engine) as conn:
        status = await _portfolio_status(conn, portfolio_id)
        if status is None:
            return None
        rows = await _series_rows(conn, portfolio_id, start, end)
        rebuilding_from = await _rebuilding_from(conn, portfolio_id) if status != "CURRENT" else None
    days: list[DayReturn] = []
    for row in rows:
        days.append(DayReturn(row["date"], row["daily_return"], row["valuation_status"] == COMPLETE))
        row["cumulative_return"] = time_weighted(days).twr
    return {"portfolio_id": portfolio_id, "reprocessing_status": status, "rebuilding_from": rebuilding_from,
            "rows": rows}


async def performance(engine: AsyncEngine, portfolio_id: str, start: date | None = None,
                      end: date | None = None) -> dict[str, Any] | None:
    """The time-weighted return over the period, and the days that make it null."""
    async with consistent(engine) as conn:
        status = await _portfolio_status(conn, portfolio_id)
        if status is None:
            return None
        rows = await _series_rows(conn, portfolio_id, start, end)
    result = time_weighted(DayReturn(r["date"], r["daily_return"], r["valuation_status"] == COMPLETE) for r in rows)
    return {
        "portfolio_id": portfolio_id, "reprocessing_status": status,
        "from": rows[0]["date"] if rows else start, "to": rows[-1]["date"] if rows else end,
        "days": result.days, "time_weighted_return": result.twr, "null_days": list(result.null_days),
    }


async def position_series(engine: AsyncEngine, portfolio_id: str, security_id: str, start: date | None = None,
                          end: date | None = None) -> dict[str, Any] | None:
    """The key's daily rows in its current epoch (local currency); None: an unknown key."""
    s, t = position_state.c, position_timeseries.c
    async with consistent(engine) as conn:
        state = (await conn.execute(select(s.epoch, s.status).where(
            s.portfolio_id == portfolio_id, s.security_id == security_id))).first()
        if state is None:
            return None
        query = _between(select(*(t[f] for f in POSITION_FIELDS)).where(
            t.portfolio_id == portfolio_id, t.security_id == security_id, t.epoch == state.epoch, t.present),
            t.date, start, end).order_by(t.date)
        rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    return {"portfolio_id": portfolio_id, "security_id": security_id, "epoch": state.epoch,
            "reprocessing_status": reprocessing_status(state.status), "rows": rows}


async def portfolio_cashflows(engine: AsyncEngine, portfolio_id: str, start: date | None = None,
                              end: date | None = None) -> dict[str, Any] | None:
    """The portfolio's cash flows by date (transaction currencies); None: unknown portfolio."""
    c = cashflows.c
    async with consistent(engine) as conn:
        status = await _portfolio_status(conn, portfolio_id)
        if status is None:
            return None
        query = _between(select(*(c[f] for f in CASHFLOW_FIELDS)).where(c.portfolio_id == portfolio_id),
                         c.cashflow_date, start, end).order_by(c.cashflow_date, c.transaction_id)
        rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    return {"portfolio_id": portfolio_id, "reprocessing_status": status, "rows": rows}


# -- one row by identity (what `epochflow scenario run` compares) -------------------------


async def cashflow(engine: AsyncEngine, transaction_id: str) -> dict[str, Any] | None:
    return await one(engine, select(cashflows).where(cashflows.c.transaction_id == transaction_id))


async def position_point(engine: AsyncEngine, portfolio_id: str, security_id: str, day: date) -> dict[str, Any] | None:
    """The key's row of `day` in its current epoch (None: none, or no snapshot that day)."""
    t = position_timeseries.c
    return await one(engine, select(position_timeseries).where(
        t.portfolio_id == portfolio_id, t.security_id == security_id, t.date == day, t.present,
        t.epoch == current_epoch(portfolio_id, security_id)))


async def portfolio_point(engine: AsyncEngine, portfolio_id: str, day: date) -> dict[str, Any] | None:
    t = portfolio_timeseries.c
    return await one(engine, select(portfolio_timeseries).where(
        t.portfolio_id == portfolio_id, t.date == day, t.present))
