"""A positions worker SIGKILLed in the middle of a large replay, restarted by the
supervisor, ends in exactly the PostgreSQL state an undisturbed run produces.

The key has a long history (3,000 transactions over 1,000 days: BUYs with periodic SELLs),
its watermark is advanced to the last day, then a BUY dated near the start arrives: the
epoch is bumped and the whole history is replayed under epoch 1. The worker is killed
while that replay is on its way (the step computed, its table writes, changelog records
and result messages partly or not at all delivered), and again once the first epoch-1
rows show in PostgreSQL if the first kill came too early to see any.

The expected state is computed by the pure core: the same events through
`PositionsHandler` over in-memory stores, its result rows applied to a model of the
sink's upserts (`sinks/writer.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.cli.pipeline import Pipeline
from epochflow.cli.stack import EmbeddedStack
from epochflow.schemas.commands import AdvanceWatermark
from epochflow.schemas.events import BusinessDateEvent, InstrumentEvent, PortfolioEvent, TransactionEvent
from epochflow.schemas.results import HistoryCarryOver, PositionHistoryRow, PositionStateRow, TransactionRow
from epochflow.sinks import reads
from epochflow.sinks.models import position_history
from epochflow.streams.partitioning import partition_for
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore
from tests.fixtures.stack import POSITIONS_ONLY, advance_to, key_of, running_stack, transaction

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

log = logging.getLogger(__name__)

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
        clock=lambda: datetime(2025, 1, 1, tzinfo=timezone.utc),
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


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(POSITIONS_ONLY) as running:
        yield running


@pytest.fixture
async def pipeline(stack: EmbeddedStack) -> AsyncIterator[Pipeline]:
    pipeline = await Pipeline.connect(stack.settings, roles=POSITIONS_ONLY)
    try:
        yield pipeline
    finally:
        await pipeline.close()


async def epoch1_rows(pipeline: Pipeline) -> int:
    return await reads.count_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=1)


async def kill_during_replay(stack: EmbeddedStack, pipeline: Pipeline) -> list[str]:
    """Publish the back-dated BUY and SIGKILL the positions worker while its replay is on
    its way; returns what each kill interrupted."""
    supervisor = stack.supervisor
    kills = []
    first_pid = supervisor.pid(WORKER)
    await pipeline.publish([LATE])  # flushed: the broker has it
    supervisor.kill(WORKER)
    kills.append(f"right after publishing (epoch-1 rows in PostgreSQL: {await epoch1_rows(pipeline)})")
    pid = supervisor.wait_for_pid(WORKER, not_pid=first_pid, timeout_s=30)

    # The restarted worker recovers its tables and processes the BUY (again); kill it a
    # second time as soon as the first epoch-1 rows reach PostgreSQL, if that is before all
    # of them have (the sink may write the whole replay in one transaction).
    deadline = time.monotonic() + 60
    while (count := await epoch1_rows(pipeline)) == 0:
        assert time.monotonic() < deadline, "the replay never reached PostgreSQL"
        await asyncio.sleep(0.005)
    if count < TXNS + 1:
        supervisor.kill(WORKER)
        kills.append(f"with {count} of {TXNS + 1} epoch-1 rows in PostgreSQL")
        supervisor.wait_for_pid(WORKER, not_pid=pid, timeout_s=30)
    return kills


async def test_a_worker_killed_during_a_replay_ends_like_an_undisturbed_run(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    started = time.monotonic()
    await pipeline.publish(REFERENCE)
    await pipeline.quiesce(60)
    await pipeline.publish(HISTORY)
    await pipeline.quiesce(90)
    assert await reads.count_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=0) == TXNS
    state = await advance_to(pipeline, PORTFOLIO, SECURITY, LAST_DAY)
    await pipeline.quiesce(60)
    loaded = time.monotonic()

    kills = await kill_during_replay(stack, pipeline)
    await pipeline.quiesce(120)
    print(f"\nload {loaded - started:.1f}s; kills: {kills}; recovered in {time.monotonic() - loaded:.1f}s")
    assert stack.supervisor.status(WORKER).restarts >= 1

    expected = expected_sink(state["generation"], pipeline.settings.partitions)

    # position_state: every stored column (updated_at is the worker's clock)
    actual_state = await reads.position(pipeline.engine, PORTFOLIO, SECURITY)
    want = expected.state.model_dump(exclude={"updated_at", "txn_count", "changed_from", "kind"})
    got = {k: v for k, v in actual_state.items() if k in want}
    assert got == want
    assert (got["epoch"], got["status"], got["watermark_date"]) == (1, "REPROCESSING", LATE.transaction_date.date() - timedelta(days=1))

    # the whole history in epoch 1, once per transaction, equal to the core's
    history = await reads.fetch_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=1)
    assert len(history) == TXNS + 1 == await epoch1_rows(pipeline)
    assert len({r.transaction_id for r in history}) == len(history)
    assert [r.model_dump() for r in history] == [r.model_dump() for r in expected.epoch_history(1)]
    # epoch 0 untouched, and no further epoch was opened by the re-delivery
    assert [r.model_dump() for r in await reads.fetch_position_history(pipeline.engine, PORTFOLIO, SECURITY, epoch=0)] == [
        r.model_dump() for r in expected.epoch_history(0)
    ]
    async with pipeline.engine.connect() as conn:
        epochs = (await conn.execute(
            select(position_history.c.epoch, func.count()).where(position_history.c.portfolio_id == PORTFOLIO)
            .group_by(position_history.c.epoch).order_by(position_history.c.epoch)
        )).all()
    assert [tuple(row) for row in epochs] == [(0, TXNS), (1, TXNS + 1)]

    # every transaction row, with the replay's costs and realized P&L
    transactions = await reads.fetch_transactions(pipeline.engine, PORTFOLIO, SECURITY)
    assert len(transactions) == TXNS + 1
    assert {r.transaction_id: r.model_dump() for r in transactions} == {
        i: r.model_dump() for i, r in expected.transactions.items()
    }
