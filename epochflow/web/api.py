"""The read API: positions, a key's history, snapshots and lineage, valuation jobs, a
portfolio's support overview, the fan-out's reprocessing jobs and triggers, and the
OpenAPI document of every route this worker serves.

Views are thin: parse and check the request (`params`), call one read of
`epochflow.sinks.reads` (SQLAlchemy Core, bound parameters only), shape the rows into a
body model (`responses`). Every view is declared through the route registry, so it is
documented and guarded by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.app import settings
from epochflow.domain.model import reprocessing_status
from epochflow.sinks.reads.api import (
    VALUATION_JOB_STATUSES,
    count_valuation_jobs,
    fanout_progress,
    fetch_position_history,
    fetch_reprocessing_jobs,
    fetch_reprocessing_triggers,
    fetch_snapshots,
    fetch_valuation_jobs,
    key_lineage,
    portfolio_exists,
    positions_as_of,
)
from epochflow.sinks.reads.overview import portfolio_support
from epochflow.sinks.reads.query import position, read_at
from epochflow.sinks.reads.transactions import portfolio_transactions
from epochflow.sinks.versions import AsAtInFuture
from epochflow.web import params
from epochflow.web.access import Access
from epochflow.web.openapi import build_document
from epochflow.web.params import ApiError
from epochflow.web.responses import (
    FanoutProgress,
    HistoryEntry,
    JobCounts,
    KeySample,
    Lineage,
    PortfolioPositions,
    PortfolioTransactions,
    Position,
    PositionHistory,
    PositionSnapshots,
    ReprocessingJob,
    ReprocessingJobs,
    ReprocessingTrigger,
    ReprocessingTriggers,
    SnapshotEntry,
    Support,
    ValuationJob,
    ValuationJobs,
)
from epochflow.web.routes import ROUTES, ApiView, Operation, Param, route
from epochflow.web.weights import portfolio_weights

RESET_JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "FAILED")

_DATE = {"type": "string", "format": "date"}
_FROM = Param("from", "First day, inclusive (YYYY-MM-DD)", _DATE)
_TO = Param("to", "Last day, inclusive (YYYY-MM-DD); not before `from`", _DATE)
_LIMIT = Param("limit", "Page size, 1..1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})
_OFFSET = Param(
    "offset",
    f"Rows to skip, 0..{params.INT32_MAX} (default 0)",
    {"type": "integer", "minimum": 0, "maximum": params.INT32_MAX},
)
AS_AT = Param(
    "as_at",
    "Answer as the same read answered at this time (ISO 8601 with offset, e.g. 2026-12-03T21:00:00Z); every "
    "answer gives its own time in the `Epochflow-As-At` header",
    {"type": "string", "format": "date-time"},
)
AS_AT_HEADER = "Epochflow-As-At"
_UNKNOWN_KEY = {404: "The key has no position_state row"}
_UNKNOWN_PORTFOLIO = {404: "No key of the portfolio has a position_state row"}

_engine: AsyncEngine | None = None


def database() -> AsyncEngine:
    """The worker's engine, made on first use (a worker nobody reads from never connects)."""
    global _engine
    if not settings.database_url:
        raise ApiError(503, "no database configured: set DATABASE_URL")
    if _engine is None:
        from epochflow.sinks.schema import create_engine

        _engine = create_engine(settings.database_url, pool_size=2)
    return _engine


