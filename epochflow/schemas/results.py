"""Messages on the results topic: what the sink role writes to PostgreSQL.

Every row carries the key's epoch; the sink never lets an older epoch overwrite a newer
one, and `version` (monotonic per key) orders updates of the same epoch.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class TransactionRow(_Row):
    kind: Literal["transaction"] = "transaction"
    transaction_id: str
    portfolio_id: str
    security_id: str
    epoch: int
    transaction_type: str
    transaction_date: datetime
    quantity: Decimal
    price: Decimal
    gross_amount: Decimal
    trade_fee: Decimal
    trade_currency: str
    net_cost: Decimal | None
    net_cost_local: Decimal
    realized_gain_loss: Decimal | None
    realized_gain_loss_local: Decimal | None
    transaction_fx_rate: Decimal | None
    flags: str = ""
    # when the positions role emitted this version: the sink stores it, so a replay of the
    # results topic reproduces the same rows, `updated_at` included (None: a row sent
    # before the field existed, stamped by the sink when it writes it)
    updated_at: datetime | None = None
    # the key's state version of the step that sent it: the sink never lets a row of an
    # earlier step replace it (a replay of the results topic never goes back; None: sent
    # before the field existed)
    version: int | None = None


class PositionHistoryRow(_Row):
    kind: Literal["position_history"] = "position_history"
    portfolio_id: str
    security_id: str
    epoch: int
    transaction_id: str
    position_date: date
    seq: int  # order of the row within the key's history (timestamp, then transaction id)
    quantity: Decimal
    cost_basis: Decimal | None
    cost_basis_local: Decimal
    held_since_date: date | None
    version: int | None = None  # the key's state version of the step that sent it (as TransactionRow)


class PositionStateRow(_Row):
    kind: Literal["position_state"] = "position_state"
    portfolio_id: str
    security_id: str
    epoch: int
    version: int
    generation: int = 0
    status: str
    watermark_date: date | None
    quantity: Decimal
    cost_basis: Decimal | None
    cost_basis_local: Decimal
    held_since_date: date | None
    first_open_date: date | None
    last_transaction_date: date | None
    waiting_for: str = ""  # e.g. "fx EUR/USD", "portfolio P1"; empty when nothing is missing
    updated_at: datetime
    # what opened the current epoch: the transaction and the first day it rebuilt
    epoch_trigger: str | None = None
    epoch_rebuilt_from: date | None = None
    # for the scheduler and the valuation cache (not stored): history length, first changed day
    txn_count: int = 0
    changed_from: date | None = None
    ref_floor: int = -1  # reference offset valuation must have read (a price/FX correction's)


class HistoryCarryOver(_Row):
    """A new epoch keeps the old epoch's history and daily snapshots before `before_date`
    unchanged: the sink copies those rows server-side instead of anyone re-sending them."""

    kind: Literal["history_carry"] = "history_carry"
    portfolio_id: str
    security_id: str
    from_epoch: int
    to_epoch: int
    before_date: date


class SnapshotRow(_Row):
    """A daily position snapshot of one epoch (from the valuation role)."""

    kind: Literal["snapshot"] = "snapshot"
    portfolio_id: str
    security_id: str
    date: date
    epoch: int
    quantity: Decimal
    cost_basis: Decimal | None
    cost_basis_local: Decimal
    market_price: Decimal | None
    market_value: Decimal | None
    market_value_local: Decimal | None
    unrealized_gain_loss: Decimal | None
    unrealized_gain_loss_local: Decimal | None
    fx_rate: Decimal | None
    valuation_status: str
    price_date: date | None = None
    # the version of the job it answers: the sink never lets an earlier answer replace it
    # (None: sent before the field existed, or carried over from an older epoch)
    job_version: int | None = None


class ValuationJobRow(_Row):
    """A valuation job's lifecycle as the scheduler (its only writer) sees it."""

    kind: Literal["valuation_job"] = "valuation_job"
    portfolio_id: str
    security_id: str
    valuation_date: date
    epoch: int
    status: str  # PENDING, PROCESSING, COMPLETE, SKIPPED_NO_POSITION, FAILED
    attempt_count: int
    failure_reason: str | None
    version: int  # monotonic per job: the sink keeps the highest
    updated_at: datetime


