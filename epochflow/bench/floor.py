"""The floor every benchmark measures the engine against, in the same run: the same
workload computed by the domain core in one process (the roles' handlers over in-memory
stores: no broker, no tables, no framework hop), its result rows written to the same
PostgreSQL in batches by the sink's own writer. `overhead = engine_s / floor_s` is what
the engine's hops, changelogs and messages cost on top of the work itself.

The floor does the real work of each benchmark: costing and position history for
`bench ingest`; the back-dated trade's epoch replay of the key's history and the valuation
of every affected day for `bench replay`; the reset and the revaluation of every holder's
days for `bench fanout`. Each valued day also writes its valuation job row (COMPLETE), as
the engine does, so PostgreSQL receives the same kinds of rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.agents.valuation_handler import ValuationHandler
from epochflow.domain.history import entries_from
from epochflow.domain.keys import position_key, record_key
from epochflow.domain.model import PositionState
from epochflow.domain.scheduling import JobStatus
from epochflow.domain.valuation import DailyPosition, NoPosition
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import TransactionEvent
from epochflow.schemas.results import ValuationJobRow, snapshot_row
from epochflow.sinks.writer import ResultWriter
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import MemoryStore

# rows per PostgreSQL transaction: as many as one sink batch can hold (SINK_BATCH messages
# of up to MAX_ROWS_PER_MESSAGE rows) would be more than any workload here writes at once;
# 10,000 rows keeps each statement's arrays moderate and the count of commits negligible
FLOOR_BATCH = 10_000
DAY = timedelta(days=1)


def daily_positions(state: PositionState, load) -> list[DailyPosition]:
    """The key's position after each of its history entries, in order (the valuation
    role's view of a history, taken straight from the positions core's buckets)."""
    if state.first_open_date is None:
        return []
    return [DailyPosition(entry.txn.date, entry.quantity, entry.cost_local, entry.cost_base)
            for _, entry in entries_from(state.weeks, load, state.first_open_date)]


def end_of_days(positions: Sequence[DailyPosition], days: Sequence[date]) -> list[DailyPosition | None]:
    """`domain.valuation.end_of_day` of each of `days` (ascending) in one pass over the
    positions, instead of a search of the whole list per day."""
    found: list[DailyPosition | None] = []
    i, current = 0, None
    for day in days:
        while i < len(positions) and positions[i].day <= day:
            current = positions[i]
            i += 1
        found.append(current)
    return found


def days_between(first: date, last: date) -> list[date]:
    return [first + DAY * n for n in range((last - first).days + 1)]


@dataclass
class Timing:
    """Where a floor run's time went: computing rows, writing them."""

    domain_s: float = 0.0
    write_s: float = 0.0
    rows: int = 0

    @property
    def floor_s(self) -> float:
        return self.domain_s + self.write_s


class Floor:
    """Positions and valuation of any number of keys in one process, and a writer."""

    def __init__(self, writer: ResultWriter, batch: int = FLOOR_BATCH) -> None:
        self.reference = ReferenceData(*(MemoryStore() for _ in range(6)))
        self.positions = PositionsHandler(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), self.reference)
        self.valuation = ValuationHandler(MemoryStore(), MemoryStore(), self.reference)
        self.writer = writer
        self.batch = batch
        self.pending: list = []
        self.job_version = 0
        self.timing = Timing()
        self._started: float | None = None

    # -- the work ----------------------------------------------------------------------
    def reference_events(self, events: Iterable) -> None:
        for event in events:
            apply_reference_event(self.reference, event)

    def transaction(self, event: TransactionEvent) -> None:
        self.pending += self.positions.on_transaction(event, 0)

    def state(self, portfolio_id: str, security_id: str) -> PositionState:
        state = self.positions.states.get(position_key(portfolio_id, security_id))
        if state is None:
            raise KeyError(f"{portfolio_id}|{security_id} has no position")
        return state

    def value_days(self, portfolio_id: str, security_id: str, first: date, last: date) -> None:
        """Value the key's days `first`..`last` in its current epoch: a snapshot row and
        the job's final row per day."""
        key = position_key(portfolio_id, security_id)
        state = self.state(portfolio_id, security_id)
        days = days_between(first, last)
        positions = daily_positions(state, lambda week: self.positions.history.get(record_key(key, week)))
        self.job_version += 1
        now = datetime.now(UTC)
        for day, eod in zip(days, end_of_days(positions, days), strict=True):
            result = self.valuation.value(portfolio_id, security_id, day, eod)
            status, reason = JobStatus.SKIPPED_NO_POSITION, None
            if not isinstance(result, NoPosition):
                self.pending.append(snapshot_row(portfolio_id, security_id, state.epoch, result.snapshot))
                status, reason = (JobStatus.PENDING, result.reason) if result.blocked else (JobStatus.COMPLETE, None)
            self.pending.append(ValuationJobRow(
                portfolio_id=portfolio_id, security_id=security_id, valuation_date=day, epoch=state.epoch,
                status=status.value, attempt_count=1 if reason else 0, failure_reason=reason,
                version=self.job_version, updated_at=now,
            ))

    def advance(self, portfolio_id: str, security_id: str, to_date: date) -> None:
        """Every day up to `to_date` valued: the scheduler's advance, through the core."""
        state = self.state(portfolio_id, security_id)
        self.pending += self.positions.on_command(AdvanceWatermark(
            portfolio_id=portfolio_id, security_id=security_id, epoch=state.epoch, generation=state.generation,
            to_date=to_date, latest_snapshot_date=to_date, business_date=to_date))

    def reset(self, portfolio_id: str, security_id: str, to_date: date, job_id: str) -> None:
        """The fan-out's watermark reset of a holder (its epoch unchanged)."""
        self.pending += self.positions.on_command(ResetWatermark(
            portfolio_id=portfolio_id, security_id=security_id, to_date=to_date, job_id=job_id))

    # -- timing and writing ------------------------------------------------------------
    def start(self) -> None:
        """From here the floor's clock runs (set-up before it is not measured)."""
        self.timing = Timing()
        self._started = time.perf_counter()

    async def flush(self, full_only: bool = False) -> None:
        """Write what is pending in batches of `batch` rows (with `full_only`, only the
        full batches)."""
        while self.pending and (len(self.pending) >= self.batch or not full_only):
            rows, self.pending = self.pending[: self.batch], self.pending[self.batch :]
            started = time.perf_counter()
            await self.writer.write(rows)
            self.timing.write_s += time.perf_counter() - started
            self.timing.rows += len(rows)

    async def stop(self) -> Timing:
        """Write the rest; the time since `start`, split between computing and writing."""
        await self.flush()
        if self._started is None:
            raise RuntimeError("the floor's clock was not started")
        total = time.perf_counter() - self._started
        self.timing.domain_s = max(0.0, total - self.timing.write_s)
        self._started = None
        return self.timing


