"""Overviews: every key's position with its valuation and realized P&L, and the flagged
transactions (what `epochflow demo` prints); what support looks at first for a portfolio
(`GET /portfolios/{portfolio_id}/support/`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.domain import fanout
from epochflow.domain.model import KeyStatus
from epochflow.domain.scheduling import JobStatus
from epochflow.schemas.results import ReprocessingJobRow, ValuationJobRow
from epochflow.sinks.models import (
    daily_position_snapshots,
    portfolio_valuation_jobs,
    position_state,
    reprocessing_jobs,
    transactions,
)
from epochflow.sinks.reads.query import consistent, latest_snapshot_date, mappings

SUPPORT_ROWS_SHOWN = 20


async def positions_overview(engine: AsyncEngine, business_date: date | None = None) -> list[dict[str, Any]]:
    """Every key's position with its realized P&L to date (base and local) and its
    valuation: the current epoch's snapshot of `business_date` (of its latest day when
    None; all valuation columns None when there is no such snapshot)."""
    s, t, d = position_state.c, transactions.c, daily_position_snapshots.c
    realized = (
        select(
            t.portfolio_id,
            t.security_id,
            func.sum(t.realized_gain_loss).label("realized_gain_loss"),
            func.sum(t.realized_gain_loss_local).label("realized_gain_loss_local"),
        )
        .group_by(t.portfolio_id, t.security_id)
        .subquery()
    )
    snap_query = select(
        d.date.label("snapshot_date"),
        d.market_price,
        d.market_value,
        d.market_value_local,
        d.unrealized_gain_loss,
        d.unrealized_gain_loss_local,
        d.fx_rate,
        d.valuation_status,
        d.price_date,
    ).where(d.portfolio_id == s.portfolio_id, d.security_id == s.security_id, d.epoch == s.epoch)
    if business_date is not None:
        snap_query = snap_query.where(d.date == business_date)
    snap = snap_query.order_by(d.date.desc()).limit(1).lateral("snap")
    query = (
        select(
            position_state,
            realized.c.realized_gain_loss,
            realized.c.realized_gain_loss_local,
            *(snap.c[name] for name in snap.c.keys()),
        )
        .join(realized, (realized.c.portfolio_id == s.portfolio_id) & (realized.c.security_id == s.security_id), isouter=True)
        .join(snap, true(), isouter=True)
        .order_by(s.portfolio_id, s.security_id)
    )
    return [dict(row) for row in await mappings(engine, query)]


async def flagged_transactions(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Transactions still flagged (oversold, waiting for FX)."""
    t = transactions.c
    query = select(transactions).where(t.flags != "").order_by(t.portfolio_id, t.security_id, t.transaction_date)
    return [dict(row) for row in await mappings(engine, query)]


async def portfolio_support(
    engine: AsyncEngine, portfolio_id: str, shown: int = SUPPORT_ROWS_SHOWN
) -> dict[str, Any] | None:
    """What support looks at first for a portfolio, read at one moment; None when the
    portfolio has no key.

    * `business_date`: the latest business date the data shows, the later of the highest
      watermark of any key (only the scheduler advances watermarks, and only up to the
      business date) and the portfolio's latest snapshot date.
    * `keys_by_status`, and the keys (at most `shown` of each, by security) REPROCESSING,
      behind the business date while CURRENT (watermark NULL or earlier), or waiting for
      data (`waiting_for`).
    * valuation jobs of the keys' current epochs PENDING (of which blocked: with a
      failure_reason), PROCESSING and FAILED, with the FAILED and blocked ones listed.
    * the latest snapshot and transaction dates; the open RESET_WATERMARKS jobs of the
      portfolio's securities."""
    s, j, t, r = position_state.c, portfolio_valuation_jobs.c, transactions.c, reprocessing_jobs.c
    async with consistent(engine) as conn:
        by_status = {
            row.status: int(row.count)
            for row in await conn.execute(
                select(s.status, func.count().label("count")).where(s.portfolio_id == portfolio_id).group_by(s.status)
            )
        }
        if not by_status:
            return None
        latest_snapshot = (await conn.execute(latest_snapshot_date(portfolio_id))).scalar_one()
        highest_watermark = (await conn.execute(select(func.max(s.watermark_date)))).scalar_one()
        known = [d for d in (highest_watermark, latest_snapshot) if d is not None]
        business_date = max(known) if known else None
        latest_transaction = (
            await conn.execute(select(func.max(t.transaction_date)).where(t.portfolio_id == portfolio_id))
        ).scalar_one()

        key_columns = (s.security_id, s.epoch, s.status, s.watermark_date, s.generation, s.waiting_for)

        async def keys_where(condition: Any) -> tuple[int, list[dict[str, Any]]]:
            mine = and_(s.portfolio_id == portfolio_id, condition)
            count = (await conn.execute(select(func.count()).select_from(position_state).where(mine))).scalar_one()
            rows = await conn.execute(select(*key_columns).where(mine).order_by(s.security_id).limit(shown))
            return int(count), [dict(row) for row in rows.mappings()]

        reprocessing = await keys_where(s.status == KeyStatus.REPROCESSING)
        behind = await keys_where(
            and_(
                s.status != KeyStatus.REPROCESSING,
                or_(s.watermark_date.is_(None), s.watermark_date < business_date) if business_date else true(),
                s.first_open_date.is_not(None),
            )
        )
        waiting = await keys_where(s.waiting_for != "")

        in_current_epoch = portfolio_valuation_jobs.join(
            position_state,
            and_(s.portfolio_id == j.portfolio_id, s.security_id == j.security_id, s.epoch == j.epoch),
        )
        pending = j.status == JobStatus.PENDING
        blocked_job = and_(pending, j.failure_reason.is_not(None))
        counts = (
            await conn.execute(
                select(
                    func.count().filter(pending).label("pending"),
                    func.count().filter(blocked_job).label("blocked"),
                    func.count().filter(j.status == JobStatus.PROCESSING).label("processing"),
                    func.count().filter(j.status == JobStatus.FAILED).label("failed"),
                )
                .select_from(in_current_epoch)
                .where(j.portfolio_id == portfolio_id)
            )
        ).mappings().one()
        troubled = (
            await conn.execute(
                select(portfolio_valuation_jobs)
                .select_from(in_current_epoch)
                .where(j.portfolio_id == portfolio_id, or_(j.status == JobStatus.FAILED, blocked_job))
                .order_by(j.security_id, j.valuation_date)
                .limit(shown)
            )
        ).mappings().all()
        securities = select(s.security_id).where(s.portfolio_id == portfolio_id)
        resets = (
            await conn.execute(
                select(reprocessing_jobs)
                .where(r.security_id.in_(securities), r.status.in_(fanout.OPEN))
                .order_by(r.created_at, r.job_id)
                .limit(shown)
            )
        ).mappings().all()
    return {
        "business_date": business_date,
        "keys_by_status": by_status,
        "keys_reprocessing": reprocessing,
        "keys_behind": behind,
        "keys_waiting_for_data": waiting,
        "valuation_jobs": {name: int(value) for name, value in counts.items()},
        "troubled_jobs": [ValuationJobRow.model_validate(row) for row in troubled],
        "latest_snapshot_date": latest_snapshot,
        "latest_transaction_date": latest_transaction,
        "open_reset_jobs": [ReprocessingJobRow.model_validate(row) for row in resets],
    }
