"""Is the pipeline still moving? What the scenario runner's `settle` (`Pipeline.settle`)
waits on: open valuation jobs, keys not yet at the business date, the fan-out's open
work, a fingerprint of every row written, and the barriers the stages have passed."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Table, Text, and_, cast, exists, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.domain import fanout
from epochflow.domain.model import KeyStatus
from epochflow.domain.scheduling import JobStatus
from epochflow.sinks.models import (
    daily_position_snapshots,
    pipeline_barriers,
    portfolio_valuation_jobs,
    position_state,
    reprocessing_jobs,
    reprocessing_triggers,
)
from epochflow.sinks.reads.query import OPEN_JOB_STATUSES, consistent

NOT_SETTLED_SHOWN = 20


async def pipeline_activity(engine: AsyncEngine, business_date: date) -> dict[str, Any]:
    """What is still moving, read in one consistent snapshot of the database:

    * `processing`, `runnable`, `blocked`: valuation jobs PROCESSING; PENDING with no
      failure_reason (runnable); PENDING with a failure_reason (waiting for data). Only
      jobs of the key's current epoch (or a newer one, or of a key without state yet):
      the scheduler drops a superseded epoch's jobs without a final row, so those are
      counted apart in `superseded_open`.
    * `reprocessing`: keys whose status is REPROCESSING.
    * `not_settled` (at most 20, by key) and `not_settled_count`: keys whose watermark is
      NULL or before `business_date`, that have no blocked job in their current epoch,
      whose first_open_date is on or before `business_date` (a key that never opened a
      position is never scheduled) and whose `waiting_for` is empty; each with
      portfolio_id, security_id, epoch, status, watermark_date.
    * `triggers_pending`, `reset_jobs_open`: the fan-out's triggers not yet queued and
      RESET_WATERMARKS jobs not ended.
    * `fingerprint`: an opaque string that changes whenever a row of position_state,
      daily_position_snapshots, portfolio_valuation_jobs or the fan-out's tables is
      inserted, updated or deleted (row count, max(updated_at) and the sum of the rows'
      xmin, per table).
    """
    s, j = position_state.c, portfolio_valuation_jobs.c
    async with consistent(engine) as conn:
        jobs = await _job_counts(conn)
        reprocessing = (
            await conn.execute(
                select(func.count()).select_from(position_state).where(s.status == KeyStatus.REPROCESSING)
            )
        ).scalar_one()
        blocked_here = exists().where(
            j.portfolio_id == s.portfolio_id,
            j.security_id == s.security_id,
            j.epoch == s.epoch,
            j.status == JobStatus.PENDING,
            j.failure_reason.is_not(None),
        )
        unsettled = and_(
            or_(s.watermark_date.is_(None), s.watermark_date < business_date),
            ~blocked_here,
            s.first_open_date <= business_date,
            s.waiting_for == "",
        )
        count = (await conn.execute(select(func.count()).select_from(position_state).where(unsettled))).scalar_one()
        shown = await conn.execute(
            select(s.portfolio_id, s.security_id, s.epoch, s.status, s.watermark_date)
            .where(unsettled)
            .order_by(s.portfolio_id, s.security_id)
            .limit(NOT_SETTLED_SHOWN)
        )
        not_settled = [dict(row) for row in shown.mappings()]
        fingerprint = await _fingerprint(conn)
        fanout_open = await _fanout_counts(conn)
    return {
        "business_date": business_date,
        **jobs,
        **fanout_open,
        "reprocessing": int(reprocessing),
        "not_settled": not_settled,
        "not_settled_count": int(count),
        "fingerprint": fingerprint,
    }


async def barriers_seen(engine: AsyncEngine, token: str) -> set[tuple[str, int]]:
    """The (stage, partition) pairs that have written barrier `token`."""
    b = pipeline_barriers.c
    query = select(b.stage, b.partition).where(b.token == token)
    async with engine.connect() as conn:
        return {(row.stage, row.partition) for row in await conn.execute(query)}


async def _fanout_counts(conn: AsyncConnection) -> dict[str, int]:
    """The fan-out's open work: triggers not yet queued, RESET_WATERMARKS jobs not ended."""
    triggers = (await conn.execute(
        select(func.count()).select_from(reprocessing_triggers).where(reprocessing_triggers.c.pending)
    )).scalar_one()
    jobs = (await conn.execute(
        select(func.count()).select_from(reprocessing_jobs).where(reprocessing_jobs.c.status.in_(fanout.OPEN))
    )).scalar_one()
    return {"triggers_pending": int(triggers), "reset_jobs_open": int(jobs)}


async def _job_counts(conn: AsyncConnection) -> dict[str, int]:
    s, j = position_state.c, portfolio_valuation_jobs.c
    live = or_(s.epoch.is_(None), j.epoch >= s.epoch)
    pending = j.status == JobStatus.PENDING
    query = (
        select(
            func.count().filter(and_(live, j.status == JobStatus.PROCESSING)).label("processing"),
            func.count().filter(and_(live, pending, j.failure_reason.is_(None))).label("runnable"),
            func.count().filter(and_(live, pending, j.failure_reason.is_not(None))).label("blocked"),
            func.count().filter(~live).label("superseded_open"),
        )
        .select_from(
            portfolio_valuation_jobs.join(
                position_state,
                and_(s.portfolio_id == j.portfolio_id, s.security_id == j.security_id),
                isouter=True,
            )
        )
        .where(j.status.in_(OPEN_JOB_STATUSES))
    )
    row = (await conn.execute(query)).mappings().one()
    return {name: int(value) for name, value in row.items()}


def _table_fingerprint(table: Table) -> Any:
    # xmin changes on every insert and update; with the row count, deletions show too
    xmin = cast(cast(literal_column(f"{table.name}.xmin"), Text), BigInteger)
    return (
        select(
            func.concat_ws(
                "/",
                func.count(),
                func.max(table.c.updated_at),
                func.coalesce(func.sum(xmin), 0),
            )
        )
        .select_from(table)
        .scalar_subquery()
    )


async def _fingerprint(conn: AsyncConnection) -> str:
    tables = (position_state, daily_position_snapshots, portfolio_valuation_jobs, reprocessing_triggers,
              reprocessing_jobs)
    parts = (await conn.execute(select(*(_table_fingerprint(t) for t in tables)))).one()
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()[:24]
