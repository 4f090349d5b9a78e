"""Builders for the broker-free valuation tests: the valuation role over in-memory stores,
reference events, and a tiny pipeline (positions handler -> valuation handler) that values
a key on any day the way a dispatched job would.

Imported by the test modules beside it (`from valuation_factories import ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.agents.valuation_handler import ValuationHandler
from epochflow.schemas.commands import AdvanceWatermark
from epochflow.schemas.events import (
    BusinessDateEvent,
    FxRateEvent,
    InstrumentEvent,
    MarketPriceEvent,
    PortfolioEvent,
    TransactionEvent,
)
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import JobOutcome, SnapshotRow
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import MemoryStore

D = Decimal
SNAPSHOT_FIELDS = (
    "quantity",
    "cost_basis",
    "cost_basis_local",
    "market_price",
    "market_value",
    "market_value_local",
    "unrealized_gain_loss",
    "unrealized_gain_loss_local",
    "valuation_status",
)


def valuation_reference() -> ReferenceData:
    """Portfolios, instruments, series, series index, scalars and price-currency tags."""
    return ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())


def valuation_handler() -> ValuationHandler:
    return ValuationHandler(MemoryStore(), MemoryStore(), valuation_reference())


def positions_handler() -> PositionsHandler:
    reference = ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())
    return PositionsHandler(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), reference,
                            clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))


def portfolio(portfolio_id: str, base: str = "USD", method: str = "FIFO") -> PortfolioEvent:
    return PortfolioEvent(portfolio_id=portfolio_id, base_currency=base, cost_basis_method=method)


def instrument(security_id: str, currency: str = "USD") -> InstrumentEvent:
    return InstrumentEvent(security_id=security_id, currency=currency)


def price(security_id: str, on: date, value: str | Decimal, currency: str = "USD") -> MarketPriceEvent:
    return MarketPriceEvent(security_id=security_id, price_date=on, price=D(str(value)), currency=currency)


def fx(on: date, rate: str | Decimal, from_currency: str = "EUR", to_currency: str = "USD") -> FxRateEvent:
    return FxRateEvent(from_currency=from_currency, to_currency=to_currency, rate_date=on, rate=D(str(rate)))


def trade(transaction_id: str, portfolio_id: str, security_id: str, kind: str, on: date, quantity, unit_price,
          currency: str = "USD", fee="0", hour: int = 10) -> TransactionEvent:
    q, p = D(str(quantity)), D(str(unit_price))
    return TransactionEvent(
        transaction_id=transaction_id, portfolio_id=portfolio_id, security_id=security_id, transaction_type=kind,
        transaction_date=datetime(on.year, on.month, on.day, hour, tzinfo=UTC), quantity=q, price=p,
        gross_amount=q * p, trade_fee=D(str(fee)), trade_currency=currency,
    )


def fields(row: SnapshotRow) -> tuple:
    """The snapshot's asserted fields (Decimals compare exactly, whatever their scale)."""
    return tuple(getattr(row, name) for name in SNAPSHOT_FIELDS)


@dataclass
class Pipeline:
    """The positions role feeding the valuation role's history copy, both fed reference
    data, and a valuation job for any (key, day) built from what positions last said."""

    positions: PositionsHandler = field(default_factory=positions_handler)
    valuation: ValuationHandler = field(default_factory=valuation_handler)
    ref_offset: int = -1
    job_versions: int = 0

    def feed(self, event) -> list:
        if isinstance(event, TransactionEvent):
            rows = self.positions.on_transaction(event, 0)
        else:
            rows = self.positions.on_reference(event, 0)
            apply_reference_event(self.valuation.reference, event)
            self.ref_offset += 1
        self.valuation.on_position_rows(rows)
        return rows

    def feed_all(self, events) -> None:
        for event in events:
            self.feed(event)

    def advance(self, key: str, to_date: date) -> list:
        """The scheduler's advance for the key's current epoch and generation."""
        state = self.positions.states.get(key)
        if state is None:
            return []
        portfolio_id, security_id = key.split("|")
        rows = self.positions.on_command(AdvanceWatermark(
            portfolio_id=portfolio_id, security_id=security_id, epoch=state.epoch, generation=state.generation,
            to_date=to_date, latest_snapshot_date=to_date))
        self.valuation.on_position_rows(rows)
        return rows

    def job(self, key: str, day: date) -> ValuationJob:
        state = self.positions.states.get(key)
        portfolio_id, security_id = key.split("|")
        self.job_versions += 1
        return ValuationJob(portfolio_id=portfolio_id, security_id=security_id, valuation_date=day,
                            epoch=state.epoch if state else 0, job_version=self.job_versions,
                            state_version=state.version if state else 0, ref_offset=self.ref_offset)

    def value(self, key: str, day: date) -> tuple[SnapshotRow | None, JobOutcome]:
        out = self.valuation.on_job(self.job(key, day), self.ref_offset)
        snapshots = [r for r in out if isinstance(r, SnapshotRow)]
        outcomes = [r for r in out if isinstance(r, JobOutcome)]
        assert len(outcomes) == 1 and len(snapshots) <= 1, out
        return (snapshots[0] if snapshots else None), outcomes[0]


def business_date(on: date) -> BusinessDateEvent:
    return BusinessDateEvent(date=on)
