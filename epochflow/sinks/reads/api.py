"""The reads behind the web API (`epochflow.web.api`): a key's history and snapshots,
valuation jobs, the fan-out's jobs and triggers, a portfolio's positions on one day, a
key's lineage. The answers made of several queries read in one REPEATABLE READ
transaction (`query.consistent`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import exists, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.domain import fanout
from epochflow.domain.model import reprocessing_status
from epochflow.domain.scheduling import JobStatus
from epochflow.schemas.results import (
    PositionHistoryRow,
    ReprocessingJobRow,
    ReprocessingTriggerRow,
    SnapshotRow,
    ValuationJobRow,
)
from epochflow.sinks.models import (
    daily_position_snapshots,
    portfolio_valuation_jobs,
    position_history,
    position_state,
    reprocessing_jobs,
    reprocessing_triggers,
)
from epochflow.sinks.reads.query import (
    consistent,
    current_epoch,
    latest_snapshot_date,
    mappings,
    same_key,
    scalar,
)

VALUATION_JOB_STATUSES = tuple(status.value for status in JobStatus)  # plain strings: they name JSON fields


async def fetch_position_history(
    engine: AsyncEngine,
    portfolio_id: str,
    security_id: str,
    epoch: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[PositionHistoryRow]:
    """The key's history in `epoch`, or in its current epoch (from position_state) when
    None; empty when the key has no state yet. `date_from`/`date_to` (inclusive) bound the
    rows' position_date when given."""
    h = position_history.c
    query = (
        select(position_history)
        .where(
            h.portfolio_id == portfolio_id,
            h.security_id == security_id,
            h.epoch == (epoch if epoch is not None else current_epoch(portfolio_id, security_id)),
        )
        .order_by(h.seq, h.transaction_id)
    )
    if date_from is not None:
        query = query.where(h.position_date >= date_from)
    if date_to is not None:
        query = query.where(h.position_date <= date_to)
    return [PositionHistoryRow.model_validate(row) for row in await mappings(engine, query)]


