"""Queries over the sink's tables, for the scenario runner and the API.

Rows come back as the same pydantic models the sink writes, so a reader and the writer
share one vocabulary. Every filter is a bound parameter.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    RowMapping,
    Select,
    Table,
    Text,
    and_,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from epochflow.schemas.results import (
    PositionHistoryRow,
    PositionStateRow,
    ReprocessingJobRow,
    ReprocessingTriggerRow,
    SnapshotRow,
    TransactionRow,
    ValuationJobRow,
)
from epochflow.sinks.models import (
    daily_position_snapshots,
    pipeline_barriers,
    portfolio_valuation_jobs,
    reprocessing_jobs,
    reprocessing_triggers,
    position_history,
    position_state,
    transactions,
)


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
            h.epoch == (epoch if epoch is not None else _current_epoch(portfolio_id, security_id)),
        )
        .order_by(h.seq, h.transaction_id)
    )
    if date_from is not None:
        query = query.where(h.position_date >= date_from)
    if date_to is not None:
        query = query.where(h.position_date <= date_to)
    return [PositionHistoryRow.model_validate(row) for row in await _mappings(engine, query)]


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
            d.epoch == (epoch if epoch is not None else _current_epoch(portfolio_id, security_id)),
        )
        .order_by(d.date)
    )
    if date_from is not None:
        query = query.where(d.date >= date_from)
    if date_to is not None:
        query = query.where(d.date <= date_to)
    return [SnapshotRow.model_validate(row) for row in await _mappings(engine, query)]


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
    return [ValuationJobRow.model_validate(row) for row in await _mappings(engine, query)]


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
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


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
    return [ReprocessingJobRow.model_validate(row) for row in await _mappings(engine, query)]


async def fetch_reprocessing_triggers(engine: AsyncEngine, pending_only: bool = True) -> list[ReprocessingTriggerRow]:
    """The fan-out's triggers (by default only those not yet queued as jobs), oldest first."""
    t = reprocessing_triggers.c
    query = select(reprocessing_triggers).order_by(t.created_at, t.subject, t.partition)
    if pending_only:
        query = query.where(t.pending)
    return [ReprocessingTriggerRow.model_validate(row) for row in await _mappings(engine, query)]


async def fanout_progress(engine: AsyncEngine) -> dict[str, int]:
    """Keys reset against keys to reset, over the open jobs, and the jobs by status."""
    r = reprocessing_jobs.c
    open_ = r.status.in_(("PENDING", "PROCESSING"))
    query = select(
        func.coalesce(func.sum(r.keys_reset).filter(open_), 0).label("keys_reset"),
        func.coalesce(func.sum(r.keys_total).filter(open_), 0).label("keys_total"),
        *(func.count().filter(r.status == status).label(status.lower()) for status in ("PENDING", "PROCESSING", "COMPLETE", "FAILED")),
    )
    row = (await _mappings(engine, query))[0]
    return {name: int(value) for name, value in row.items()}


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


def _current_epoch(portfolio_id: str, security_id: str) -> Any:
    """The key's current epoch (NULL, so matching nothing, when it has no state)."""
    s = position_state.c
    return select(s.epoch).where(s.portfolio_id == portfolio_id, s.security_id == security_id).scalar_subquery()


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


