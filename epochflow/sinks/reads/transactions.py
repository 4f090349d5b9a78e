"""A portfolio's transactions as the positions role last costed them (the web API's
`GET /portfolios/{portfolio_id}/transactions/`).

The `transactions` table keeps one row per transaction id, its latest version. After an
epoch bump the positions role writes again only the transactions it costed again: those
before the day the new epoch carried over unchanged keep the epoch they were costed in,
so every row is current even when its epoch is older than its key's."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.domain.model import Flag, reprocessing_status
from epochflow.sinks.models import position_state, transactions
from epochflow.sinks.reads.query import consistent

FIELDS = ("transaction_id", "security_id", "transaction_type", "transaction_date", "epoch", "quantity", "price",
          "gross_amount", "trade_fee", "trade_currency", "net_cost", "net_cost_local", "realized_gain_loss",
          "realized_gain_loss_local", "transaction_fx_rate", "flags")


def decode_flags(flags: str) -> dict[str, bool]:
    """The `flags` column (comma-separated `Flag` values, empty when none) as booleans."""
    found = set(flags.split(",")) if flags else set()
    return {"oversold": Flag.OVERSOLD.value in found, "fx_missing": Flag.FX_MISSING.value in found}


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def portfolio_transactions(
    engine: AsyncEngine,
    portfolio_id: str,
    date_from: date | None = None,
    date_to: date | None = None,
    security_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any] | None:
    """The portfolio's transactions dated `date_from` to `date_to` (inclusive, UTC days)
    of `security_id` when given, by timestamp then id, one page of them with the total;
    `reprocessing_status` of the portfolio (IN_PROGRESS while any key is being rebuilt)
    and of each transaction's key. None: the portfolio has no key."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    t, s = transactions.c, position_state.c
    filters = [t.portfolio_id == portfolio_id]
    if security_id is not None:
        filters.append(t.security_id == security_id)
    if date_from is not None:
        filters.append(t.transaction_date >= _start_of(date_from))
    if date_to is not None and date_to < date.max:  # the last day there is bounds nothing
        filters.append(t.transaction_date < _start_of(date_to + timedelta(days=1)))
    key_status = (
        select(s.status)
        .where(s.portfolio_id == t.portfolio_id, s.security_id == t.security_id)
        .scalar_subquery()
        .label("key_status")
    )
    page = (
        select(*(t[name] for name in FIELDS), key_status)
        .where(*filters)
        .order_by(t.transaction_date, t.transaction_id)
        .limit(limit)
        .offset(offset)
    )
    async with consistent(engine) as conn:
        statuses = set((await conn.execute(select(s.status).where(s.portfolio_id == portfolio_id))).scalars())
        if not statuses:
            return None
        total = (await conn.execute(select(func.count()).select_from(transactions).where(*filters))).scalar_one()
        rows = [dict(row) for row in (await conn.execute(page)).mappings()]
    for row in rows:
        row.update(decode_flags(row.pop("flags")))
        row["reprocessing_status"] = reprocessing_status(row.pop("key_status") or "")
    portfolio_status = "IN_PROGRESS" if any(reprocessing_status(st) != "CURRENT" for st in statuses) else "CURRENT"
    return {"portfolio_id": portfolio_id, "reprocessing_status": portfolio_status, "security_id": security_id,
            "from": date_from, "to": date_to, "total": int(total), "limit": limit, "offset": offset,
            "transactions": rows}
