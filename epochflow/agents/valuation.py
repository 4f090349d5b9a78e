"""The valuation role's agents.

valuation.positions  results (positions rows) -> the role's copy of each key's history
valuation.reference  reference data           -> prices, FX, instruments, portfolios
valuation.value      valuation-jobs           -> snapshots and job outcomes
"""

from __future__ import annotations

import asyncio
import time

from faust.streams import current_event

from epochflow.agents.batching import by_partition, event_context, process_batch
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.agents.valuation_handler import ValuationHandler
from epochflow.app import app, settings
from epochflow.schemas.events import InvalidEvent, parse_reference
from epochflow.schemas.jobs import parse_job
from epochflow.streams import topics
from epochflow.tables import valuation as tables
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import CachedStore


def _handler() -> tuple[ValuationHandler, CachedStore, list[CachedStore]]:
    keys, history, progress = CachedStore(tables.KEYS), CachedStore(tables.HISTORY), CachedStore(tables.PROGRESS)
    reference = [CachedStore(s) for s in tables.reference_stores()]
    return ValuationHandler(keys, history, ReferenceData(*reference)), progress, [keys, history, progress, *reference]


async def _run(stage: str, events, handle) -> None:
    def open_partition():
        handler, progress, caches = _handler()
        return (lambda raw, partition: handle(handler, progress, raw, partition)), caches

    await process_batch(stage, events, open_partition, b"valuation", app.producer, topics.results,
                        topics.dead_letter, topics.by_short_name)


def _positions(handler: ValuationHandler, progress, raw: bytes, partition: int) -> list:
    event = current_event()
    if event.key != b"positions":
        return []
    rows = decode_rows(raw)
    handler.on_position_rows(rows)
    return forwarded_barriers(rows, "valuation", partition)


def _reference(handler: ValuationHandler, progress, raw: bytes, partition: int) -> list:
    apply_reference_event(handler.reference, parse_reference(raw))
    progress.put(f"ref_offset|p{partition}", current_event().message.offset)
    return []


def _value(handler: ValuationHandler, progress, raw: bytes, partition: int) -> list:
    job = parse_job(raw)
    seen = progress.get(f"ref_offset|p{partition}")
    return handler.on_job(job, -1 if seen is None else seen)


VIEW_WAIT_S = 2.0


def _batch_caught_up(events) -> bool:
    """Whether this worker's other agents have read what every job of the batch needs."""
    for partition, partition_events in by_partition(events).items():
        handler, progress, _ = _handler()
        with event_context(partition_events[-1]):
            seen = progress.get(f"ref_offset|p{partition}")
            for event in partition_events:
                try:
                    job = parse_job(event.value)
                except InvalidEvent:
                    continue  # not a job (a barrier) or invalid: dead-lettered by the batch
                if not handler.caught_up(job, -1 if seen is None else seen):
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
        await _run("valuation.positions", events, _positions)


@app.agent(topics.reference, name="valuation.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await _run("valuation.reference", events, _reference)


@app.agent(topics.valuation_jobs, name="valuation.value")
async def value_jobs(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await _until_caught_up(events)
        await _run("valuation.value", events, _value)