def overhead(engine_s: float, floor_s: float) -> float:
    return round(engine_s / floor_s, 2) if floor_s > 0 else float("inf")


# ---- the benchmarks' floors -------------------------------------------------------------

def _split(events: Iterable) -> tuple[list, list[TransactionEvent]]:
    reference, trades = [], []
    for event in events:
        (trades if isinstance(event, TransactionEvent) else reference).append(event)
    return reference, trades


async def ingest_floor(writer: ResultWriter, reference: Iterable, trades: Sequence[TransactionEvent]) -> Timing:
    """`bench ingest`: cost every trade and write its rows."""
    floor = Floor(writer)
    floor.reference_events(reference)
    floor.start()
    for trade in trades:
        floor.transaction(trade)
        await floor.flush(full_only=True)
    return await floor.stop()


def decode_seconds(raws: Iterable[bytes]) -> float:
    """Time to decode trades from their JSON with the event model, as the positions role
    does first with each message."""
    from epochflow.schemas.events import parse_transaction

    started = time.perf_counter()
    for raw in raws:
        parse_transaction(raw)
    return time.perf_counter() - started


async def _loaded(floor: Floor, events: Iterable, keys: Sequence[tuple[str, str]]) -> date:
    """Set-up, not measured: the workload's keys costed, valued to the business date,
    CURRENT, their rows in PostgreSQL. Returns the business date."""
    reference, trades = _split(events)
    floor.reference_events(reference)
    for trade in trades:
        floor.transaction(trade)
    last = floor.reference.business_date()
    if last is None:
        raise ValueError("the workload has no business date")
    for portfolio_id, security_id in keys:
        first = floor.state(portfolio_id, security_id).first_open_date
        if first is not None:
            floor.value_days(portfolio_id, security_id, first, last)
        floor.advance(portfolio_id, security_id, last)
        await floor.flush(full_only=True)
    await floor.flush()
    return last


async def replay_floor(writer: ResultWriter, events: Iterable, key: tuple[str, str],
                       lates: Sequence[TransactionEvent]) -> list[Timing]:
    """`bench replay`: per back-dated trade, in order, the key's epoch replay (history
    re-costed and re-emitted from the trade's date), every day from that date valued in
    the new epoch, the key CURRENT again."""
    floor = Floor(writer)
    last = await _loaded(floor, events, [key])
    timings = []
    for late in lates:
        floor.start()
        floor.transaction(late)
        floor.value_days(*key, late.transaction_date.date(), last)
        floor.advance(*key, last)
        timings.append(await floor.stop())
    return timings


async def fanout_floor(writer: ResultWriter, events: Iterable, security_id: str, correction) -> Timing:
    """`bench fanout`: a corrected price (a MarketPriceEvent), then every holder of the
    security reset to the day before it, its days from it revalued, CURRENT again."""
    floor = Floor(writer)
    reference, trades = _split(events)
    holders = sorted({t.portfolio_id for t in trades if t.security_id == security_id})
    last = await _loaded(floor, events, [(p, security_id) for p in holders])
    floor.start()
    floor.reference_events([correction])
    for portfolio_id in holders:
        floor.reset(portfolio_id, security_id, correction.price_date - DAY, "floor-correction")
        floor.value_days(portfolio_id, security_id, correction.price_date, last)
        floor.advance(portfolio_id, security_id, last)
        await floor.flush(full_only=True)
    return await floor.stop()
