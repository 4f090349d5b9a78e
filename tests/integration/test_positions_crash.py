"""A positions worker SIGKILLed in the middle of a large replay, restarted by the
supervisor, ends in exactly the PostgreSQL state an undisturbed run produces.

The key has a long history (3,000 transactions over 1,000 days: BUYs with periodic SELLs),
its watermark is advanced to the last day, then a BUY dated near the start arrives: the
epoch is bumped and the whole history (3,001 rows) is replayed under epoch 1. The worker
is killed twice while that replay is in flight:

1. right after the back-dated BUY is published (before or while the worker works on it;
   its offset is not committed, so the restarted worker gets it again);
2. once the restarted worker's replay output reaches the results topic (the step's table
   writes, changelog records and result messages sent, the input normally not committed
   yet, the sink not done): the next worker recovers the tables and gets the BUY again.

The expected state is computed by the pure core: the same events through
`PositionsHandler` over in-memory stores, its result rows applied to a model of the
sink's upserts (`sinks/writer.py`).

Two restart flavours: a worker that rebuilds its tables from the changelog topics alone
(local RocksDB state wiped at every start, like a container without a persistent disk),
and one that keeps its local state, as `epochflow up` does. Both must pass every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.schemas.commands import AdvanceWatermark
from epochflow.schemas.events import BusinessDateEvent, InstrumentEvent, PortfolioEvent, TransactionEvent
from epochflow.schemas.results import HistoryCarryOver, PositionHistoryRow, PositionStateRow, TransactionRow
from epochflow.sinks.models import position_history
from epochflow.sinks.reads.api import fetch_position_history
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.scenario import count_position_history, fetch_transactions
from epochflow.streams.admin import consumer_lag
from epochflow.streams.names import topic_name
from epochflow.streams.partitioning import partition_for
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore
from tests.fixtures.ephemeral_worker import ephemeral_command
from tests.fixtures.stack import POSITIONS_ONLY, advance_to, key_of, log_tail, running_stack, transaction

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PORTFOLIO, SECURITY = "CRASH_PF", "CRASH_SEC"
KEY = key_of(PORTFOLIO, SECURITY)
WORKER = "positions-0"
FIRST_DAY = date(2022, 1, 3)
DAYS = 1000
TXNS = 3000


# ---- the events ---------------------------------------------------------------------------


def long_history() -> list[TransactionEvent]:
    """Three transactions a day; every fifth is a SELL of 15, which never oversells (the
    four BUYs before it add at least 40)."""
    events = []
    for n in range(TXNS):
        day = FIRST_DAY + timedelta(days=n * DAYS // TXNS)
        hour = 9 + 2 * (n % 3)
        if n % 5 == 4:
            events.append(transaction(f"CR{n:05d}", PORTFOLIO, SECURITY, "SELL", day, 15,
                                      Decimal(25) + Decimal(n % 11) / 4, hour=hour, fee="1.5"))
        else:
            events.append(transaction(f"CR{n:05d}", PORTFOLIO, SECURITY, "BUY", day, 10 + n % 7,
                                      Decimal(20) + Decimal(n % 13) / 2, hour=hour, fee=n % 3))
    return events


HISTORY = long_history()
LAST_DAY = HISTORY[-1].transaction_date.date()
REFERENCE = [
    PortfolioEvent(portfolio_id=PORTFOLIO, base_currency="USD", open_date=FIRST_DAY),
    InstrumentEvent(security_id=SECURITY, currency="USD"),
    BusinessDateEvent(date=LAST_DAY),
]
# back-dated: its lot goes in front of nearly every other, so FIFO re-costs every SELL
LATE = transaction("CR_LATE", PORTFOLIO, SECURITY, "BUY", FIRST_DAY + timedelta(days=2), 7, 18, hour=12)


# ---- the expected state: the pure core and a model of the sink ------------------------------


@dataclass
class SinkModel:
    """The upsert rules of sinks/writer.py for the row kinds the positions role sends."""

    transactions: dict[str, TransactionRow] = field(default_factory=dict)
    history: dict[tuple[int, str], PositionHistoryRow] = field(default_factory=dict)  # (epoch, txn id)
    state: PositionStateRow | None = None

    def write(self, rows: list) -> None:
        for row in rows:
            if isinstance(row, TransactionRow):
                old = self.transactions.get(row.transaction_id)
                if old is None or row.epoch >= old.epoch:
                    self.transactions[row.transaction_id] = row
            elif isinstance(row, PositionHistoryRow):
                self.history[(row.epoch, row.transaction_id)] = row
            elif isinstance(row, HistoryCarryOver):
                for (epoch, transaction_id), old in list(self.history.items()):
                    if epoch == row.from_epoch and old.position_date < row.before_date:
                        self.history.setdefault((row.to_epoch, transaction_id), old.model_copy(update={"epoch": row.to_epoch}))
            elif isinstance(row, PositionStateRow):
                if self.state is None or (row.epoch, row.version) >= (self.state.epoch, self.state.version):
                    self.state = row

    def epoch_history(self, epoch: int) -> list[PositionHistoryRow]:
        return sorted((r for (e, _), r in self.history.items() if e == epoch), key=lambda r: (r.seq, r.transaction_id))


def expected_sink(generation: int, partitions: int) -> SinkModel:
    handler = PositionsHandler(
        MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(),
        ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore()),
        clock=lambda: datetime(2025, 1, 1, tzinfo=UTC),
    )
    partition = partition_for(KEY, partitions)
    sink = SinkModel()
    for event in REFERENCE:
        sink.write(handler.on_reference(event, partition))
    for event in HISTORY:
        sink.write(handler.on_transaction(event, partition))
    assert sink.state is not None and sink.state.generation == generation
    sink.write(handler.on_command(AdvanceWatermark(
        portfolio_id=PORTFOLIO, security_id=SECURITY, epoch=0, generation=generation, to_date=LAST_DAY)))
    sink.write(handler.on_transaction(LATE, partition))
    return sink


# ---- the run ------------------------------------------------------------------------------

class WorkerCrashed(AssertionError):
    """The worker under test died without being killed (its log says why)."""


# Commits far apart: a kill cannot race a commit of the step it interrupts, and the
# restarted worker gets the uncommitted input again.
COMMIT_INTERVAL_S = 5
WORKER_ENV = {
    "EPOCHFLOW_COMMIT_INTERVAL_S": str(COMMIT_INTERVAL_S),
    # a killed member holds its partitions until its session expires: keep that short
    "EPOCHFLOW_SESSION_TIMEOUT_S": "6",
    "EPOCHFLOW_HEARTBEAT_S": "0.5",
}


@pytest.fixture(params=[
    pytest.param("changelog_only", id="restart_from_changelog"),
    pytest.param("local_state_kept", id="restart_with_local_state"),
])
def stack(request) -> Iterator[EmbeddedStack]:
    options = {"command": ephemeral_command} if request.param == "changelog_only" else {}
    with running_stack(POSITIONS_ONLY, worker_env=WORKER_ENV, **options) as running:
        yield running



async def epoch1_rows(pipeline: Pipeline) -> int:
    return await count_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=1)


class Watch:
    """The worker under test: fails fast (with its log) when it crashes on its own, and
    tells when the results topic partition of the key gets new messages."""

    def __init__(self, stack: EmbeddedStack, pipeline: Pipeline) -> None:
        self.stack = stack
        self.pipeline = pipeline
        self.kills = 0
        self.partition = partition_for(KEY, pipeline.settings.partitions)
        self.results = TopicPartition(topic_name(pipeline.settings, "results"), self.partition)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.settings.kafka_bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=5)

    async def __aenter__(self) -> Watch:
        await self.consumer.start()
        self.consumer.assign([self.results])
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    def check_alive(self) -> None:
        status = self.stack.supervisor.status(WORKER)
        if status.restarts > self.kills or status.state == "failed":
            raise WorkerCrashed(f"{WORKER} crashed by itself after {self.kills} kill(s):\n{log_tail(self.stack, WORKER)}")

    async def kill(self) -> int:
        """SIGKILL the worker; returns the key's uncommitted transactions (lag) at death."""
        pid = self.stack.supervisor.kill(WORKER)
        self.kills += 1
        lag = await consumer_lag(self.pipeline.settings.kafka_bootstrap, f"{self.pipeline.settings.topic_prefix}-positions",
                                 [topic_name(self.pipeline.settings, "transactions")])
        await asyncio.to_thread(self.stack.supervisor.wait_for_pid, WORKER, pid, 30)
        return next(iter(lag.values()))[self.partition]

    async def catch_up(self) -> None:
        """Read the results partition to its end (the fetch high watermark)."""
        self.consumer.seek(self.results, 0)
        deadline = time.monotonic() + 30
        while self.consumer.highwater(self.results) is None or \
                await self.consumer.position(self.results) < self.consumer.highwater(self.results):
            assert time.monotonic() < deadline, "could not read the results topic"
            await self.consumer.getmany(self.results, timeout_ms=50)

    async def new_results(self, timeout_s: float = 60) -> None:
        """Wait for the next message on the results partition (after `catch_up`)."""
        deadline = time.monotonic() + timeout_s
        while not (await self.consumer.getmany(self.results, timeout_ms=5)).get(self.results):
            self.check_alive()
            assert time.monotonic() < deadline, f"no replay output within {timeout_s}s:\n{log_tail(self.stack, WORKER)}"

    async def quiesce(self, timeout_s: float = 120) -> None:
        task = asyncio.ensure_future(self.pipeline.quiesce(timeout_s))
        try:
            while not task.done():
                self.check_alive()
                await asyncio.wait([task], timeout=0.2)
        finally:
            task.cancel()
        await task


