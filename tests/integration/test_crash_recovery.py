"""The positions, scheduler and valuation workers SIGKILLed at random moments while back-dated
transactions are replayed and revalued, restarted by the supervisor: once the pipeline
settles, PostgreSQL holds exactly what an undisturbed run of the same events gives.

Three keys (two portfolios on one security, a third on another), 250 transactions each
over 180 days (BUYs with regular SELLs), daily prices with a gap every week; valued in
epoch 0 up to the business date. Then three rounds: a back-dated BUY for every key, each
round earlier than the last (so each one bumps the epoch whatever the progress of the
previous replay: 0 -> 1 -> 2 -> 3) and a SIGKILL of a worker picked at random after a
random delay (seeded). Every back-dated BUY goes in front of nearly every lot, so FIFO
re-costs every SELL, and each key is revalued from the BUY's date to the business date.

The expected state comes from the pure core, not from the engine: the same transactions
in date order through `PositionsHandler` over in-memory stores (final history, position
and transaction figures), and every day valued with `domain.valuation.value_position`.

Two restart flavours: workers that keep their local RocksDB state (as `epochflow up`
restarts them) and workers that rebuild their tables from the changelog topics alone
(`tests/fixtures/ephemeral_worker.py`). A worker that crashes by itself after a restart,
or a pipeline where nothing moves for a minute, fails the test at once with the details.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.client import NotQuiescent, Pipeline
from epochflow.devstack.ports import port_open
from epochflow.devstack.stack import EmbeddedStack
from epochflow.domain.valuation import DailyPosition, Price, value_position
from epochflow.schemas.events import TransactionEvent
from epochflow.schemas.results import PositionHistoryRow, PositionStateRow, TransactionRow
from epochflow.sinks.models import daily_position_snapshots, portfolio_valuation_jobs, position_history, position_state
from epochflow.sinks.reads.api import fetch_position_history, fetch_snapshots, fetch_valuation_jobs
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.quiescence import pipeline_activity
from epochflow.sinks.reads.scenario import count_position_history, fetch_positions, fetch_transactions
from epochflow.streams.partitioning import partition_for
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore
from epochflow.topology import ROLE_NAMES
from tests.fixtures.ephemeral_worker import ephemeral_command
from tests.fixtures.stack import key_of, log_tail, running_stack, transaction
from tests.fixtures.valuation import DAY, business_dates, days, instrument, portfolio, price, snap

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SEED = 20250917
FIRST_DAY = date(2024, 3, 4)
SPAN_DAYS = 180
BUSINESS_DATE = FIRST_DAY + (SPAN_DAYS - 1) * DAY
TXNS_PER_KEY = 250
KEYS = (("CRR_P1", "CRR_S1"), ("CRR_P2", "CRR_S1"), ("CRR_P3", "CRR_S2"))
SECURITIES = ("CRR_S1", "CRR_S2")
# one back-dated BUY per key and round; each round earlier than the previous minus a day
ROUND_DAYS = (FIRST_DAY + 40 * DAY, FIRST_DAY + 20 * DAY, FIRST_DAY + 5 * DAY)
VICTIMS = ("positions-0", "scheduler-0", "valuation-0")
MAX_KILL_DELAY_S = 2.5
# a job dispatched to a valuation worker that died is reclaimed after this (default 60 s)
PROCESSING_TIMEOUT_S = 20
SETTLE_S = 180.0
STALLED_AFTER_S = 60.0


# ---- the events -----------------------------------------------------------------------------


def key_history(index: int, portfolio_id: str, security_id: str) -> list[TransactionEvent]:
    """BUYs of 10..16 with a SELL of 15 every fourth transaction (never an oversell: the
    three BUYs before it add at least 30)."""
    events = []
    for n in range(TXNS_PER_KEY):
        day = FIRST_DAY + (n * SPAN_DAYS // TXNS_PER_KEY) * DAY
        hour = 9 + n % 2 * 4
        tid = f"CRR{index}_{n:04d}"
        if n % 4 == 3:
            events.append(transaction(tid, portfolio_id, security_id, "SELL", day, 15,
                                      Decimal(30) + Decimal((n + index) % 9) / 4, hour=hour, fee="2.5"))
        else:
            events.append(transaction(tid, portfolio_id, security_id, "BUY", day, 10 + (n + index) % 7,
                                      Decimal(20) + Decimal((n * 3 + index) % 13) / 2, hour=hour, fee=n % 3))
    return events


HISTORIES = {key_of(p, s): key_history(i, p, s) for i, (p, s) in enumerate(KEYS)}
BACKDATED = [
    [transaction(f"CRR{i}_LATE{r}", p, s, "BUY", day, 7 + r, 15 + r, hour=11) for i, (p, s) in enumerate(KEYS)]
    for r, day in enumerate(ROUND_DAYS)
]
PRICES = {
    security: {
        day: Decimal(25) + Decimal((n * (5 + j)) % 17) / 2
        for n, day in enumerate(days(FIRST_DAY, BUSINESS_DATE))
        if n % 7 != 4  # a weekly gap: that day is valued with the previous price (stale)
    }
    for j, security in enumerate(SECURITIES)
}
REFERENCE = [
    *(portfolio(p, FIRST_DAY - 60 * DAY) for p, _ in KEYS),
    *(instrument(s) for s in SECURITIES),
    *(price(s, day, value) for s, series in PRICES.items() for day, value in series.items()),
    *business_dates(BUSINESS_DATE - 2 * DAY, BUSINESS_DATE),
]


# ---- the expected state: the pure core ------------------------------------------------------


@dataclass
class Expected:
    state: PositionStateRow
    history: list[PositionHistoryRow]  # in seq order
    transactions: dict[str, TransactionRow]
    snapshots: list[tuple]  # `snap` tuples, one per day from the first transaction date


def expected_for(portfolio_id: str, security_id: str, events: list[TransactionEvent], partitions: int) -> Expected:
    handler = PositionsHandler(
        MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(),
        ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore()),
        clock=lambda: datetime(2025, 1, 1, tzinfo=UTC),
    )
    partition = partition_for(key_of(portfolio_id, security_id), partitions)
    for event in REFERENCE:
        handler.on_reference(event, partition)
    state, history, txns = None, {}, {}
    # in order, and never valued in between: one epoch, nothing back-dated
    for event in sorted(events, key=lambda e: (e.transaction_date, e.transaction_id)):
        for row in handler.on_transaction(event, partition):
            if isinstance(row, PositionStateRow):
                state = row
            elif isinstance(row, PositionHistoryRow):
                history[row.transaction_id] = row
            elif isinstance(row, TransactionRow):
                txns[row.transaction_id] = row
    assert state is not None and state.epoch == 0
    rows = sorted(history.values(), key=lambda r: (r.seq, r.transaction_id))
    snapshots = []
    series = PRICES[security_id]
    for day in days(rows[0].position_date, BUSINESS_DATE):
        last = [r for r in rows if r.position_date <= day][-1]
        eod = DailyPosition(last.position_date, last.quantity, last.cost_basis_local, last.cost_basis)
        priced = max((d for d in series if d <= day), default=None)
        quote = None if priced is None else Price(priced, series[priced], "USD")
        valued = value_position(day, security_id, portfolio_id, eod, quote, "USD", "USD", Decimal(1))
        assert not valued.blocked, valued
        s = valued.snapshot
        snapshots.append((day, s.quantity, s.cost_base, s.cost_local, s.market_price, s.market_value,
                          s.market_value_local, s.unrealized, s.unrealized_local, s.status.value))
    return Expected(state, rows, txns, snapshots)


# ---- the run --------------------------------------------------------------------------------


@pytest.fixture(params=["local_state_kept", "changelog_only"])
def stack(request) -> Iterator[EmbeddedStack]:
    """Workers restarted as `epochflow up` restarts them (their RocksDB state kept), or
    with their local state wiped at every start, rebuilding their tables from the
    changelog topics alone (like a container without a persistent disk)."""
    options = {"command": ephemeral_command} if request.param == "changelog_only" else {}
    with running_stack(ROLE_NAMES, worker_env={"EPOCHFLOW_PROCESSING_TIMEOUT_S": str(PROCESSING_TIMEOUT_S)},
                       **options) as running:
        yield running



async def statuses(pipeline: Pipeline) -> dict[str, tuple[int, str]]:
    rows = await fetch_positions(pipeline.engine)
    return {key_of(r.portfolio_id, r.security_id): (r.epoch, r.status) for r in rows}


class Chaos:
    """Kills workers, and tells a worker that crashed by itself (more restarts than kills:
    a restarted worker that cannot recover) from one it killed."""

    def __init__(self, stack: EmbeddedStack, pipeline: Pipeline) -> None:
        self.stack = stack
        self.pipeline = pipeline
        self.kills = dict.fromkeys(VICTIMS, 0)
        self.story: list[str] = []
        self.during_replay = 0  # kills before the round's replay was done

    def check_alive(self) -> None:
        for name in self.stack.supervisor.names():
            status = self.stack.supervisor.status(name)
            if status.restarts > self.kills.get(name, 0) or status.state == "failed":
                pytest.fail(f"{name} crashed by itself after {self.kills.get(name, 0)} kill(s) (restarts "
                            f"{status.restarts}, last exit {status.last_exit_code}):\n{log_tail(self.stack, name)}")

    async def kill(self, victim: str) -> None:
        """SIGKILL, then wait until the restarted worker serves its web port again."""
        supervisor = self.stack.supervisor
        pid = supervisor.kill(victim)
        self.kills[victim] += 1
        await asyncio.to_thread(supervisor.wait_for_pid, victim, pid, 30)
        port = next(w.web_port for w in self.stack.workers if w.name == victim)
        deadline = time.monotonic() + 60
        while not port_open(port):
            self.check_alive()
            assert time.monotonic() < deadline, f"{victim} not serving again:\n{log_tail(self.stack, victim)}"
            await asyncio.sleep(0.1)

    async def rounds(self, rng: random.Random) -> None:
        """Each round: publish the round's back-dated BUYs, wait a random delay and SIGKILL
        a worker (each worker once, in a random order)."""
        victims = list(VICTIMS)
        rng.shuffle(victims)
        for r, (events, victim) in enumerate(zip(BACKDATED, victims, strict=True)):
            await self.pipeline.publish(events)
            delay = rng.uniform(0.0, MAX_KILL_DELAY_S)
            await asyncio.sleep(delay)
            seen = await statuses(self.pipeline)
            await self.kill(victim)
            # the round's replay not yet done: its epoch not reached, or still being valued
            self.during_replay += any(status != (r + 1, "CURRENT") for status in seen.values())
            self.story.append(f"round {r}: {victim} killed {delay:.2f}s after the back-dated BUYs (keys: {seen})")

    async def settle(self, timeout_s: float) -> float:
        """`pipeline.settle`, failing fast when a worker crash-loops or when nothing has
        moved in PostgreSQL for STALLED_AFTER_S while keys are still not valued (longer
        than a group rejoin plus a job reclaim), and saying what is stuck."""
        task = asyncio.ensure_future(self.pipeline.settle(timeout_s))
        fingerprint, since = None, time.monotonic()
        try:
            while not task.done():
                self.check_alive()
                await asyncio.wait([task], timeout=1.0)
                activity = await pipeline_activity(self.pipeline.engine, BUSINESS_DATE)
                if activity["fingerprint"] != fingerprint or not activity["not_settled_count"]:
                    fingerprint, since = activity["fingerprint"], time.monotonic()
                elif time.monotonic() - since > STALLED_AFTER_S:
                    pytest.fail(f"stalled: nothing changed in PostgreSQL for {STALLED_AFTER_S:.0f}s\n"
                                f"{await describe_pipeline(self.pipeline)}")
        finally:
            task.cancel()
        try:
            return await task
        except NotQuiescent as error:
            pytest.fail(f"{error}\n{await describe_pipeline(self.pipeline)}")


def history_view(row: PositionHistoryRow) -> tuple:
    return (row.transaction_id, row.position_date, row.quantity, row.cost_basis, row.cost_basis_local,
            row.held_since_date)


async def describe_pipeline(pipeline: Pipeline) -> str:
    """Keys (epoch, status, watermark) and their jobs by (epoch, status), for a failure message."""
    engine = pipeline.engine
    lines = [f"activity: {await pipeline_activity(engine, BUSINESS_DATE)}"]
    for state in await fetch_positions(engine):
        jobs = await fetch_valuation_jobs(engine, state.portfolio_id, state.security_id, limit=100_000)
        by_status: dict[tuple[int, str], list[date]] = {}
        for job in jobs:
            by_status.setdefault((job.epoch, job.status), []).append(job.valuation_date)
        summary = {k: f"{len(v)} ({min(v)}..{max(v)})" for k, v in sorted(by_status.items())}
        lines.append(f"{state.portfolio_id}|{state.security_id}: epoch {state.epoch} version {state.version} "
                     f"generation {state.generation} {state.status} watermark {state.watermark_date}; jobs {summary}")
    return "\n".join(lines)


async def test_workers_killed_during_replays_end_like_an_undisturbed_run(
    stack: EmbeddedStack, pipeline: Pipeline
) -> None:
    started = time.monotonic()
    await pipeline.publish(REFERENCE)
    await pipeline.publish([e for events in HISTORIES.values() for e in events])
    await pipeline.settle(SETTLE_S)
    assert await statuses(pipeline) == {key_of(p, s): (0, "CURRENT") for p, s in KEYS}
    loaded = time.monotonic()

    chaos = Chaos(stack, pipeline)
    try:
        await chaos.rounds(random.Random(SEED))
        await chaos.settle(SETTLE_S)
    finally:
        print(f"\ninitial load {loaded - started:.1f}s; " + "; ".join(chaos.story)
              + f"; settled {time.monotonic() - loaded:.1f}s after the first round")
    chaos.check_alive()
    assert chaos.during_replay >= 2, "the kills missed the replays: make them longer or the delays shorter"
    assert {name: stack.supervisor.status(name).restarts for name in VICTIMS} == dict.fromkeys(VICTIMS, 1)

    engine = pipeline.engine
    final_epoch = len(BACKDATED)
    async with engine.connect() as conn:
        reprocessing = (await conn.execute(
            select(func.count()).select_from(position_state).where(position_state.c.status == "REPROCESSING"))).scalar_one()
    assert reprocessing == 0

    for index, (p, s) in enumerate(KEYS):
        key = key_of(p, s)
        events = HISTORIES[key] + [round_events[index] for round_events in BACKDATED]
        expected = expected_for(p, s, events, pipeline.settings.partitions)

        # position_state
        state = await position(engine, p, s)
        assert (state["epoch"], state["status"], state["watermark_date"]) == (final_epoch, "CURRENT", BUSINESS_DATE), key
        figures = ("quantity", "cost_basis", "cost_basis_local", "held_since_date", "first_open_date",
                   "last_transaction_date")
        assert {f: state[f] for f in figures} == {f: getattr(expected.state, f) for f in figures}, key

        # the current epoch's history: one row per transaction, equal to the core's
        history = await fetch_position_history(engine, p, s)
        assert await count_position_history(engine, p, s, epoch=final_epoch) == len(events) == len(history), key
        assert [history_view(r) for r in history] == [history_view(r) for r in expected.history], key

        # every transaction's cost and realized P&L
        money = ("net_cost", "net_cost_local", "realized_gain_loss", "realized_gain_loss_local", "flags")
        stored = {t.transaction_id: t for t in await fetch_transactions(engine, p, s)}
        assert set(stored) == {e.transaction_id for e in events}, key
        wrong = {
            tid: ([getattr(stored[tid], m) for m in money], [getattr(want, m) for m in money])
            for tid, want in expected.transactions.items()
            if [getattr(stored[tid], m) for m in money] != [getattr(want, m) for m in money]
        }
        assert not wrong, f"{key}: {len(wrong)} transactions differ, e.g. {list(wrong.items())[:3]}"

        # one snapshot per day of the current epoch, each equal to the core's valuation
        snapshots = [snap(r) for r in await fetch_snapshots(engine, p, s, epoch=final_epoch)]
        assert [row[0] for row in snapshots] == days(expected.history[0].position_date, BUSINESS_DATE), key
        wrong_days = [(want, got) for want, got in zip(expected.snapshots, snapshots) if want != got]
        assert not wrong_days, f"{key}: {len(wrong_days)} snapshots differ, e.g. {wrong_days[:2]}"

        # no job of the current epoch left open
        async with engine.connect() as conn:
            j = portfolio_valuation_jobs.c
            open_jobs = (await conn.execute(select(func.count()).select_from(portfolio_valuation_jobs).where(
                j.portfolio_id == p, j.security_id == s, j.epoch == final_epoch,
                j.status.in_(("PENDING", "PROCESSING", "FAILED"))))).scalar_one()
        assert open_jobs == 0, key

    # nothing of an epoch past the final one
    async with engine.connect() as conn:
        for table in (position_history, daily_position_snapshots, portfolio_valuation_jobs):
            assert (await conn.execute(select(func.max(table.c.epoch)))).scalar_one() == final_epoch, table.name
