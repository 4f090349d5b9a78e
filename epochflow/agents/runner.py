"""The batch runner every role's agents share: for each partition of a batch, a handler
over write-through caches; each message decoded and handed to it; then the step's table
writes and messages made durable together through the redo journal
(epochflow.tables.journal), before the batch's input offsets can be committed.

A worker's agents run their steps one at a time (`STEP_LOCK`): a step reads the tables,
computes, and its writes reach the local tables only after its journal is delivered, so
another agent of the same role reading in between would compute from values about to be
replaced, and its own writes would then overwrite them (the lost update the fan-out's tick
and reference agents once raced into).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from epochflow import metrics
from epochflow.agents.batching import by_partition, die, partition_step
from epochflow.agents.step_io import FaustStepIO
from epochflow.app import app
from epochflow.streams import topics
from epochflow.tables import journal
from epochflow.tables.declare import journal_table

H = TypeVar("H")

# handle(handler, message (key, value, offset), partition, the batch's time) -> rows and
# messages to send; every role's are in its handler module, next to the handler
Handle = Callable[[H, Any, int, float], list]

STEP_LOCK = asyncio.Lock()
# for epochflow.streams.watchdog: the step running now (stage, start), and per input topic
# when a step last took its messages
STEP: dict = {}
STEPPED: dict[str, float] = {}


@dataclass
class BatchRunner(Generic[H]):
    source: bytes  # the key of the role's messages on the results topic
    make_handler: Callable[[], tuple[H, list[Any]]]  # a handler and the caches it writes through
    journal_table: Any = field(default_factory=journal_table)

    async def __call__(self, stage: str, events, handle: Handle) -> None:
        try:
            async with STEP_LOCK:
                STEP.update(stage=stage, since=time.monotonic())
                try:
                    await self._step(stage, events, handle)
                finally:
                    STEP.clear()
                    if events:
                        STEPPED[events[0].message.topic] = time.monotonic()
        except Exception:
            die(stage)

    async def _step(self, stage: str, events, handle: Handle) -> None:
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
                                   lambda h, message, p: handle(h, message, p, now), self.source)
            if entry is not None:
                entries[partition] = entry
        computed = time.perf_counter()
        metrics.BATCH_SECONDS.labels(stage).observe(computed - started)
        metrics.BUDGET.computed(computed - started)
        await journal.commit(io, entries)
        metrics.COMMIT_SECONDS.labels(stage).observe(time.perf_counter() - computed)
        metrics.BUDGET.observe(stage)
