"""The scheduler role's agents (its own worker process).

scheduler.results    results (positions state rows, valuation outcomes) -> plan, dispatch, advance
scheduler.reference  reference data (business dates, prices, FX)        -> plan, retry blocked jobs
scheduler.tick       scheduler-ticks (its own clock, every partition)    -> backoff retries, reclaims
"""

from __future__ import annotations

import time

from faust.streams import current_event

from epochflow import metrics
from epochflow.agents.configs import scheduler_config
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.agents.runner import BatchRunner
from epochflow.agents.scheduler_handler import HEALTH, PACING, SchedulerHandler
from epochflow.agents.ticks import tick_agent
from epochflow.app import app, settings
from epochflow.schemas.events import parse_reference
from epochflow.schemas.results import JobOutcome, PositionStateRow
from epochflow.streams import topics
from epochflow.tables import scheduler as tables
from epochflow.tables.store import CachedStore

CONFIG = scheduler_config(settings)


def _handler() -> tuple[SchedulerHandler, list[CachedStore]]:
    caches = [CachedStore(tables.KEYS), CachedStore(tables.INDEX), CachedStore(tables.COUNTERS)]
    return SchedulerHandler(*caches, cfg=CONFIG, partitions=settings.partitions, pacing=PACING), caches


RUN = BatchRunner(b"scheduler", _handler)


def _results(handler: SchedulerHandler, raw: bytes, partition: int, now: float) -> list:
    source = current_event().key
    if source not in (b"positions", b"valuation"):
        return []
    rows = decode_rows(raw)
    out: list = []
    for row in rows:
        if isinstance(row, PositionStateRow):
            out += handler.on_position_state(row, partition, now)
    outcomes = [row for row in rows if isinstance(row, JobOutcome)]
    if outcomes:
        out += handler.on_outcomes(outcomes, partition, now)
    return out + forwarded_barriers(rows, "scheduler", partition)


def _reference(handler: SchedulerHandler, raw: bytes, partition: int, now: float) -> list:
    return handler.on_reference(parse_reference(raw), partition, current_event().message.offset, now)


def _tick(handler: SchedulerHandler, raw: bytes, partition: int, now: float) -> list:
    started = time.perf_counter()
    out = handler.on_tick(partition, now)
    metrics.SCHEDULER_TICK_SECONDS.observe(time.perf_counter() - started)
    HEALTH.publish(handler.business_date())
    return out


@app.agent(topics.results, name="scheduler.results")
async def follow_results(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("scheduler.results", events, _results)


@app.agent(topics.reference, name="scheduler.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("scheduler.reference", events, _reference)


on_ticks = tick_agent(topics.scheduler_ticks, "scheduler.tick", RUN, _tick)
