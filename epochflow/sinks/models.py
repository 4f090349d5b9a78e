"""The PostgreSQL tables the sink writes and the API reads.

Money and quantities are NUMERIC without a fixed scale so a Decimal comes back exactly as
it was written ("1389.9" stays 1389.9). Every key-scoped row carries its epoch; the writer
uses it to keep older epochs from overwriting newer ones. The Alembic migrations mirror
these declarations; `tests/integration/test_postgres.py` checks they agree.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import BigInteger, Column, Date, DateTime, Identity, Index, Integer, MetaData, Numeric, Table, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names keep future Alembic migrations diffable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(asdecimal=True)
TimestampTz = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: Text(),
        int: Integer(),
        Decimal: Money,
        date: Date(),
        datetime: TimestampTz,
    }


class Transaction(Base):
    """One row per transaction id: its latest version, costed under the latest epoch."""

    __tablename__ = "transactions"
    __table_args__ = (
        Index(
            "ix_transactions_key_date", "portfolio_id", "security_id", "transaction_date", "transaction_id"
        ),
    )

    transaction_id: Mapped[str] = mapped_column(primary_key=True)
    portfolio_id: Mapped[str]
    security_id: Mapped[str]
    epoch: Mapped[int]
    transaction_type: Mapped[str]
    transaction_date: Mapped[datetime]
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    gross_amount: Mapped[Decimal]
    trade_fee: Mapped[Decimal]
    trade_currency: Mapped[str]
    net_cost: Mapped[Decimal | None]
    net_cost_local: Mapped[Decimal]
    realized_gain_loss: Mapped[Decimal | None]
    realized_gain_loss_local: Mapped[Decimal | None]
    transaction_fx_rate: Mapped[Decimal | None]
    flags: Mapped[str] = mapped_column(server_default="")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    version: Mapped[int | None] = mapped_column(BigInteger)  # the key's state version that sent it


class PositionHistory(Base):
    """Quantity and cost after each transaction of a key, per epoch."""

    __tablename__ = "position_history"
    __table_args__ = (
        Index("ix_position_history_key_epoch_seq", "portfolio_id", "security_id", "epoch", "seq"),
    )

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    security_id: Mapped[str] = mapped_column(primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[str] = mapped_column(primary_key=True)
    position_date: Mapped[date]
    seq: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[Decimal]
    cost_basis: Mapped[Decimal | None]
    cost_basis_local: Mapped[Decimal]
    held_since_date: Mapped[date | None]
    version: Mapped[int | None] = mapped_column(BigInteger)  # the key's state version that sent it


class PositionState(Base):
    """The key's current position and processing status (what reads show)."""

    __tablename__ = "position_state"
    __table_args__ = (Index("ix_position_state_status", "status"),)

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    security_id: Mapped[str] = mapped_column(primary_key=True)
    epoch: Mapped[int]
    version: Mapped[int] = mapped_column(BigInteger)
    # bumped by every watermark reset: an advance computed before a reset must carry it
    generation: Mapped[int] = mapped_column(BigInteger, server_default="0")
    txn_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    changed_from: Mapped[date | None] = mapped_column(nullable=True)  # first day the last change touched
    status: Mapped[str]
    watermark_date: Mapped[date | None]
    quantity: Mapped[Decimal]
    cost_basis: Mapped[Decimal | None]
    cost_basis_local: Mapped[Decimal]
    held_since_date: Mapped[date | None]
    first_open_date: Mapped[date | None]
    last_transaction_date: Mapped[date | None]
    waiting_for: Mapped[str] = mapped_column(server_default="")
    updated_at: Mapped[datetime]
    # what opened the current epoch: the transaction and the first day it rebuilt
    epoch_trigger: Mapped[str | None]
    epoch_rebuilt_from: Mapped[date | None]


