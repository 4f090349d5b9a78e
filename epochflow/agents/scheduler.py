"""The scheduler role's agents (its own worker process).

scheduler.results    results (positions state rows, valuation outcomes) -> plan, dispatch, advance
scheduler.reference  reference data (business dates, prices, FX)        -> plan, retry blocked jobs
scheduler.tick       scheduler-ticks (its own clock, every partition)    -> backoff retries, reclaims
"""

from __future__ import annotations

from epochflow.agents.configs import scheduler_config
from epochflow.agents.runner import BatchRunner
from epochflow.agents.scheduler_handler import PACING, SchedulerHandler, on_reference, on_results, on_tick
from epochflow.agents.ticks import tick_agent
from epochflow.app import app, settings
from epochflow.streams import topics
from epochflow.tables import scheduler as tables
from epochflow.tables.store import CachedStore

CONFIG = scheduler_config(settings)


def _handler() -> tuple[SchedulerHandler, list[CachedStore]]:
    caches = [CachedStore(tables.KEYS), CachedStore(tables.INDEX), CachedStore(tables.COUNTERS)]
    return SchedulerHandler(*caches, cfg=CONFIG, partitions=settings.partitions, pacing=PACING), caches


RUN = BatchRunner(b"scheduler", _handler)


@app.agent(topics.results, name="scheduler.results")
async def follow_results(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("scheduler.results", events, on_results)


@app.agent(topics.reference, name="scheduler.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("scheduler.reference", events, on_reference)


on_ticks = tick_agent(topics.scheduler_ticks, "scheduler.tick", RUN, on_tick)
