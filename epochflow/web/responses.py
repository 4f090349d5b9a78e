"""The bodies the web API answers with, as pydantic models: the views build them, and the
OpenAPI document takes its schemas from the same classes, so the two cannot drift.

Money, quantities and weights are decimal strings (exact, never floats, never exponent
notation); dates are YYYY-MM-DD, timestamps ISO 8601.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

DecimalString = Annotated[
    Decimal,
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "An exact decimal number"}),
]
ReprocessingStatus = Literal["CURRENT", "IN_PROGRESS"]


class Body(BaseModel):
    # built from database rows that carry more columns than a body shows
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    # the field holding the body's rows, when it has some: what its CSV answer writes
    csv_rows: ClassVar[str | None] = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def csv_columns(cls) -> list[str]:
        """The CSV header: the fields of the row model, in order, as JSON names them."""
        if cls.csv_rows is None:
            raise TypeError(f"{cls.__name__} has no rows")
        (row_model,) = get_args(cls.model_fields[cls.csv_rows].annotation)
        return [field.alias or name for name, field in row_model.model_fields.items()]


class ErrorBody(Body):
    error: str = Field(description="What was wrong, for a human")


class Health(Body):
    role: str
    app: str
    status: Literal["ok"]


class NotPublished(Body):
    index: int = Field(description="Position of the event in the request")
    type: str = Field(description="The event's type")
    reason: str = Field(description="Why it was not sent")


class IngestResult(Body):
    published: int = Field(description="Events published")
    not_published: list[NotPublished] = Field(
        default_factory=list,
        description="Valid events that were not sent: checkpoints, which only the scenario runner acts on",
    )


class InvalidEvent(Body):
    index: int = Field(description="Position of the event in the request")
    reason: str


class InvalidRow(Body):
    row: int = Field(description="The CSV row, as a spreadsheet counts: the header is row 1")
    field: str | None = Field(description="The column (null: a rule across fields, or the row as a whole)")
    reason: str


class IngestRefused(Body):
    error: str
    invalid: list[InvalidRow | InvalidEvent] = Field(
        description="JSON: each invalid event by its index; CSV: each problem by row and field"
    )


class Position(Body):
    portfolio_id: str
    security_id: str
    epoch: int
    status: str = Field(description="CURRENT or REPROCESSING (position_state)")
    reprocessing_status: ReprocessingStatus
    watermark_date: date | None
    quantity: DecimalString
    cost_basis: DecimalString | None = Field(description="Base currency; null while an FX rate is missing")
    cost_basis_local: DecimalString
    held_since_date: date | None
    valuation_date: date | None = Field(description="The day the valuation columns are of (null: no snapshot)")
    market_price: DecimalString | None
    market_value: DecimalString | None
    market_value_local: DecimalString | None
    unrealized_gain_loss: DecimalString | None
    unrealized_gain_loss_local: DecimalString | None
    fx_rate: DecimalString | None
    price_date: date | None
    valuation_status: str | None
    weight: DecimalString | None = Field(
        description="market_value / the portfolio's total market value that day; null when not computable"
    )


class PortfolioPositions(Body):
    csv_rows: ClassVar[str | None] = "positions"
    portfolio_id: str
    as_of: date | None = Field(description="The day of the valuation (the latest snapshot date unless asked)")
    total_market_value: DecimalString | None = Field(description="Sum of the market values valued that day")
    positions: list[Position]


class HistoryEntry(Body):
    transaction_id: str
    position_date: date
    seq: int
    quantity: DecimalString
    cost_basis: DecimalString | None
    cost_basis_local: DecimalString
    held_since_date: date | None


class SnapshotEntry(Body):
    date: date
    quantity: DecimalString
    cost_basis: DecimalString | None
    cost_basis_local: DecimalString
    market_price: DecimalString | None
    market_value: DecimalString | None
    market_value_local: DecimalString | None
    unrealized_gain_loss: DecimalString | None
    unrealized_gain_loss_local: DecimalString | None
    fx_rate: DecimalString | None
    valuation_status: str
    price_date: date | None


class KeyRows(Body):
    """What the history and snapshot routes share: the key, its current epoch, the range."""

    portfolio_id: str
    security_id: str
    epoch: int
    status: str
    reprocessing_status: ReprocessingStatus
    watermark_date: date | None
    date_from: date | None = Field(alias="from")
    date_to: date | None = Field(alias="to")


class PositionHistory(KeyRows):
    csv_rows: ClassVar[str | None] = "history"
    history: list[HistoryEntry]


class PositionSnapshots(KeyRows):
    csv_rows: ClassVar[str | None] = "snapshots"
    snapshots: list[SnapshotEntry]


class ValuationJob(Body):
    portfolio_id: str
    security_id: str
    valuation_date: date
    epoch: int
    status: Literal["PENDING", "PROCESSING", "COMPLETE", "SKIPPED_NO_POSITION", "FAILED"]
    attempt_count: int
    failure_reason: str | None
    version: int
    updated_at: datetime


class ValuationJobs(Body):
    csv_rows: ClassVar[str | None] = "jobs"
    total: int = Field(description="Jobs matching the filters, over all pages")
    limit: int
    offset: int
    jobs: list[ValuationJob]


class ReprocessingJob(Body):
    job_id: str
    job_type: str
    subject: str = Field(description="price|SECURITY or fx|FROM|TO")
    partition: int
    security_id: str | None
    from_currency: str | None
    to_currency: str | None
    earliest_impacted_date: date
    status: Literal["PENDING", "PROCESSING", "COMPLETE", "FAILED"]
    attempt_count: int
    last_attempted_at: datetime | None
    failure_reason: str | None
    keys_total: int
    keys_reset: int
    created_at: datetime
    finished_at: datetime | None
    version: int
    updated_at: datetime


class FanoutProgress(Body):
    keys_reset: int
    keys_total: int
    pending: int
    processing: int
    complete: int
    failed: int


class ReprocessingJobs(Body):
    csv_rows: ClassVar[str | None] = "jobs"
    progress: FanoutProgress
    limit: int
    offset: int
    jobs: list[ReprocessingJob]


class ReprocessingTrigger(Body):
    subject: str
    partition: int
    security_id: str | None
    from_currency: str | None
    to_currency: str | None
    earliest_impacted_date: date | None
    corrections: int
    pending: bool
    created_at: datetime | None
    version: int
    updated_at: datetime


class ReprocessingTriggers(Body):
    csv_rows: ClassVar[str | None] = "triggers"
    triggers: list[ReprocessingTrigger]


class Lineage(Body):
    portfolio_id: str
    security_id: str
    epoch: int
    generation: int = Field(description="Watermark resets of the key so far")
    status: str
    reprocessing_status: ReprocessingStatus
    watermark_date: date | None
    first_open_date: date | None
    last_transaction_date: date | None
    waiting_for: str = Field(description="Data the key waits for (empty: nothing)")
    epochs_in_history: list[int] = Field(description="Epochs the key has history rows in")
    history_rows: int
    first_history_date: date | None
    latest_history_date: date | None
    snapshot_count: int
    first_snapshot_date: date | None
    latest_snapshot_date: date | None
    earliest_job_date: date | None
    latest_job_date: date | None
    jobs_by_status: dict[str, int] = Field(description="Valuation jobs of the current epoch, every status listed")
    jobs_blocked: int = Field(description="PENDING jobs waiting for missing data (failure_reason set)")
    open_reset_jobs: list[ReprocessingJob] = Field(description="RESET_WATERMARKS jobs of the security not ended")


class KeyStatus(Body):
    security_id: str
    epoch: int
    status: str
    watermark_date: date | None
    generation: int
    waiting_for: str


class KeySample(Body):
    count: int
    keys: list[KeyStatus] = Field(description="The first 20, by security")


class JobCounts(Body):
    pending: int
    blocked: int = Field(description="Of the pending, those waiting for missing data")
    processing: int
    failed: int


class Support(Body):
    portfolio_id: str
    business_date: date | None = Field(
        description="Latest business date the data shows: the highest watermark of any key, or the "
        "portfolio's latest snapshot date when later"
    )
    keys_total: int
    keys_by_status: dict[str, int]
    keys_reprocessing: KeySample
    keys_behind: KeySample = Field(description="Keys not reprocessing whose watermark is before the business date")
    keys_waiting_for_data: KeySample
    valuation_jobs: JobCounts = Field(description="Jobs of the keys' current epochs")
    troubled_jobs: list[ValuationJob] = Field(description="FAILED and blocked jobs (the first 20)")
    latest_snapshot_date: date | None
    latest_transaction_date: date | None
    open_reset_jobs: list[ReprocessingJob] = Field(description="Open RESET_WATERMARKS jobs of its securities")


# -- time series ---------------------------------------------------------------------


class PortfolioDay(Body):
    date: date
    bod_market_value: DecimalString
    eod_market_value: DecimalString
    bod_cashflow: DecimalString
    eod_cashflow: DecimalString
    fees: DecimalString
    daily_return: DecimalString | None
    cumulative_return: DecimalString | None  # time-weighted from the first day shown
    valuation_status: str
    keys_unvalued: int


class PortfolioSeries(Body):
    csv_rows: ClassVar[str | None] = "rows"
    portfolio_id: str
    reprocessing_status: ReprocessingStatus
    rebuilding_from: date | None = None  # while IN_PROGRESS: the first day not valued again yet
    rows: list[PortfolioDay]


class Performance(Body):
    portfolio_id: str
    reprocessing_status: ReprocessingStatus
    date_from: date | None = Field(alias="from")
    date_to: date | None = Field(alias="to")
    days: int
    time_weighted_return: DecimalString | None
    null_days: list[date]  # the days that make it null (a null daily return, or INCOMPLETE)


class PositionDay(Body):
    date: date
    bod_market_value: DecimalString
    eod_market_value: DecimalString
    quantity: DecimalString
    cost: DecimalString
    bod_cashflow_position: DecimalString
    eod_cashflow_position: DecimalString
    bod_cashflow_portfolio: DecimalString
    eod_cashflow_portfolio: DecimalString


class PositionSeries(Body):
    csv_rows: ClassVar[str | None] = "rows"
    portfolio_id: str
    security_id: str
    epoch: int
    reprocessing_status: ReprocessingStatus
    rows: list[PositionDay]


class CashflowEntry(Body):
    transaction_id: str
    security_id: str
    transaction_type: str
    amount: DecimalString
    currency: str
    classification: str
    timing: str
    calculation_type: str
    is_position_flow: bool
    is_portfolio_flow: bool
    cashflow_date: date


class PortfolioCashflows(Body):
    csv_rows: ClassVar[str | None] = "rows"
    portfolio_id: str
    reprocessing_status: ReprocessingStatus
    rows: list[CashflowEntry]


class ChangeCause(Body):
    kind: Literal["first_valuation", "backdated_transaction", "amendment", "transaction", "price_correction",
                  "fx_correction", "missing_data_arrived", "revaluation"]
    description: str = Field(description="The cause in words, e.g. `back-dated BUY T9 of 25 on 2025-01-03 opened epoch 1`")
    transaction_id: str | None = None
    epoch: int | None = None


class FieldChange(Body):
    before: str | None = Field(description="The value before (decimals exact, dates YYYY-MM-DD; null: none)")
    after: str | None


class DayChange(Body):
    system_time: datetime = Field(description="When these figures became what reads show (pass it as `as_at`)")
    epoch: int
    figures: SnapshotEntry | None = Field(description="The day's snapshot; null: the epoch has not valued it again yet")
    cause: ChangeCause
    differences: dict[str, FieldChange] = Field(description="Each figure that differs from the previous version")


class DayChanges(Body):
    portfolio_id: str
    security_id: str
    date: date
    changes: list[DayChange] = Field(description="Oldest first; the last one is what reads show now")


# -- transactions --------------------------------------------------------------------


class TransactionEntry(Body):
    transaction_id: str
    security_id: str
    transaction_type: str
    transaction_date: datetime
    epoch: int = Field(description="The epoch the transaction was last costed in")
    reprocessing_status: ReprocessingStatus = Field(description="Of the transaction's key")
    quantity: DecimalString
    price: DecimalString
    gross_amount: DecimalString
    trade_fee: DecimalString
    trade_currency: str
    net_cost: DecimalString | None = Field(description="Cost delta in base currency; null while an FX rate is missing")
    net_cost_local: DecimalString = Field(description="Cost delta in the trade currency (negative for a SELL)")
    realized_gain_loss: DecimalString | None = Field(description="Base currency; null when none (not a SELL) or FX missing")
    realized_gain_loss_local: DecimalString | None
    transaction_fx_rate: DecimalString | None = Field(description="Trade currency to base on the transaction date")
    oversold: bool = Field(description="A SELL of more than was held, resolved when the earlier transaction arrives")
    fx_missing: bool = Field(description="Base-currency figures wait for an FX rate")


class PortfolioTransactions(Body):
    csv_rows: ClassVar[str | None] = "transactions"
    portfolio_id: str
    reprocessing_status: ReprocessingStatus
    security_id: str | None = Field(description="The security asked for (null: every security)")
    date_from: date | None = Field(alias="from")
    date_to: date | None = Field(alias="to")
    total: int = Field(description="Transactions matching the filters, over all pages")
    limit: int
    offset: int
    transactions: list[TransactionEntry]


ALL_BODIES: tuple[type[Body], ...] = (
    ErrorBody,
    DayChanges,


    PortfolioTransactions,
    PortfolioSeries,
    Performance,
    PositionSeries,
    PortfolioCashflows,
    Health,
    IngestResult,
    IngestRefused,
    PortfolioPositions,
    PositionHistory,
    PositionSnapshots,
    Lineage,
    ValuationJobs,
    Support,
    ReprocessingJobs,
    ReprocessingTriggers,
)