def at_system_time(get: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A read answered at one system time (`sinks.reads.query.read_at`): now, or the
    request's `as_at`, exactly as it was answered then; the time goes in the answer's
    `Epochflow-As-At` header, so any answer can be asked for again."""

    @functools.wraps(get)
    async def read(self, request, *args: Any, **kwargs: Any) -> Any:
        as_at = params.optional_timestamp(request.query, "as_at")
        keep = settings.versions_retention_days
        if as_at is not None and keep and as_at < datetime.now(UTC) - timedelta(days=keep):
            raise ApiError(400, f"as_at {as_at.isoformat()} is before the versions kept "
                                f"(EPOCHFLOW_VERSIONS_RETENTION_DAYS={keep})")
        try:
            async with read_at(database, as_at) as reading:
                response = await get(self, request, *args, **kwargs)
        except AsAtInFuture as error:
            raise ApiError(400, str(error)) from None
        if reading.at is not None:
            response.headers[AS_AT_HEADER] = reading.at.isoformat()
        return response

    return read


def key_ids(portfolio_id: str, security_id: str | None = None) -> tuple[str, str | None]:
    return (
        params.identifier("portfolio_id", portfolio_id),
        None if security_id is None else params.identifier("security_id", security_id),
    )


async def current_state(portfolio_id: str, security_id: str) -> dict[str, Any]:
    """The key's position_state row, or 404."""
    state = await position(database(), portfolio_id, security_id)
    if state is None:
        raise ApiError(404, f"no position {portfolio_id!r} / {security_id!r}")
    return state


@route(
    "/portfolios/{portfolio_id}/positions/",
    tag="positions",
    get=Operation(
        "A portfolio's positions, valued on one day, with weights",
        Access.READ,
        PortfolioPositions,
        description=(
            "Each key's current epoch only. Without `as_of`: the current quantity and cost, valued on the "
            "portfolio's latest snapshot date. With `as_of`: quantity and cost at the end of that day, valued "
            "on that day (keys without history by then are left out). `reprocessing_status` is IN_PROGRESS "
            "while a key is being rebuilt; `weight` is market_value over the total market value of the "
            "positions valued that day (null when a position has no market value or the total is zero)."
        ),
        query=(Param("as_of", "The valuation day (YYYY-MM-DD); default: the latest snapshot date", _DATE), AS_AT),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class PortfolioPositionsView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        as_of = params.optional_date(request.query, "as_of")
        engine = database()
        if not await portfolio_exists(engine, portfolio_id):
            raise ApiError(404, f"portfolio {portfolio_id!r} has no positions")
        day, rows = await positions_as_of(engine, portfolio_id, as_of)
        total, weights = portfolio_weights([row["market_value"] for row in rows])
        body = PortfolioPositions(
            portfolio_id=portfolio_id,
            as_of=day,
            total_market_value=total,
            positions=[Position.model_validate({**row, "weight": w}) for row, w in zip(rows, weights)],
        )
        return self.json(body.dump())


def _key_rows(state: dict[str, Any], date_from, date_to) -> dict[str, Any]:
    return {
        "portfolio_id": state["portfolio_id"],
        "security_id": state["security_id"],
        "epoch": state["epoch"],
        "status": state["status"],
        "reprocessing_status": reprocessing_status(state["status"]),
        "watermark_date": state["watermark_date"],
        "from": date_from,
        "to": date_to,
    }


@route(
    "/positions/{portfolio_id}/{security_id}/history/",
    tag="positions",
    get=Operation(
        "A key's position history in its current epoch",
        Access.READ,
        PositionHistory,
        description="One row per transaction (quantity and cost after it), in processing order.",
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_KEY,
        reads_database=True,
    ),
)
class PositionHistoryView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str, security_id: str):
        portfolio_id, security_id = key_ids(portfolio_id, security_id)
        date_from, date_to = params.date_range(request.query)
        state = await current_state(portfolio_id, security_id)
        rows = await fetch_position_history(
            database(), portfolio_id, security_id, state["epoch"], date_from, date_to
        )
        body = PositionHistory.model_validate(
            {**_key_rows(state, date_from, date_to), "history": [HistoryEntry.model_validate(r.model_dump()) for r in rows]}
        )
        return self.json(body.dump())


@route(
    "/positions/{portfolio_id}/{security_id}/snapshots/",
    tag="positions",
    get=Operation(
        "A key's daily snapshots in its current epoch",
        Access.READ,
        PositionSnapshots,
        description="End-of-day quantity, cost and valuation, one per day, by date.",
        query=(_FROM, _TO, AS_AT),
        errors=_UNKNOWN_KEY,
        reads_database=True,
    ),
)
class PositionSnapshotsView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str, security_id: str):
        portfolio_id, security_id = key_ids(portfolio_id, security_id)
        date_from, date_to = params.date_range(request.query)
        state = await current_state(portfolio_id, security_id)
        rows = await fetch_snapshots(database(), portfolio_id, security_id, state["epoch"], date_from, date_to)
        body = PositionSnapshots.model_validate(
            {**_key_rows(state, date_from, date_to), "snapshots": [SnapshotEntry.model_validate(r.model_dump()) for r in rows]}
        )
        return self.json(body.dump())


@route(
    "/positions/{portfolio_id}/{security_id}/lineage/",
    tag="positions",
    get=Operation(
        "Where a key's numbers come from and how far they are",
        Access.READ,
        Lineage,
        description=(
            "The key's epoch, watermark, status and reset generation; the epochs it has history in; the "
            "current epoch's history and snapshot date ranges; its valuation jobs' date range and counts by "
            "status; the open RESET_WATERMARKS jobs of its security."
        ),
        errors=_UNKNOWN_KEY,
        reads_database=True,
    ),
)
class LineageView(ApiView):
    async def get(self, request, portfolio_id: str, security_id: str):
        portfolio_id, security_id = key_ids(portfolio_id, security_id)
        found = await key_lineage(database(), portfolio_id, security_id)
        if found is None:
            raise ApiError(404, f"no position {portfolio_id!r} / {security_id!r}")
        state, jobs = found["state"], found["jobs"]
        body = Lineage.model_validate(
            {
                **state,
                "reprocessing_status": reprocessing_status(state["status"]),
                "epochs_in_history": found["epochs_in_history"],
                "history_rows": found["history"]["rows"],
                "first_history_date": found["history"]["first_date"],
                "latest_history_date": found["history"]["latest_date"],
                "snapshot_count": found["snapshots"]["count"],
                "first_snapshot_date": found["snapshots"]["first_date"],
                "latest_snapshot_date": found["snapshots"]["latest_date"],
                "earliest_job_date": jobs["earliest_date"],
                "latest_job_date": jobs["latest_date"],
                "jobs_by_status": {status: jobs["by_status"].get(status, 0) for status in VALUATION_JOB_STATUSES},
                "jobs_blocked": jobs["blocked"],
                "open_reset_jobs": [ReprocessingJob.model_validate(j.model_dump()) for j in found["open_reset_jobs"]],
            }
        )
        return self.json(body.dump())


@route(
    "/valuation-jobs/",
    tag="jobs",
    get=Operation(
        "Valuation jobs, filtered and paged",
        Access.READ,
        ValuationJobs,
        description="Jobs of every epoch unless `epoch` is given, by portfolio, security, date, epoch.",
        query=(
            Param("portfolio_id", "Only this portfolio's jobs"),
            Param("security_id", "Only this security's jobs"),
            Param("status", "Only jobs in this status", {"enum": list(VALUATION_JOB_STATUSES)}),
            Param(
                "epoch",
                f"Only jobs of this epoch (0..{params.INT32_MAX})",
                {"type": "integer", "minimum": 0, "maximum": params.INT32_MAX},
            ),
            _LIMIT,
            _OFFSET,
        ),
        reads_database=True,
    ),
)
class ValuationJobsView(ApiView):
    async def get(self, request):
        query = request.query
        portfolio_id = params.optional_identifier(query, "portfolio_id")
        security_id = params.optional_identifier(query, "security_id")
        status = params.choice(query, "status", VALUATION_JOB_STATUSES)
        epoch = params.optional_integer(query, "epoch")
        limit, offset = params.paging(query)
        engine = database()
        jobs = await fetch_valuation_jobs(engine, portfolio_id, security_id, status, limit, offset, epoch)
        total = await count_valuation_jobs(engine, portfolio_id, security_id, status, epoch)
        body = ValuationJobs(
            total=total, limit=limit, offset=offset, jobs=[ValuationJob.model_validate(j.model_dump()) for j in jobs]
        )
        return self.json(body.dump())


@route(
    "/portfolios/{portfolio_id}/support/",
    tag="support",
    get=Operation(
        "What support looks at first for a portfolio",
        Access.READ,
        Support,
        description=(
            "Business date, keys by status, keys reprocessing / behind / waiting for data, valuation jobs "
            "pending, blocked, processing and failed, latest snapshot and transaction dates, open "
            "RESET_WATERMARKS jobs of its securities; read at one moment."
        ),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class SupportView(ApiView):
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        found = await portfolio_support(database(), portfolio_id)
        if found is None:
            raise ApiError(404, f"portfolio {portfolio_id!r} has no positions")
        latest_transaction = found["latest_transaction_date"]

        def sample(pair: tuple[int, list[dict[str, Any]]]) -> KeySample:
            return KeySample.model_validate({"count": pair[0], "keys": pair[1]})

        body = Support(
            portfolio_id=portfolio_id,
            business_date=found["business_date"],
            keys_total=sum(found["keys_by_status"].values()),
            keys_by_status=found["keys_by_status"],
            keys_reprocessing=sample(found["keys_reprocessing"]),
            keys_behind=sample(found["keys_behind"]),
            keys_waiting_for_data=sample(found["keys_waiting_for_data"]),
            valuation_jobs=JobCounts.model_validate(found["valuation_jobs"]),
            troubled_jobs=[ValuationJob.model_validate(j.model_dump()) for j in found["troubled_jobs"]],
            latest_snapshot_date=found["latest_snapshot_date"],
            latest_transaction_date=None if latest_transaction is None else latest_transaction.date(),
            open_reset_jobs=[ReprocessingJob.model_validate(j.model_dump()) for j in found["open_reset_jobs"]],
        )
        return self.json(body.dump())


@route(
    "/reprocessing/jobs/",
    tag="reprocessing",
    get=Operation(
        "The fan-out's RESET_WATERMARKS jobs, newest first, with progress",
        Access.READ,
        ReprocessingJobs,
        query=(
            Param("status", "Only jobs in this status", {"enum": list(RESET_JOB_STATUSES)}),
            Param("security_id", "Only jobs of this security"),
            Param("subject", "Only jobs of this subject: price|SECURITY or fx|FROM|TO"),
            _LIMIT,
            _OFFSET,
        ),
        reads_database=True,
    ),
)
class ReprocessingJobsView(ApiView):
    async def get(self, request):
        query = request.query
        status = params.choice(query, "status", RESET_JOB_STATUSES)
        security_id = params.optional_identifier(query, "security_id")
        subject = params.optional_subject(query, "subject")
        limit, offset = params.paging(query)
        engine = database()
        jobs = await fetch_reprocessing_jobs(
            engine, security_id=security_id, status=status, subject=subject, limit=limit, offset=offset
        )
        body = ReprocessingJobs(
            progress=FanoutProgress.model_validate(await fanout_progress(engine)),
            limit=limit,
            offset=offset,
            jobs=[ReprocessingJob.model_validate(j.model_dump()) for j in jobs],
        )
        return self.json(body.dump())


@route(
    "/reprocessing/triggers/",
    tag="reprocessing",
    get=Operation(
        "The fan-out's pending triggers (every trigger with all=true)",
        Access.READ,
        ReprocessingTriggers,
        query=(Param("all", "true: also the triggers already queued as jobs", {"type": "boolean"}),),
        reads_database=True,
    ),
)
class ReprocessingTriggersView(ApiView):
    async def get(self, request):
        every = params.boolean(request.query, "all", default=False)
        triggers = await fetch_reprocessing_triggers(database(), pending_only=not every)
        body = ReprocessingTriggers(triggers=[ReprocessingTrigger.model_validate(t.model_dump()) for t in triggers])
        return self.json(body.dump())


@route(
    "/openapi.json",
    tag="meta",
    get=Operation(
        "This document: every route this worker serves (OpenAPI 3.1)",
        Access.READ,
        None,
        content_type="application/json",
    ),
)
class OpenApiView(ApiView):
    async def get(self, request):
        return self.json(build_document(ROUTES, settings, unregistered_views(self.web.views)))


def unregistered_views(views: dict[str, Any]) -> dict[str, tuple[list[str], str]]:
    """The web server's views the registry does not know: path -> (methods, summary)."""
    found = {}
    for path, view in views.items():
        if path not in ROUTES:
            methods = [m.lower() for m in view.get_methods() if m not in ("HEAD", "OPTIONS")]
            summary = ((type(view).__doc__ or "").strip().splitlines() or [""])[0]
            found[path] = (methods or ["get"], summary)
    return found


@route(
    "/portfolios/{portfolio_id}/transactions/",
    tag="positions",
    get=Operation(
        "A portfolio's transactions as last costed, filtered and paged",
        Access.READ,
        PortfolioTransactions,
        description=(
            "Each transaction's latest version, by timestamp then id: its cost delta (net_cost in base, "
            "net_cost_local), realized P&L (base and local), the FX rate used, `oversold` and `fx_missing`, and "
            "the epoch it was last costed in (a transaction before the day an epoch bump carried over keeps its "
            "earlier epoch). `from`/`to` bound the transaction date (UTC days); `reprocessing_status` is "
            "IN_PROGRESS while a key of the portfolio (on a row: the transaction's key) is being rebuilt."
        ),
        query=(_FROM, _TO, Param("security_id", "Only this security's transactions"), _LIMIT, _OFFSET, AS_AT),
        errors=_UNKNOWN_PORTFOLIO,
        reads_database=True,
    ),
)
class PortfolioTransactionsView(ApiView):
    @at_system_time
    async def get(self, request, portfolio_id: str):
        portfolio_id, _ = key_ids(portfolio_id)
        query = request.query
        date_from, date_to = params.date_range(query)
        security_id = params.optional_identifier(query, "security_id")
        limit, offset = params.paging(query)
        found = await portfolio_transactions(database(), portfolio_id, date_from, date_to, security_id, limit, offset)
        if found is None:
            raise ApiError(404, f"portfolio {portfolio_id!r} has no positions")
        return self.json(PortfolioTransactions.model_validate(found).dump())