async def snapshot(
    engine: AsyncEngine, portfolio_id: str, security_id: str, date: date, epoch: int
) -> dict[str, Any] | None:
    """The key's snapshot of `date` in `epoch`."""
    d = daily_position_snapshots.c
    return await _one(
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
    return await _one(
        engine,
        select(daily_position_snapshots).where(
            d.portfolio_id == portfolio_id,
            d.security_id == security_id,
            d.date == date,
            d.epoch == _current_epoch(portfolio_id, security_id),
        ),
    )


async def valuation_job(
    engine: AsyncEngine, portfolio_id: str, security_id: str, valuation_date: date, epoch: int
) -> dict[str, Any] | None:
    j = portfolio_valuation_jobs.c
    return await _one(
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
    async with engine.connect() as conn:
        earliest: date | None = (await conn.execute(query)).scalar_one()
        return earliest


async def _one(engine: AsyncEngine, query: Select[Any]) -> dict[str, Any] | None:
    rows = await _mappings(engine, query)
    return dict(rows[0]) if rows else None


# -- summaries (demo, reports) ------------------------------------------------------------


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
    return [dict(row) for row in await _mappings(engine, query)]


async def flagged_transactions(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Transactions still flagged (oversold, waiting for FX)."""
    t = transactions.c
    query = select(transactions).where(t.flags != "").order_by(t.portfolio_id, t.security_id, t.transaction_date)
    return [dict(row) for row in await _mappings(engine, query)]


# -- quiescence (the scenario runner's `settle`) ------------------------------------------

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
    * `fingerprint`: an opaque string that changes whenever a row of position_state,
      daily_position_snapshots or portfolio_valuation_jobs is inserted, updated or deleted
      (row count, max(updated_at) and the sum of the rows' xmin, per table).
    """
    s, j = position_state.c, portfolio_valuation_jobs.c
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            jobs = await _job_counts(conn)
            reprocessing = (
                await conn.execute(select(func.count()).select_from(position_state).where(s.status == "REPROCESSING"))
            ).scalar_one()
            blocked_here = exists().where(
                j.portfolio_id == s.portfolio_id,
                j.security_id == s.security_id,
                j.epoch == s.epoch,
                j.status == "PENDING",
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
            fanout = await _fanout_counts(conn)
    return {
        "business_date": business_date,
        **jobs,
        **fanout,
        "reprocessing": int(reprocessing),
        "not_settled": not_settled,
        "not_settled_count": int(count),
        "fingerprint": fingerprint,
    }


async def _fanout_counts(conn: AsyncConnection) -> dict[str, int]:
    """The fan-out's open work: triggers not yet queued, RESET_WATERMARKS jobs not ended."""
    triggers = (await conn.execute(
        select(func.count()).select_from(reprocessing_triggers).where(reprocessing_triggers.c.pending)
    )).scalar_one()
    jobs = (await conn.execute(
        select(func.count()).select_from(reprocessing_jobs).where(reprocessing_jobs.c.status.in_(("PENDING", "PROCESSING")))
    )).scalar_one()
    return {"triggers_pending": int(triggers), "reset_jobs_open": int(jobs)}


async def _job_counts(conn: AsyncConnection) -> dict[str, int]:
    s, j = position_state.c, portfolio_valuation_jobs.c
    live = or_(s.epoch.is_(None), j.epoch >= s.epoch)
    pending = j.status == "PENDING"
    query = (
        select(
            func.count().filter(and_(live, j.status == "PROCESSING")).label("processing"),
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
        .where(j.status.in_(("PENDING", "PROCESSING")))
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


async def count_snapshots(engine: AsyncEngine, portfolio_id: str, security_id: str, epoch: int) -> int:
    """Number of daily snapshots the key has in `epoch`."""
    from sqlalchemy import text

    query = text("SELECT count(*) FROM daily_position_snapshots WHERE portfolio_id = :p AND security_id = :s AND epoch = :e")
    async with engine.connect() as conn:
        return int((await conn.execute(query, {"p": portfolio_id, "s": security_id, "e": epoch})).scalar_one())


async def portfolio_positions(engine: AsyncEngine, portfolio_id: str) -> list[dict[str, Any]]:
    """A portfolio's positions in each key's current epoch only, with its latest snapshot of
    that epoch and `reprocessing_status`, so readers see when numbers are being rebuilt."""
    from sqlalchemy import text

    query = text(
        """
        SELECT s.portfolio_id, s.security_id, s.epoch, s.status, s.watermark_date, s.quantity,
               s.cost_basis, s.cost_basis_local, s.held_since_date,
               d.date AS valuation_date, d.market_price, d.market_value, d.market_value_local,
               d.unrealized_gain_loss, d.unrealized_gain_loss_local, d.valuation_status
        FROM position_state s
        LEFT JOIN LATERAL (
            SELECT * FROM daily_position_snapshots d
            WHERE d.portfolio_id = s.portfolio_id AND d.security_id = s.security_id AND d.epoch = s.epoch
            ORDER BY d.date DESC LIMIT 1
        ) d ON TRUE
        WHERE s.portfolio_id = :portfolio_id
        ORDER BY s.security_id
        """
    )
    async with engine.connect() as conn:
        rows = [dict(row) for row in (await conn.execute(query, {"portfolio_id": portfolio_id})).mappings()]
    from epochflow.domain.model import reprocessing_status

    for row in rows:
        row["reprocessing_status"] = reprocessing_status(row["status"])
    return rows


# -- the read API (epochflow.web.api) -----------------------------------------------------
#
# Each of these reads in one REPEATABLE READ transaction, so the figures of one answer all
# come from the same moment even while the sink writes.

VALUATION_JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "SKIPPED_NO_POSITION", "FAILED")
OPEN_RESET_JOB_STATUSES = ("PENDING", "PROCESSING")
SUPPORT_ROWS_SHOWN = 20


@asynccontextmanager
async def _consistent(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


def _same_key(table: Table) -> Any:
    """`table`'s row belongs to the position_state row of the outer query, in its epoch."""
    s = position_state.c
    return and_(
        table.c.portfolio_id == s.portfolio_id, table.c.security_id == s.security_id, table.c.epoch == s.epoch
    )


def _latest_snapshot_date(portfolio_id: str) -> Select[Any]:
    """The latest day any key of the portfolio has a snapshot of in its current epoch."""
    s, d = position_state.c, daily_position_snapshots.c
    return (
        select(func.max(d.date))
        .select_from(daily_position_snapshots.join(position_state, _same_key(daily_position_snapshots)))
        .where(d.portfolio_id == portfolio_id, s.portfolio_id == portfolio_id)
    )


async def portfolio_exists(engine: AsyncEngine, portfolio_id: str) -> bool:
    """Whether any key of the portfolio has a position_state row."""
    query = select(exists().where(position_state.c.portfolio_id == portfolio_id))
    async with engine.connect() as conn:
        return bool((await conn.execute(query)).scalar_one())


async def positions_as_of(
    engine: AsyncEngine, portfolio_id: str, as_of: date | None = None
) -> tuple[date | None, list[dict[str, Any]]]:
    """A portfolio's positions in each key's current epoch, valued on one day: the day
    (`as_of`, or when None the latest day any of its keys has a snapshot of, None when none
    has) and one row per key, by security.

    With `as_of`, quantity, cost and held_since_date are the key's at the end of that day
    (its last history row on or before it; a key with none is left out); without, they are
    the key's current position (position_state), as `portfolio_positions` returns them. The
    valuation columns come from the key's snapshot of that very day, so every row is valued
    on the same day (all None for a key without one, e.g. while it is being rebuilt). Each
    row carries `reprocessing_status`."""
    from epochflow.domain.model import reprocessing_status

    s, d, h = position_state.c, daily_position_snapshots.c, position_history.c
    async with _consistent(engine) as conn:
        day = as_of if as_of is not None else (await conn.execute(_latest_snapshot_date(portfolio_id))).scalar_one()
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
            .where(_same_key(daily_position_snapshots), d.date == day)
            .lateral("valued")
        )
        figures: Any = position_state
        source: Any = position_state
        if as_of is not None:
            figures = (
                select(h.quantity, h.cost_basis, h.cost_basis_local, h.held_since_date)
                .where(_same_key(position_history), h.position_date <= as_of)
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
    async with _consistent(engine) as conn:
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
                .where(r.security_id == security_id, r.status.in_(OPEN_RESET_JOB_STATUSES))
                .order_by(r.created_at, r.job_id)
            )
        ).mappings().all()
    earliest = [row["earliest"] for row in job_rows]
    latest = [row["latest"] for row in job_rows]
    blocked = sum(row["with_reason"] for row in job_rows if row["status"] == "PENDING")
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
    async with _consistent(engine) as conn:
        by_status = {
            row.status: int(row.count)
            for row in await conn.execute(
                select(s.status, func.count().label("count")).where(s.portfolio_id == portfolio_id).group_by(s.status)
            )
        }
        if not by_status:
            return None
        latest_snapshot = (await conn.execute(_latest_snapshot_date(portfolio_id))).scalar_one()
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

        reprocessing = await keys_where(s.status == "REPROCESSING")
        behind = await keys_where(
            and_(
                s.status != "REPROCESSING",
                or_(s.watermark_date.is_(None), s.watermark_date < business_date) if business_date else true(),
                s.first_open_date.is_not(None),
            )
        )
        waiting = await keys_where(s.waiting_for != "")

        in_current_epoch = portfolio_valuation_jobs.join(
            position_state,
            and_(s.portfolio_id == j.portfolio_id, s.security_id == j.security_id, s.epoch == j.epoch),
        )
        pending = j.status == "PENDING"
        blocked_job = and_(pending, j.failure_reason.is_not(None))
        counts = (
            await conn.execute(
                select(
                    func.count().filter(pending).label("pending"),
                    func.count().filter(blocked_job).label("blocked"),
                    func.count().filter(j.status == "PROCESSING").label("processing"),
                    func.count().filter(j.status == "FAILED").label("failed"),
                )
                .select_from(in_current_epoch)
                .where(j.portfolio_id == portfolio_id)
            )
        ).mappings().one()
        troubled = (
            await conn.execute(
                select(portfolio_valuation_jobs)
                .select_from(in_current_epoch)
                .where(j.portfolio_id == portfolio_id, or_(j.status == "FAILED", blocked_job))
                .order_by(j.security_id, j.valuation_date)
                .limit(shown)
            )
        ).mappings().all()
        securities = select(s.security_id).where(s.portfolio_id == portfolio_id)
        resets = (
            await conn.execute(
                select(reprocessing_jobs)
                .where(r.security_id.in_(securities), r.status.in_(OPEN_RESET_JOB_STATUSES))
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