class ReprocessingTriggerRow(_Row):
    """An instrument-level (or FX pair) trigger of the fan-out: pending until its cycle
    queues it as a RESET_WATERMARKS job."""

    kind: Literal["reprocessing_trigger"] = "reprocessing_trigger"
    subject: str  # price|SECURITY or fx|FROM|TO
    partition: int
    security_id: str | None
    from_currency: str | None
    to_currency: str | None
    earliest_impacted_date: date | None  # None once queued
    corrections: int
    pending: bool
    created_at: datetime | None
    version: int
    updated_at: datetime


class ReprocessingJobRow(_Row):
    """A durable RESET_WATERMARKS job of the fan-out (its only writer)."""

    kind: Literal["reprocessing_job"] = "reprocessing_job"
    job_id: str
    job_type: str
    subject: str
    partition: int
    security_id: str | None
    from_currency: str | None
    to_currency: str | None
    earliest_impacted_date: date
    status: str  # PENDING, PROCESSING, COMPLETE, FAILED
    attempt_count: int
    last_attempted_at: datetime | None
    failure_reason: str | None
    keys_total: int
    keys_reset: int
    created_at: datetime
    finished_at: datetime | None
    version: int
    updated_at: datetime


class JobOutcome(_Row):
    """The valuation role's answer to a job, for the scheduler (the sink ignores it)."""

    kind: Literal["job_outcome"] = "job_outcome"
    portfolio_id: str
    security_id: str
    valuation_date: date
    epoch: int
    outcome: str  # COMPLETE, SKIPPED_NO_POSITION, BLOCKED, NOT_READY, STALE
    job_version: int = 0  # the dispatch it answers
    reason: str | None = None
    waiting_on: str | None = None  # "price|SEC" or "fx|EUR|USD": data whose arrival retries the job


class CashflowRow(_Row):
    """A transaction's cash flow (TIMESERIES.md), fenced by the transaction row it came from."""

    kind: Literal["cashflow"] = "cashflow"
    transaction_id: str
    portfolio_id: str
    security_id: str
    transaction_type: str
    amount: Decimal
    currency: str
    classification: str
    timing: str
    calculation_type: str
    is_position_flow: bool
    is_portfolio_flow: bool
    cashflow_date: date
    epoch: int
    version: int


class PositionTimeseriesRow(_Row):
    """A key's time-series row of one day in its current epoch; `present` False: the key
    has no snapshot that day (any more)."""

    kind: Literal["position_timeseries"] = "position_timeseries"
    portfolio_id: str
    security_id: str
    date: date
    epoch: int
    version: int  # the offset of the portfolio-changes message that changed it
    present: bool
    bod_market_value: Decimal
    eod_market_value: Decimal
    quantity: Decimal
    cost: Decimal
    bod_cashflow_position: Decimal
    eod_cashflow_position: Decimal
    bod_cashflow_portfolio: Decimal
    eod_cashflow_portfolio: Decimal


class PortfolioTimeseriesRow(_Row):
    """A portfolio's time-series row of one day, in its base currency."""

    kind: Literal["portfolio_timeseries"] = "portfolio_timeseries"
    portfolio_id: str
    date: date
    version: int
    present: bool
    bod_market_value: Decimal
    eod_market_value: Decimal
    bod_cashflow: Decimal
    eod_cashflow: Decimal
    fees: Decimal
    daily_return: Decimal | None
    valuation_status: str
    keys_unvalued: int


class Barrier(_Row):
    """A marker that travelled through a role in partition order: once the sink has seen a
    barrier from every partition, everything sent before it has reached PostgreSQL."""

    kind: Literal["barrier"] = "barrier"
    token: str
    stage: str
    partition: int