async def fetch_snapshots(
    engine: AsyncEngine,
    portfolio_id: str,
    security_id: str,
    epoch: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[SnapshotRow]:
    """The key's daily snapshots of `epoch` (its current epoch when None) by date, from
    `date_from` to `date_to` inclusive when given; empty when the key has no state yet and
    no epoch is given."""
    d = daily_position_snapshots.c
    query = (
        select(daily_position_snapshots)
        .where(
            d.portfolio_id == portfolio_id,
            d.security_id == security_id,
            d.epoch == (epoch if epoch is not None else current_epoch(portfolio_id, security_id)),
        )
        .order_by(d.date)
    )
    if date_from is not None:
        query = query.where(d.date >= date_from)
    if date_to is not None:
        query = query.where(d.date <= date_to)
    return [SnapshotRow.model_validate(row) for row in await mappings(engine, query)]


async def fetch_valuation_jobs(
    engine: AsyncEngine,
    portfolio_id: str | None = None,
    security_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    epoch: int | None = None,
) -> list[ValuationJobRow]:
    """Valuation jobs of every epoch (or of `epoch`) matching every filter given, by key,
    date, epoch."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    j = portfolio_valuation_jobs.c
    query = select(portfolio_valuation_jobs).order_by(j.portfolio_id, j.security_id, j.valuation_date, j.epoch)
    query = query.where(*_valuation_job_filters(portfolio_id, security_id, status, epoch))
    query = query.limit(limit).offset(offset)
    return [ValuationJobRow.model_validate(row) for row in await mappings(engine, query)]


async def count_valuation_jobs(
    engine: AsyncEngine,
    portfolio_id: str | None = None,
    security_id: str | None = None,
    status: str | None = None,
    epoch: int | None = None,
) -> int:
    """How many valuation jobs `fetch_valuation_jobs` pages through with the same filters."""
    query = (
        select(func.count())
        .select_from(portfolio_valuation_jobs)
        .where(*_valuation_job_filters(portfolio_id, security_id, status, epoch))
    )
    return int(await scalar(engine, query))


def _valuation_job_filters(
    portfolio_id: str | None, security_id: str | None, status: str | None, epoch: int | None
) -> list[Any]:
    j = portfolio_valuation_jobs.c
    wanted = ((j.portfolio_id, portfolio_id), (j.security_id, security_id), (j.status, status), (j.epoch, epoch))
    return [column == value for column, value in wanted if value is not None]


async def fetch_reprocessing_jobs(
    engine: AsyncEngine,
    security_id: str | None = None,
    status: str | None = None,
    subject: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ReprocessingJobRow]:
    """The fan-out's RESET_WATERMARKS jobs matching every filter given, newest first."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    r = reprocessing_jobs.c
    query = select(reprocessing_jobs).order_by(r.created_at.desc(), r.job_id)
    if security_id is not None:
        query = query.where(r.security_id == security_id)
    if status is not None:
        query = query.where(r.status == status)
    if subject is not None:
        query = query.where(r.subject == subject)
    query = query.limit(limit).offset(offset)
    return [ReprocessingJobRow.model_validate(row) for row in await mappings(engine, query)]


async def fetch_reprocessing_triggers(engine: AsyncEngine, pending_only: bool = True) -> list[ReprocessingTriggerRow]:
    """The fan-out's triggers (by default only those not yet queued as jobs), oldest first."""
    t = reprocessing_triggers.c
    query = select(reprocessing_triggers).order_by(t.created_at, t.subject, t.partition)
    if pending_only:
        query = query.where(t.pending)
    return [ReprocessingTriggerRow.model_validate(row) for row in await mappings(engine, query)]


async def fanout_progress(engine: AsyncEngine) -> dict[str, int]:
    """Keys reset against keys to reset, over the open jobs, and the jobs by status."""
    r = reprocessing_jobs.c
    open_ = r.status.in_(fanout.OPEN)
    query = select(
        func.coalesce(func.sum(r.keys_reset).filter(open_), 0).label("keys_reset"),
        func.coalesce(func.sum(r.keys_total).filter(open_), 0).label("keys_total"),
        *(func.count().filter(r.status == status).label(status.lower()) for status in fanout.ResetJobStatus),
    )
    row = (await mappings(engine, query))[0]
    return {name: int(value) for name, value in row.items()}


async def portfolio_exists(engine: AsyncEngine, portfolio_id: str) -> bool:
    """Whether any key of the portfolio has a position_state row."""
    return bool(await scalar(engine, select(exists().where(position_state.c.portfolio_id == portfolio_id))))


async def positions_as_of(
    engine: AsyncEngine, portfolio_id: str, as_of: date | None = None
) -> tuple[date | None, list[dict[str, Any]]]:
    """A portfolio's positions in each key's current epoch, valued on one day: the day
    (`as_of`, or when None the latest day any of its keys has a snapshot of, None when none
    has) and one row per key, by security.

    With `as_of`, quantity, cost and held_since_date are the key's at the end of that day
    (its last history row on or before it; a key with none is left out); without, they are
    the key's current position (position_state). The valuation columns come from the key's
    snapshot of that very day, so every row is valued on the same day (all None for a key
    without one, e.g. while it is being rebuilt). Each row carries `reprocessing_status`."""
    s, d, h = position_state.c, daily_position_snapshots.c, position_history.c
    async with consistent(engine) as conn:
        day = as_of if as_of is not None else (await conn.execute(latest_snapshot_date(portfolio_id))).scalar_one()
        valued = (
            select(
                d.date.label("valuation_date"),
                d.market_price,
                d.market_value,
                d.market_value_local,
                d.unrealized_gain_loss,
                d.unrealized_gain_loss_local,
                d.fx_rate,
                d.price_date,
                d.valuation_status,
            )
            .where(same_key(daily_position_snapshots), d.date == day)
            .lateral("valued")
        )
        figures: Any = position_state
        source: Any = position_state
        if as_of is not None:
            figures = (
                select(h.quantity, h.cost_basis, h.cost_basis_local, h.held_since_date)
                .where(same_key(position_history), h.position_date <= as_of)
                .order_by(h.seq.desc(), h.transaction_id.desc())
                .limit(1)
                .lateral("held")
            )
            source = position_state.join(figures, true())
        query = (
            select(
                s.portfolio_id,
                s.security_id,
                s.epoch,
                s.status,
                s.watermark_date,
                figures.c.quantity,
                figures.c.cost_basis,
                figures.c.cost_basis_local,
                figures.c.held_since_date,
                *valued.c,
            )
            .select_from(source.join(valued, true(), isouter=True))
            .where(s.portfolio_id == portfolio_id)
            .order_by(s.security_id)
        )
        rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    for row in rows:
        row["reprocessing_status"] = reprocessing_status(row["status"])
    return day, rows


async def key_lineage(engine: AsyncEngine, portfolio_id: str, security_id: str) -> dict[str, Any] | None:
    """Where a key's numbers come from and how far they are: its position_state row; the
    epochs its history has rows in; the current epoch's history and snapshot date ranges,
    its valuation jobs' date range and counts by status (and how many are blocked on data);
    the open RESET_WATERMARKS jobs of its security. None when the key has no state."""
    s, h, d, j, r = (
        position_state.c,
        position_history.c,
        daily_position_snapshots.c,
        portfolio_valuation_jobs.c,
        reprocessing_jobs.c,
    )
    async with consistent(engine) as conn:
        state = (
            await conn.execute(select(position_state).where(s.portfolio_id == portfolio_id, s.security_id == security_id))
        ).mappings().first()
        if state is None:
            return None
        epoch = state["epoch"]
        history = (
            await conn.execute(
                select(func.min(h.position_date), func.max(h.position_date), func.count()).where(
                    h.portfolio_id == portfolio_id, h.security_id == security_id, h.epoch == epoch
                )
            )
        ).one()
        epochs = (
            await conn.execute(
                select(h.epoch)
                .where(h.portfolio_id == portfolio_id, h.security_id == security_id)
                .group_by(h.epoch)
                .order_by(h.epoch)
            )
        ).scalars().all()
        snapshots = (
            await conn.execute(
                select(func.min(d.date), func.max(d.date), func.count()).where(
                    d.portfolio_id == portfolio_id, d.security_id == security_id, d.epoch == epoch
                )
            )
        ).one()
        job_rows = (
            await conn.execute(
                select(
                    j.status,
                    func.count().label("count"),
                    func.count().filter(j.failure_reason.is_not(None)).label("with_reason"),
                    func.min(j.valuation_date).label("earliest"),
                    func.max(j.valuation_date).label("latest"),
                )
                .where(j.portfolio_id == portfolio_id, j.security_id == security_id, j.epoch == epoch)
                .group_by(j.status)
            )
        ).mappings().all()
        resets = (
            await conn.execute(
                select(reprocessing_jobs)
                .where(r.security_id == security_id, r.status.in_(fanout.OPEN))
                .order_by(r.created_at, r.job_id)
            )
        ).mappings().all()
    earliest = [row["earliest"] for row in job_rows]
    latest = [row["latest"] for row in job_rows]
    blocked = sum(row["with_reason"] for row in job_rows if row["status"] == JobStatus.PENDING)
    return {
        "state": dict(state),
        "epochs_in_history": list(epochs),
        "history": {"first_date": history[0], "latest_date": history[1], "rows": int(history[2])},
        "snapshots": {"first_date": snapshots[0], "latest_date": snapshots[1], "count": int(snapshots[2])},
        "jobs": {
            "earliest_date": min(earliest) if earliest else None,
            "latest_date": max(latest) if latest else None,
            "by_status": {row["status"]: int(row["count"]) for row in job_rows},
            "blocked": int(blocked),
        },
        "open_reset_jobs": [ReprocessingJobRow.model_validate(row) for row in resets],
    }