async def all_committed(pipeline: Pipeline, timeout_s: float = 30) -> None:
    """Wait until the positions group has committed everything it consumed."""
    settings = pipeline.settings
    inputs = [topic_name(settings, t) for t in ("transactions", "reference", "position-commands")]
    deadline = time.monotonic() + timeout_s
    while any(sum(parts.values()) for parts in (await consumer_lag(settings.kafka_bootstrap, f"{settings.topic_prefix}-positions", inputs)).values()):
        assert time.monotonic() < deadline, "the positions worker did not commit its input"
        await asyncio.sleep(0.2)


async def test_a_worker_killed_during_a_replay_ends_like_an_undisturbed_run(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    started = time.monotonic()
    await pipeline.publish(REFERENCE)
    await pipeline.quiesce(60)
    await pipeline.publish(HISTORY)
    await pipeline.quiesce(90)
    assert await count_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=0) == TXNS
    state = await advance_to(pipeline, PORTFOLIO, SECURITY, LAST_DAY)
    await pipeline.quiesce(60)
    await all_committed(pipeline)  # so what the kills leave uncommitted is the replay only
    loaded = time.monotonic()

    async with Watch(stack, pipeline) as watch:
        await pipeline.publish([LATE])
        lag_1 = await watch.kill()  # 1. right after publishing
        rows_1 = await epoch1_rows(pipeline)
        await watch.catch_up()
        await watch.new_results()  # the restarted worker's replay is on the results topic
        lag_2 = await watch.kill()  # 2. in the middle of delivering it
        rows_2 = await epoch1_rows(pipeline)
        await watch.quiesce(120)
        watch.check_alive()
    print(f"\nload {loaded - started:.1f}s, kills and recovery {time.monotonic() - loaded:.1f}s; "
          f"at kill 1: {lag_1} uncommitted, {rows_1} epoch-1 rows in PostgreSQL; "
          f"at kill 2: {lag_2} uncommitted, {rows_2} epoch-1 rows")
    assert lag_1 >= 1  # the back-dated BUY was not committed when the worker died
    assert rows_1 < TXNS + 1

    expected = expected_sink(state["generation"], pipeline.settings.partitions)

    # position_state: every stored column (updated_at is the worker's clock)
    actual_state = await position(pipeline.engine, PORTFOLIO, SECURITY)
    want = expected.state.model_dump(exclude={"updated_at", "txn_count", "changed_from", "ref_floor", "kind"})
    got = {k: v for k, v in actual_state.items() if k in want}
    assert got == want
    assert (got["epoch"], got["status"], got["watermark_date"]) == (1, "REPROCESSING", LATE.transaction_date.date() - timedelta(days=1))

    # the whole history in epoch 1, once per transaction, equal to the core's
    history = await fetch_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=1)
    assert len(history) == TXNS + 1 == await epoch1_rows(pipeline)
    assert len({r.transaction_id for r in history}) == len(history)
    assert [r.model_dump() for r in history] == [r.model_dump() for r in expected.epoch_history(1)]
    # epoch 0 untouched, and no further epoch was opened by the re-deliveries
    assert [r.model_dump() for r in await fetch_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=0)] == [
        r.model_dump() for r in expected.epoch_history(0)
    ]
    async with pipeline.engine.connect() as conn:
        epochs = (await conn.execute(
            select(position_history.c.epoch, func.count()).where(position_history.c.portfolio_id == PORTFOLIO)
            .group_by(position_history.c.epoch).order_by(position_history.c.epoch)
        )).all()
    assert [tuple(row) for row in epochs] == [(0, TXNS), (1, TXNS + 1)]

    # every transaction row, with the replay's costs and realized P&L
    transactions = await fetch_transactions(pipeline.engine, PORTFOLIO, SECURITY)
    assert len(transactions) == TXNS + 1
    # (updated_at is the worker's clock, when it emitted the row)
    assert {r.transaction_id: r.model_dump(exclude={"updated_at"}) for r in transactions} == {
        i: r.model_dump(exclude={"updated_at"}) for i, r in expected.transactions.items()
    }
