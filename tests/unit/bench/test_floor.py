"""The benchmarks' floor (epochflow.bench.floor): the same work as the engine, through the
domain core, its rows handed to a writer in batches. A writer that keeps the rows stands
in for PostgreSQL."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from epochflow.bench.floor import (
    daily_positions,
    decode_seconds,
    end_of_days,
    fanout_floor,
    ingest_floor,
    overhead,
    replay_floor,
)
from epochflow.bench.workloads import START, fanout_workload, ingest_workload, late_trade, replay_workload
from epochflow.domain.valuation import DailyPosition, end_of_day
from epochflow.schemas.events import MarketPriceEvent


class KeptRows:
    """A ResultWriter's `write`, keeping the batches."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    async def write(self, rows) -> None:
        self.batches.append(list(rows))

    def rows(self, kind: str, since: int = 0) -> list:
        return [row for batch in self.batches[since:] for row in batch if row.kind == kind]


def test_end_of_days_is_the_domain_end_of_day_of_each_day() -> None:
    rng = random.Random(7)
    positions = sorted(
        (DailyPosition(START + timedelta(days=rng.randrange(60)), Decimal(n), Decimal(n), Decimal(n)) for n in range(40)),
        key=lambda p: p.day,
    )
    days = [START + timedelta(days=d) for d in range(-3, 70)]
    assert end_of_days(positions, days) == [end_of_day(positions, day) for day in days]


async def test_the_ingest_floor_costs_every_trade_and_writes_its_rows_in_batches() -> None:
    writer = KeptRows()
    reference, trades = ingest_workload("F", 120, 12)
    timing = await ingest_floor(writer, reference, trades)
    assert len(writer.rows("transaction")) == len(writer.rows("position_history")) == 120
    assert {row.transaction_id for row in writer.rows("transaction")} == {t.transaction_id for t in trades}
    assert all(len(batch) <= 2000 for batch in writer.batches)
    assert timing.rows == sum(len(b) for b in writer.batches) and timing.floor_s >= timing.write_s > 0
    # rounds 3 and 7 sell 5, the other eight buy 10: each key ends holding 70
    states = {row.portfolio_id + row.security_id: row for row in writer.rows("position_state")}
    assert {row.quantity for row in states.values()} == {Decimal(70)}


def test_decoding_is_timed_on_the_trades_json() -> None:
    _, trades = ingest_workload("F", 50, 5)
    assert decode_seconds([t.model_dump_json().encode() for t in trades]) > 0


async def test_the_replay_floor_replays_the_key_and_values_every_day_from_the_late_trade() -> None:
    writer = KeptRows()
    h = 40
    events, key = replay_workload(h, prefix="FL")
    lates = [late_trade(*key, h, fraction) for fraction in (0.1, 0.5)]
    timings = await replay_floor(writer, events, key, lates)
    assert len(timings) == 2 and all(t.floor_s > 0 and t.rows > 0 for t in timings)
    snapshots = writer.rows("snapshot")
    assert len([s for s in snapshots if s.epoch == 0]) == h  # the set-up valued every day
    # the first late trade (day 4) opens epoch 1: days 4..39 valued again, one more held
    epoch1 = [s for s in snapshots if s.epoch == 1]
    assert sorted(s.date for s in epoch1) == [START + timedelta(days=d) for d in range(4, h)]
    before = {s.date: s.quantity for s in snapshots if s.epoch == 0}
    assert all(s.quantity == before[s.date] + 1 for s in epoch1)
    assert len([s for s in snapshots if s.epoch == 2]) == h - 20
    carries = writer.rows("history_carry")
    assert [(c.from_epoch, c.to_epoch, c.before_date) for c in carries] == [
        (0, 1, START + timedelta(days=4)), (1, 2, START + timedelta(days=20))]
    last_state = writer.rows("position_state")[-1]
    assert (last_state.epoch, last_state.status, last_state.watermark_date) == (2, "CURRENT", START + timedelta(days=h - 1))


async def test_the_fanout_floor_revalues_every_holders_days_from_the_corrected_one() -> None:
    writer = KeptRows()
    n, days = 6, 14
    events, last = fanout_workload(n, days, security="FLOOR_SEC", prefix="FL", live=False)
    corrected = last - timedelta(days=4)
    correction = MarketPriceEvent(security_id="FLOOR_SEC", price_date=corrected, price=Decimal("1234.5"), currency="USD")
    timing = await fanout_floor(writer, events, "FLOOR_SEC", correction)
    assert timing.floor_s > 0
    snapshots = writer.rows("snapshot")
    assert len(snapshots) == n * days + n * 5  # the set-up, then 5 days of each holder again
    revalued = snapshots[n * days:]
    assert {s.portfolio_id for s in revalued} == {f"FL{p:05d}" for p in range(n)}
    assert {s.market_price for s in revalued if s.date == corrected} == {Decimal("1234.5")}
    assert all(s.market_price != Decimal("1234.5") for s in revalued if s.date > corrected)  # priced that day
    states = {row.portfolio_id: row for row in writer.rows("position_state")}
    assert {(s.status, s.watermark_date, s.epoch) for s in states.values()} == {("CURRENT", last, 0)}
    jobs = writer.rows("valuation_job")
    assert {j.status for j in jobs} == {"COMPLETE"} and len(jobs) == n * days + n * 5


def test_daily_positions_of_a_key_without_history_are_none() -> None:
    from epochflow.domain.model import PositionState

    assert daily_positions(PositionState("P", "S"), lambda week: None) == []


def test_overhead_is_the_engine_over_the_floor() -> None:
    assert overhead(12.0, 4.0) == 3.0
    assert overhead(1.0, 0.0) == float("inf")


@pytest.mark.parametrize("first,last,count", [(date(2024, 1, 1), date(2024, 1, 1), 1), (date(2024, 1, 1), date(2024, 1, 31), 31)])
def test_days_between_counts_both_ends(first: date, last: date, count: int) -> None:
    from epochflow.bench.floor import days_between

    assert len(days_between(first, last)) == count