class PipelineBarrier(Base):
    """Which (stage, partition) has passed a barrier token through to PostgreSQL."""

    __tablename__ = "pipeline_barriers"

    token: Mapped[str] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(primary_key=True)
    partition: Mapped[int] = mapped_column(primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SinkOffset(Base):
    """The last results message the sink wrote of a partition, in the transaction of its
    rows (epochflow.agents.sink finds with it the messages its consumer never handed over)."""

    __tablename__ = "sink_offsets"

    topic: Mapped[str] = mapped_column(primary_key=True)
    partition: Mapped[int] = mapped_column(primary_key=True)
    last_offset: Mapped[int] = mapped_column(BigInteger)
    written_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DailyPositionSnapshot(Base):
    """A key's end-of-day position and valuation, per epoch (the valuation role's output;
    a new epoch also gets the old epoch's days before its reset date copied in)."""

    __tablename__ = "daily_position_snapshots"
    __table_args__ = (
        # a key's snapshots of an epoch by date (current-epoch reads, carry-over copies)
        Index("ix_daily_position_snapshots_key_epoch_date", "portfolio_id", "security_id", "epoch", "date"),
    )

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    security_id: Mapped[str] = mapped_column(primary_key=True)
    # `dt.date`: an annotation `date` would resolve to this very attribute
    date: Mapped[dt.date] = mapped_column(primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    quantity: Mapped[Decimal]
    cost_basis: Mapped[Decimal | None]
    cost_basis_local: Mapped[Decimal]
    market_price: Mapped[Decimal | None]
    market_value: Mapped[Decimal | None]
    market_value_local: Mapped[Decimal | None]
    unrealized_gain_loss: Mapped[Decimal | None]
    unrealized_gain_loss_local: Mapped[Decimal | None]
    fx_rate: Mapped[Decimal | None]
    valuation_status: Mapped[str]
    price_date: Mapped[dt.date | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    job_version: Mapped[int | None] = mapped_column(BigInteger)  # the job version it answers


class PortfolioValuationJob(Base):
    """A valuation job's latest known state (the scheduler numbers each job's updates)."""

    __tablename__ = "portfolio_valuation_jobs"
    __table_args__ = (
        Index("ix_portfolio_valuation_jobs_status", "status"),
        Index("ix_portfolio_valuation_jobs_key_epoch", "portfolio_id", "security_id", "epoch"),
    )

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    security_id: Mapped[str] = mapped_column(primary_key=True)
    valuation_date: Mapped[date] = mapped_column(primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str]
    attempt_count: Mapped[int]
    failure_reason: Mapped[str | None]
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class ReprocessingTrigger(Base):
    """The fan-out's instrument-level (or FX pair) trigger per partition: pending until its
    cycle queues it as a RESET_WATERMARKS job."""

    __tablename__ = "reprocessing_triggers"
    __table_args__ = (Index("ix_reprocessing_triggers_pending", "pending"),)

    subject: Mapped[str] = mapped_column(primary_key=True)
    partition: Mapped[int] = mapped_column(primary_key=True)
    security_id: Mapped[str | None]
    from_currency: Mapped[str | None]
    to_currency: Mapped[str | None]
    earliest_impacted_date: Mapped[date | None]
    corrections: Mapped[int]
    pending: Mapped[bool]
    created_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class ReprocessingJob(Base):
    """A durable RESET_WATERMARKS job: its lifecycle and progress, for operators."""

    __tablename__ = "reprocessing_jobs"
    __table_args__ = (
        Index("ix_reprocessing_jobs_status", "status"),
        Index("ix_reprocessing_jobs_security_id", "security_id"),
    )

    job_id: Mapped[str] = mapped_column(primary_key=True)
    job_type: Mapped[str]
    subject: Mapped[str]
    partition: Mapped[int]
    security_id: Mapped[str | None]
    from_currency: Mapped[str | None]
    to_currency: Mapped[str | None]
    earliest_impacted_date: Mapped[date]
    status: Mapped[str]
    attempt_count: Mapped[int]
    last_attempted_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None]
    keys_total: Mapped[int]
    keys_reset: Mapped[int]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class Cashflow(Base):
    """A transaction's cash flow (TIMESERIES.md), replaced on amendment (fenced by epoch,
    then by the version of the transaction row it came from)."""

    __tablename__ = "cashflows"
    __table_args__ = (Index("ix_cashflows_portfolio_date", "portfolio_id", "cashflow_date"),)

    transaction_id: Mapped[str] = mapped_column(primary_key=True)
    portfolio_id: Mapped[str]
    security_id: Mapped[str]
    transaction_type: Mapped[str]
    amount: Mapped[Decimal]
    currency: Mapped[str]
    classification: Mapped[str]
    timing: Mapped[str]
    calculation_type: Mapped[str]
    is_position_flow: Mapped[bool]
    is_portfolio_flow: Mapped[bool]
    cashflow_date: Mapped[date]
    epoch: Mapped[int]
    version: Mapped[int] = mapped_column(BigInteger)


class PositionTimeseries(Base):
    """A key's time-series row per day, in the epoch it was computed in (reads keep the
    key's current epoch; `present` false: no snapshot that day any more)."""

    __tablename__ = "position_timeseries"

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    security_id: Mapped[str] = mapped_column(primary_key=True)
    date: Mapped[dt.date] = mapped_column(primary_key=True)
    epoch: Mapped[int]
    version: Mapped[int] = mapped_column(BigInteger)
    present: Mapped[bool]
    bod_market_value: Mapped[Decimal]
    eod_market_value: Mapped[Decimal]
    quantity: Mapped[Decimal]
    cost: Mapped[Decimal]
    bod_cashflow_position: Mapped[Decimal]
    eod_cashflow_position: Mapped[Decimal]
    bod_cashflow_portfolio: Mapped[Decimal]
    eod_cashflow_portfolio: Mapped[Decimal]


class PortfolioTimeseries(Base):
    """A portfolio's time-series row per day, in its base currency."""

    __tablename__ = "portfolio_timeseries"

    portfolio_id: Mapped[str] = mapped_column(primary_key=True)
    date: Mapped[dt.date] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    present: Mapped[bool]
    bod_market_value: Mapped[Decimal]
    eod_market_value: Mapped[Decimal]
    bod_cashflow: Mapped[Decimal]
    eod_cashflow: Mapped[Decimal]
    fees: Mapped[Decimal]
    daily_return: Mapped[Decimal | None]
    valuation_status: Mapped[str]
    keys_unvalued: Mapped[int]


# Declarative types __table__ as a FromClause; these are Tables, which the writer needs.
transactions = cast(Table, Transaction.__table__)
position_history = cast(Table, PositionHistory.__table__)
position_state = cast(Table, PositionState.__table__)
pipeline_barriers = cast(Table, PipelineBarrier.__table__)
sink_offsets = cast(Table, SinkOffset.__table__)
daily_position_snapshots = cast(Table, DailyPositionSnapshot.__table__)
portfolio_valuation_jobs = cast(Table, PortfolioValuationJob.__table__)
reprocessing_triggers = cast(Table, ReprocessingTrigger.__table__)
reprocessing_jobs = cast(Table, ReprocessingJob.__table__)
cashflows = cast(Table, Cashflow.__table__)
position_timeseries = cast(Table, PositionTimeseries.__table__)
portfolio_timeseries = cast(Table, PortfolioTimeseries.__table__)


# -- versions: every row a read could have returned, with when it was current ------------------

SYSTEM_COLUMNS = ("version_id", "system_from", "system_to")


def _versions_of(table: Table) -> Table:
    """`<table>_versions`: every version of `table`'s rows, each current from `system_from`
    until `system_to` (NULL: still current). Kept by statement triggers on `table` (migration 0006)
    with the system time of the sink's write (`sinks.versions`); rows are never updated but
    to close them."""
    pk = [c.name for c in table.primary_key.columns]
    return Table(
        f"{table.name}_versions",
        Base.metadata,
        Column("version_id", BigInteger, Identity(always=True), primary_key=True),
        *(Column(c.name, c.type, nullable=c.nullable) for c in table.columns),
        Column("system_from", TimestampTz, nullable=False),
        Column("system_to", TimestampTz, nullable=True),
        # a row's versions in order, and the one open version a write closes
        Index(f"ix_{table.name}_versions_key", *pk, "system_from"),
        # and the table's own indexes, for the same reads as at a time
        *(
            Index(index.name.replace(f"ix_{table.name}_", f"ix_{table.name}_versions_"), *index.columns.keys())
            for index in table.indexes
            if isinstance(index.name, str)
        ),
    )


# the tables whose every version is kept (what reads of positions, snapshots, history,
# time series and transactions show); jobs, triggers and barriers are operational state
VERSIONED = (
    transactions,
    position_history,
    position_state,
    daily_position_snapshots,
    cashflows,
    position_timeseries,
    portfolio_timeseries,
)
VERSIONS = {table.name: _versions_of(table) for table in VERSIONED}

ALL_TABLES = (
    transactions,
    position_history,
    position_state,
    pipeline_barriers,
    sink_offsets,
    daily_position_snapshots,
    portfolio_valuation_jobs,
    reprocessing_triggers,
    reprocessing_jobs,
    cashflows,
    position_timeseries,
    portfolio_timeseries,
    *VERSIONS.values(),
)