ResultRow = Annotated[
    TransactionRow | PositionHistoryRow | PositionStateRow | HistoryCarryOver | SnapshotRow | ValuationJobRow | ReprocessingTriggerRow | ReprocessingJobRow | JobOutcome | Barrier
    | CashflowRow | PositionTimeseriesRow | PortfolioTimeseriesRow,
    Field(discriminator="kind"),
]
RESULT_ROW = TypeAdapter(ResultRow)


def rows_for(outputs, portfolio_id: str, security_id: str, now: datetime, version: int) -> list:
    """Result rows for the positions core's outputs (HistoryWritten, EpochOpened, StateChanged)
    of a step that left the key's state at `version`."""
    from epochflow.domain.positions import EpochOpened, HistoryWritten, StateChanged

    rows: list = []
    for out in outputs:
        if isinstance(out, EpochOpened):
            rows.append(
                HistoryCarryOver(portfolio_id=portfolio_id, security_id=security_id, from_epoch=out.from_epoch,
                                 to_epoch=out.to_epoch, before_date=out.carry_before)
            )
        elif isinstance(out, HistoryWritten):
            for seq, e in out.entries:
                t = e.txn
                rows.append(
                    PositionHistoryRow(
                        portfolio_id=t.portfolio_id, security_id=t.security_id, epoch=out.epoch,
                        transaction_id=t.transaction_id, position_date=t.date, seq=seq,
                        quantity=e.quantity, cost_basis=e.cost_base, cost_basis_local=e.cost_local,
                        held_since_date=e.held_since, version=version,
                    )
                )
                rows.append(
                    TransactionRow(
                        transaction_id=t.transaction_id, portfolio_id=t.portfolio_id, security_id=t.security_id,
                        epoch=out.epoch, transaction_type=t.transaction_type.value, transaction_date=t.transaction_ts,
                        quantity=t.quantity, price=t.price, gross_amount=t.gross_amount, trade_fee=t.trade_fee,
                        trade_currency=t.trade_currency, net_cost=e.net_cost, net_cost_local=e.net_cost_local,
                        realized_gain_loss=e.realized_base, realized_gain_loss_local=e.realized_local,
                        transaction_fx_rate=e.fx_rate, flags=",".join(f.value for f in e.flags), updated_at=now,
                        version=version,
                    )
                )
        elif isinstance(out, StateChanged):
            s = out.state
            rows.append(
                PositionStateRow(
                    portfolio_id=s.portfolio_id, security_id=s.security_id, epoch=s.epoch, version=s.version,
                    generation=s.generation, status=s.status.value, watermark_date=s.watermark_date, quantity=s.holding.quantity,
                    cost_basis=s.holding.cost_base, cost_basis_local=s.holding.cost_local,
                    held_since_date=s.holding.held_since, first_open_date=s.first_open_date,
                    last_transaction_date=s.last_transaction_date, waiting_for=s.waiting_for, updated_at=now,
                    epoch_trigger=s.epoch_trigger,
                    epoch_rebuilt_from=date.fromisoformat(s.epoch_rebuilt_from) if s.epoch_rebuilt_from else None,
                    txn_count=s.txn_count, changed_from=s.changed_from, ref_floor=s.ref_floor,
                )
            )
    return rows


def snapshot_row(portfolio_id: str, security_id: str, epoch: int, s, job_version: int | None = None) -> SnapshotRow:
    """The result row of a daily snapshot (a `domain.valuation.Snapshot`) of one epoch,
    answering the job of `job_version`."""
    return SnapshotRow(
        portfolio_id=portfolio_id, security_id=security_id, date=s.day, epoch=epoch,
        quantity=s.quantity, cost_basis=s.cost_base, cost_basis_local=s.cost_local, market_price=s.market_price,
        market_value=s.market_value, market_value_local=s.market_value_local,
        unrealized_gain_loss=s.unrealized, unrealized_gain_loss_local=s.unrealized_local, fx_rate=s.fx_rate,
        valuation_status=s.status.value, price_date=s.price_date, job_version=job_version,
    )
