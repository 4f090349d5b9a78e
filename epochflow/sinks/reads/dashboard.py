"""What the operations dashboard reads from PostgreSQL, in one consistent snapshot.

The api worker samples this every few seconds, so every query is either small by nature
(open jobs, pending triggers), served by an index on `status`, grouped down to a handful
of rows in the database (keys by status and watermark date), or read from PostgreSQL's
own statistics (rows written per table). Terminal valuation-job counts are exact while the
job table is small and estimated from the statistics once it is large: counting millions
of COMPLETE rows every two seconds would cost more than the dashboard is worth.

SQLAlchemy Core; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BigInteger, Text, column, func, select, table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.domain import fanout
from epochflow.domain.scheduling import JobStatus
from epochflow.sinks.models import (
    daily_position_snapshots,
    portfolio_valuation_jobs,
    position_history,
    position_state,
    reprocessing_jobs,
    reprocessing_triggers,
    transactions,
)
from epochflow.sinks.reads.query import consistent

# The sink's tables whose writes make up "throughput" (pipeline_barriers is bookkeeping).
WRITTEN_TABLES: tuple[str, ...] = tuple(
    t.name
    for t in (
        transactions,
        position_history,
        position_state,
        daily_position_snapshots,
        portfolio_valuation_jobs,
        reprocessing_jobs,
        reprocessing_triggers,
    )
)
# valuation-job statuses counted exactly through the status index, whatever the table size
INDEXED_JOB_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.FAILED)
EXACT_COUNT_MAX_ROWS = 200_000
OPEN_RESET_JOBS_SHOWN = 20
OPENED_EPOCHS_SHOWN = 10
FINISHED_RESET_JOBS_SHOWN = 5
STATEMENT_TIMEOUT_MS = 5_000

_pg_stat_user_tables = table(
    "pg_stat_user_tables",
    column("schemaname", Text),
    column("relname", Text),
    column("n_tup_ins", BigInteger),
    column("n_tup_upd", BigInteger),
    column("n_live_tup", BigInteger),
)


@dataclass(frozen=True, slots=True)
class KeyGroup:
    """Keys sharing a status and a watermark date (None: never valued)."""

    status: str
    watermark_date: date | None
    keys: int
    waiting_for_data: int  # of them, keys whose base-currency figures wait for FX or a portfolio


@dataclass(frozen=True, slots=True)
class ValuationJobGroup:
    status: str
    blocked: bool  # PENDING with a failure_reason: waiting for a price or an FX rate
    jobs: int
    latest_date: date | None


@dataclass(frozen=True, slots=True)
class ResetJob:
    """A RESET_WATERMARKS job as the fan-out panel shows it."""

    job_id: str
    subject: str
    partition: int
    status: str
    keys_reset: int
    keys_total: int
    attempt_count: int
    earliest_impacted_date: date
    created_at: datetime
    finished_at: datetime | None
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class OpenedEpoch:
    """A key whose current epoch a transaction opened (its back-dated or amended trade)."""

    portfolio_id: str
    security_id: str
    epoch: int
    epoch_trigger: str
    epoch_rebuilt_from: date | None
    status: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ResetJobCount:
    """RESET_WATERMARKS jobs of one status, with their progress summed."""

    jobs: int
    keys_reset: int
    keys_total: int


@dataclass(frozen=True, slots=True)
class TableStats:
    """PostgreSQL's cumulative statistics of one table (approximate, updated within ~1 s
    of a writer's commit): rows inserted + updated since the statistics were reset, and
    the estimated live rows."""

    rows_written: int
    live_rows: int


@dataclass(frozen=True, slots=True)
class DatabaseReading:
    key_groups: tuple[KeyGroup, ...]
    valuation_jobs: tuple[ValuationJobGroup, ...]
    valuation_counts_exact: bool  # False: terminal statuses are left out (the table is large)
    reset_jobs: Mapping[str, ResetJobCount]  # RESET_WATERMARKS jobs by status
    triggers_pending: int
    open_reset_jobs: tuple[ResetJob, ...]
    finished_reset_jobs: tuple[ResetJob, ...]
    tables: Mapping[str, TableStats]
    opened_epochs: tuple[OpenedEpoch, ...] = ()  # keys in an epoch a transaction opened, latest updated first


async def read_dashboard(engine: AsyncEngine, exact_count_max_rows: int = EXACT_COUNT_MAX_ROWS) -> DatabaseReading:
    """Everything the dashboard shows from PostgreSQL, read in one REPEATABLE READ
    transaction (so the panels agree with each other) with a statement timeout. Terminal
    valuation-job statuses are counted only while the job table has at most
    `exact_count_max_rows` rows (PostgreSQL's estimate)."""
    async with consistent(engine) as conn:
        await conn.execute(select(func.set_config("statement_timeout", str(STATEMENT_TIMEOUT_MS), True)))
        tables = await _table_stats(conn)
        job_rows = tables.get(portfolio_valuation_jobs.name, TableStats(0, 0)).live_rows
        exact = job_rows <= exact_count_max_rows
        return DatabaseReading(
            key_groups=await _key_groups(conn),
            valuation_jobs=await _valuation_jobs(conn, exact),
            valuation_counts_exact=exact,
            reset_jobs=await _reset_jobs_by_status(conn),
            triggers_pending=await _triggers_pending(conn),
            open_reset_jobs=await _reset_jobs(conn, open_=True, limit=OPEN_RESET_JOBS_SHOWN),
            finished_reset_jobs=await _reset_jobs(conn, open_=False, limit=FINISHED_RESET_JOBS_SHOWN),
            tables=tables,
            opened_epochs=await _opened_epochs(conn, OPENED_EPOCHS_SHOWN),
        )


async def _table_stats(conn: AsyncConnection) -> dict[str, TableStats]:
    st = _pg_stat_user_tables.c
    query = select(st.relname, st.n_tup_ins, st.n_tup_upd, st.n_live_tup).where(
        st.schemaname == func.current_schema(), st.relname.in_(WRITTEN_TABLES)
    )
    return {
        row.relname: TableStats(rows_written=int(row.n_tup_ins or 0) + int(row.n_tup_upd or 0),
                                live_rows=int(row.n_live_tup or 0))
        for row in await conn.execute(query)
    }


async def _key_groups(conn: AsyncConnection) -> tuple[KeyGroup, ...]:
    # grouped in the database: as many rows as distinct (status, watermark) pairs, not keys
    s = position_state.c
    query = (
        select(
            s.status,
            s.watermark_date,
            func.count().label("keys"),
            func.count().filter(s.waiting_for != "").label("waiting"),
        )
        .group_by(s.status, s.watermark_date)
        .order_by(s.status, s.watermark_date)
    )
    return tuple(
        KeyGroup(row.status, row.watermark_date, int(row.keys), int(row.waiting)) for row in await conn.execute(query)
    )


async def _valuation_jobs(conn: AsyncConnection, exact: bool) -> tuple[ValuationJobGroup, ...]:
    j = portfolio_valuation_jobs.c
    # no bound parameter in a grouped expression: PostgreSQL would not match the select
    # list's copy of it with the GROUP BY's (they get different placeholders)
    has_reason = j.failure_reason.is_not(None)
    query = select(
        j.status,
        has_reason.label("has_reason"),
        func.count().label("jobs"),
        func.max(j.valuation_date).label("latest_date"),
    ).group_by(j.status, has_reason)
    if not exact:
        query = query.where(j.status.in_(INDEXED_JOB_STATUSES))
    return tuple(
        ValuationJobGroup(row.status, row.status == JobStatus.PENDING and bool(row.has_reason), int(row.jobs), row.latest_date)
        for row in await conn.execute(query.order_by(j.status))
    )


async def _reset_jobs_by_status(conn: AsyncConnection) -> dict[str, ResetJobCount]:
    r = reprocessing_jobs.c
    query = select(
        r.status,
        func.count().label("jobs"),
        func.coalesce(func.sum(r.keys_reset), 0).label("keys_reset"),
        func.coalesce(func.sum(r.keys_total), 0).label("keys_total"),
    ).group_by(r.status)
    return {
        row.status: ResetJobCount(int(row.jobs), int(row.keys_reset), int(row.keys_total))
        for row in await conn.execute(query)
    }


async def _triggers_pending(conn: AsyncConnection) -> int:
    t = reprocessing_triggers.c
    query = select(func.count()).select_from(reprocessing_triggers).where(t.pending.is_(True))
    return int((await conn.execute(query)).scalar_one())


async def _reset_jobs(conn: AsyncConnection, *, open_: bool, limit: int) -> tuple[ResetJob, ...]:
    r = reprocessing_jobs.c
    columns = (r.job_id, r.subject, r.partition, r.status, r.keys_reset, r.keys_total, r.attempt_count,
               r.earliest_impacted_date, r.created_at, r.finished_at, r.failure_reason)
    query = select(*columns)
    if open_:  # oldest first: the order the fan-out works through them
        query = query.where(r.status.in_(fanout.OPEN)).order_by(r.created_at, r.job_id)
    else:  # most recently finished first
        query = query.where(r.status.not_in(fanout.OPEN)).order_by(
            func.coalesce(r.finished_at, r.updated_at).desc(), r.job_id
        )
    rows = await conn.execute(query.limit(limit))
    return tuple(ResetJob(**dict(row._mapping)) for row in rows)


async def _opened_epochs(conn: AsyncConnection, limit: int) -> tuple[OpenedEpoch, ...]:
    s = position_state.c
    query = (
        select(s.portfolio_id, s.security_id, s.epoch, s.epoch_trigger, s.epoch_rebuilt_from, s.status, s.updated_at)
        .where(s.epoch_trigger.is_not(None))
        .order_by(s.updated_at.desc(), s.portfolio_id, s.security_id)
        .limit(limit)
    )
    return tuple(OpenedEpoch(**dict(row._mapping)) for row in await conn.execute(query))

