"""The batch runner every role's agents share: for each partition of a batch, a handler
over write-through caches; each message decoded and handed to it; then the step's table
writes and messages made durable together through the redo journal
(epochflow.tables.journal), before the batch's input offsets can be committed; then the
consumer is sent back to any hole a step found in its input (epochflow.agents.holes).

A worker's agents run their steps one at a time (`STEP_LOCK`): a step reads the tables,
computes, and its writes reach the local tables only after its journal is delivered, so
another agent of the same role reading in between would compute from values about to be
replaced, and its own writes would then overwrite them (the lost update the fan-out's tick
and reference agents once raced into).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faust.types import TP

from epochflow import metrics
from epochflow.agents.batching import by_partition, die, partition_step
from epochflow.agents.holes import Holes
from epochflow.agents.step_io import FaustStepIO
from epochflow.app import app
from epochflow.streams import topics
from epochflow.tables import journal
from epochflow.tables.declare import declared_journal, journal_table

log = logging.getLogger("epochflow.agents")

H = TypeVar("H")

# handle(handler, message (key, value, offset), partition, the batch's time) -> rows and
# messages to send; every role's are in its handler module, next to the handler
Handle = Callable[[H, Any, int, float], list]

STEP_LOCK = asyncio.Lock()
# the holes in this worker's input partitions (epochflow.agents.holes), across its agents
HOLES = Holes()
# for epochflow.streams.watchdog: the step running now (stage, start), and per input topic
# when a step last took its messages
STEP: dict = {}
STEPPED: dict[str, float] = {}
# input topics whose inputs are samples (a clock's ticks): no hole in them is one
SAMPLED_TOPICS: set[str] = set()
# where a role without a journal records the last input it applied of each (topic,
# partition): the sink, in PostgreSQL (epochflow.agents.sink)
WRITTEN_SOURCE: list[Callable[[], Awaitable[dict[tuple[str, int], int]]]] = []


@dataclass
class BatchRunner(Generic[H]):
    source: bytes  # the key of the role's messages on the results topic
    make_handler: Callable[[], tuple[H, list[Any]]]  # a handler and the caches it writes through
    journal_table: Any = field(default_factory=journal_table)

    async def __call__(self, stage: str, events, handle: Handle, sampled: bool = False) -> None:
        """`sampled`: the events are a sample of their partitions' inputs (a clock's latest
        tick of each), so the inputs between them are meant to be left out, not a hole."""
        try:
            async with STEP_LOCK:
                STEP.update(stage=stage, since=time.monotonic())
                try:
                    await self._step(stage, events, handle, None if sampled else HOLES)
                finally:
                    STEP.clear()
                    if events:
                        STEPPED[events[0].message.topic] = time.monotonic()
        except Exception:
            die(stage)

    async def _step(self, stage: str, events, handle: Handle, holes: Holes | None) -> None:
        now = time.time()
        metrics.BUDGET.begin()
        groups = by_partition(events)
        io = FaustStepIO(app.tables, self.journal_table, {p: evs[-1] for p, evs in groups.items()},
                         topics.by_short_name, app.producer)
        redone = await journal.redo(io, groups)
        if redone.partitions:
            metrics.STEPS_REDONE.labels(stage).inc(len(redone.partitions))
        started = time.perf_counter()
        metrics.BUDGET.computing()
        entries = {}
        for partition, partition_events in groups.items():
            entry = partition_step(stage, partition_events, self.journal_table.name,
                                   lambda key, p=partition: io.get_journal(p, key), self.make_handler,
                                   lambda h, message, p: handle(h, message, p, now), self.source, holes)
            if entry is not None:
                entries[partition] = entry
        computed = time.perf_counter()
        metrics.BATCH_SECONDS.labels(stage).observe(computed - started)
        metrics.BUDGET.computed(computed - started)
        await journal.commit(io, entries)
        metrics.COMMIT_SECONDS.labels(stage).observe(time.perf_counter() - computed)
        await seek_back(stage, HOLES.take_due())
        metrics.BUDGET.observe(stage)


async def applied_offsets(tps: list[TP]) -> dict[TP, int]:
    """The offset of the last input of each of `tps` that this worker's role applied (its
    redo journal's record, or the sink's in PostgreSQL); -1 when none is recorded."""
    table = declared_journal()
    if table is not None:
        # no event here: Faust finds the key in whichever partition's store has it (each
        # partition's record has its own key)
        return {tp: journal.applied_offset(table.get, tp.topic, tp.partition) for tp in tps}
    if WRITTEN_SOURCE:
        written = await WRITTEN_SOURCE[0]()
        return {tp: written.get((tp.topic, tp.partition), -1) for tp in tps}
    return {}


async def seek_back(stage: str, due: dict[tuple[str, int], int]) -> None:
    """Send the consumer back to the first input of each hole: what follows it comes again.
    A hole that starts before the broker's first offset is gone on from (see
    epochflow.agents.holes). A partition this worker no longer holds is left alone (its
    new holder's steps find the hole themselves); the hole, if still open, is sought again
    when a step meets it."""
    for (topic, partition), offset in due.items():
        tp = TP(topic, partition)
        try:
            earliest = (await app.consumer.earliest_offsets(tp)).get(tp)
            if earliest is not None and HOLES.gone(stage, topic, partition, earliest):
                offset = earliest
            await app.consumer.seek_wait({tp: offset})
        except Exception as error:  # noqa: BLE001 - a lost assignment, a stopping consumer
            log.warning("seek back to %s[%d]@%d failed: %r", topic, partition, offset, error)
