"""The positions, valuation and scheduler handlers over in-memory stores, wired the way the
topics wire them, for broker-free tests of the valuation loop.

`Loop` delivers each role's outputs to the roles that consume them, synchronously and in
order. Tests can hold back what a role would receive (dispatched jobs, position commands,
the valuation role's copy of positions rows) to play the races the topics allow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from epochflow.agents.configs import scheduler_config
from epochflow.agents.messages import Message
from epochflow.agents.positions_handler import PositionsHandler
from epochflow.agents.scheduler_handler import SchedulerHandler
from epochflow.agents.valuation_handler import ValuationHandler
from epochflow.config import Settings
from epochflow.domain.scheduling import SchedulerConfig
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark, parse_command
from epochflow.schemas.events import (
    BusinessDateEvent,
    InstrumentEvent,
    MarketPriceEvent,
    PortfolioEvent,
    TransactionEvent,
)
from epochflow.schemas.jobs import ValuationJob, parse_job
from epochflow.schemas.results import JobOutcome, PositionStateRow, SnapshotRow, ValuationJobRow
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import MemoryStore

D = Decimal


def valuation_handler() -> ValuationHandler:
    reference = ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())
    return ValuationHandler(MemoryStore(), MemoryStore(), reference)


def scheduler_handler(cfg: SchedulerConfig | None = None) -> SchedulerHandler:
    return SchedulerHandler(MemoryStore(), MemoryStore(), MemoryStore(), cfg or scheduler_config(Settings()), partitions=1)


def positions_handler() -> PositionsHandler:
    reference = ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())
    return PositionsHandler(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), reference,
                            clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))


def portfolio(portfolio_id: str = "P1", base: str = "USD") -> PortfolioEvent:
    return PortfolioEvent(portfolio_id=portfolio_id, base_currency=base)


def instrument(security_id: str = "S1", currency: str = "USD") -> InstrumentEvent:
    return InstrumentEvent(security_id=security_id, currency=currency)


def price(on: date, value, security_id: str = "S1", currency: str = "USD") -> MarketPriceEvent:
    return MarketPriceEvent(security_id=security_id, price_date=on, price=D(str(value)), currency=currency)


def business_date(on: date) -> BusinessDateEvent:
    return BusinessDateEvent(date=on)


def trade(transaction_id: str, kind: str, on: date, quantity, unit_price, portfolio_id: str = "P1",
          security_id: str = "S1", currency: str = "USD") -> TransactionEvent:
    q, p = D(str(quantity)), D(str(unit_price))
    return TransactionEvent(transaction_id=transaction_id, portfolio_id=portfolio_id, security_id=security_id,
                            transaction_type=kind, transaction_date=datetime(on.year, on.month, on.day, 10, tzinfo=UTC),
                            quantity=q, price=p, gross_amount=q * p, trade_currency=currency)


@dataclass
class Loop:
    cfg: SchedulerConfig = field(default_factory=lambda: scheduler_config(Settings()))
    positions: PositionsHandler = field(default_factory=positions_handler)
    valuation: ValuationHandler = field(default_factory=valuation_handler)
    scheduler: SchedulerHandler = None  # type: ignore[assignment]
    now: float = 1_000.0
    ref_offset: int = -1  # offsets on the reference topic (every role reads the same one)
    valuation_ref_seen: int = -1  # what the valuation role has applied of it
    valuation_ref_lag: int = 0  # how far its reference agent is behind the others
    # what the roles sent, as the sink would keep it
    snapshots: dict[tuple[date, int], SnapshotRow] = field(default_factory=dict)
    job_rows: dict[tuple[date, int], ValuationJobRow] = field(default_factory=dict)
    commands: list[AdvanceWatermark | ResetWatermark] = field(default_factory=list)
    outcomes: list[JobOutcome] = field(default_factory=list)
    dispatched: list[ValuationJob] = field(default_factory=list)
    # held back (a dead valuation worker, a slow positions role, a lagging copy)
    hold_jobs: bool = False
    held_jobs: list[ValuationJob] = field(default_factory=list)
    hold_commands: bool = False
    held_commands: list[AdvanceWatermark | ResetWatermark] = field(default_factory=list)
    hold_valuation_rows: bool = False
    held_rows: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scheduler is None:
            self.scheduler = scheduler_handler(self.cfg)

    # -- inputs ----------------------------------------------------------------------
    def feed(self, *events) -> None:
        for event in events:
            if isinstance(event, TransactionEvent):
                self._positions_rows(self.positions.on_transaction(event, 0))
                continue
            self.ref_offset += 1
            apply_reference_event(self.valuation.reference, event)
            self.valuation_ref_seen = self.ref_offset - self.valuation_ref_lag
            self._positions_rows(self.positions.on_reference(event, 0))
            self.route(self.scheduler.on_reference(event, 0, self.ref_offset, self.now))

    def tick(self, now: float) -> None:
        self.now = now
        self.route(self.scheduler.on_tick(0, now))

    def release_jobs(self) -> None:
        jobs, self.held_jobs, self.hold_jobs = self.held_jobs, [], False
        for job in jobs:
            self.route(self.valuation.on_job(job, self.valuation_ref_seen))

    def release_commands(self) -> None:
        commands, self.held_commands, self.hold_commands = self.held_commands, [], False
        for command in commands:
            self._positions_rows(self.positions.on_command(command))

    def release_valuation_rows(self) -> None:
        rows, self.held_rows, self.hold_valuation_rows = self.held_rows, [], False
        self.valuation.on_position_rows(rows)

    # -- wiring ----------------------------------------------------------------------
    def _positions_rows(self, rows: list) -> None:
        if self.hold_valuation_rows:
            self.held_rows += rows
        else:
            self.valuation.on_position_rows(rows)
        for row in rows:
            if isinstance(row, PositionStateRow):
                self.route(self.scheduler.on_position_state(row, 0, self.now))

    def route(self, items: list) -> None:
        queue = deque(items)
        while queue:
            item = queue.popleft()
            if isinstance(item, Message) and item.topic == "valuation-jobs":
                job = parse_job(item.value)
                self.dispatched.append(job)
                if self.hold_jobs:
                    self.held_jobs.append(job)
                else:
                    queue.extend(self.valuation.on_job(job, self.valuation_ref_seen))
            elif isinstance(item, Message) and item.topic == "position-commands":
                command = parse_command(item.value)
                self.commands.append(command)
                if self.hold_commands:
                    self.held_commands.append(command)
                else:
                    rows = self.positions.on_command(command)
                    self._positions_rows(rows)
            elif isinstance(item, Message):
                raise AssertionError(f"unexpected topic {item.topic}")
            elif isinstance(item, SnapshotRow):
                self.snapshots[(item.date, item.epoch)] = item
            elif isinstance(item, JobOutcome):
                self.outcomes.append(item)
                queue.extend(self.scheduler.on_outcomes([item], 0, self.now))
            elif isinstance(item, ValuationJobRow):
                seen = self.job_rows.get((item.valuation_date, item.epoch))
                if seen is None or item.version > seen.version:
                    self.job_rows[(item.valuation_date, item.epoch)] = item
            else:
                raise AssertionError(f"unexpected output {item!r}")

    # -- views -----------------------------------------------------------------------
    def advances(self) -> list[AdvanceWatermark]:
        return [c for c in self.commands if isinstance(c, AdvanceWatermark)]

    def state(self, key: str = "P1|S1"):
        return self.positions.states.get(key)

    def jobs_of(self, epoch: int) -> dict[date, ValuationJobRow]:
        return {day: row for (day, e), row in sorted(self.job_rows.items()) if e == epoch}
