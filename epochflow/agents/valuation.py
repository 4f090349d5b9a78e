"""The valuation role's agents.

valuation.positions  results (positions rows) -> the role's copy of each key's history
valuation.reference  reference data           -> prices, FX, instruments, portfolios
valuation.value      valuation-jobs           -> snapshots and job outcomes
"""

from __future__ import annotations

import asyncio
import time

from epochflow.agents.batching import by_partition, event_context
from epochflow.agents.runner import BatchRunner
from epochflow.agents.valuation_handler import ValuationHandler, ValuationRole, on_job, on_reference, on_results
from epochflow.app import app, settings
from epochflow.schemas.events import InvalidEvent
from epochflow.schemas.jobs import parse_job
from epochflow.streams import topics
from epochflow.tables import valuation as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore


def _handler() -> tuple[ValuationRole, list[CachedStore]]:
    keys, history, progress = CachedStore(tables.KEYS), CachedStore(tables.HISTORY), CachedStore(tables.PROGRESS)
    reference = [CachedStore(s) for s in tables.REFERENCE]
    role = ValuationRole(ValuationHandler(keys, history, ReferenceData(*reference)), progress)
    return role, [keys, history, progress, *reference]


RUN = BatchRunner(b"valuation", _handler)

VIEW_WAIT_S = 2.0


def _batch_caught_up(events) -> bool:
    """Whether this worker's other agents have read what every job of the batch needs."""
    for partition, partition_events in by_partition(events).items():
        role, _ = _handler()
        with event_context(partition_events[-1]):
            seen = role.ref_offset_seen(partition)
            for event in partition_events:
                try:
                    job = parse_job(event.value)
                except InvalidEvent:
                    continue  # not a job (a barrier) or invalid: dead-lettered by the batch
                if not role.handler.caught_up(job, seen):
                    return False
    return True


async def _until_caught_up(events) -> None:
    """Give this worker's positions and reference agents up to VIEW_WAIT_S to read what
    the batch's jobs need before answering them: they read other topics at their own pace
    (after a restart or a replay, far behind), and a NOT_READY answer relies on the
    scheduler sending the job again, which it does not for a job it has moved past (a
    replay re-reads jobs the scheduler answered long ago)."""
    deadline = time.monotonic() + VIEW_WAIT_S
    while not _batch_caught_up(events) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


@app.agent(topics.results, name="valuation.positions")
async def follow_positions(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("valuation.positions", events, on_results)


@app.agent(topics.reference, name="valuation.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("valuation.reference", events, on_reference)


@app.agent(topics.valuation_jobs, name="valuation.value")
async def value_jobs(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await _until_caught_up(events)
        await RUN("valuation.value", events, on_job)
