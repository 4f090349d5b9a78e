"""The fan-out role's agents (its own worker process).

fanout.reference  reference data          -> back-dated prices and FX rates become triggers
fanout.holders    results (positions rows) -> the holders index (keys per security / FX pair)
fanout.tick       fanout-ticks (its clock)  -> triggers queued as jobs, jobs claimed, resets sent
"""

from __future__ import annotations

import time

from epochflow.agents.configs import fanout_config
from epochflow.agents.fanout_handler import FanoutHandler, on_reference, on_results, on_tick
from epochflow.agents.runner import BatchRunner
from epochflow.agents.ticks import tick_agent
from epochflow.app import app, settings
from epochflow.domain.fanout import InFlight, pace_limiter
from epochflow.streams import topics
from epochflow.tables import fanout as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore

CONFIG = fanout_config(settings)
LIMITER = pace_limiter(CONFIG, settings.tick_s, now=time.time())
SEEN: set = set()
WORKING: set = set()
IN_FLIGHT = InFlight(CONFIG.max_in_flight, CONFIG.in_flight_timeout_s)


def _handler() -> tuple[FanoutHandler, list[CachedStore]]:
    subjects, index = CachedStore(tables.SUBJECTS), CachedStore(tables.INDEX)
    reference = [CachedStore(s) for s in tables.REFERENCE]
    handler = FanoutHandler(subjects, index, ReferenceData(*reference), CONFIG, LIMITER, SEEN, WORKING, IN_FLIGHT)
    return handler, [subjects, index, *reference]


RUN = BatchRunner(b"fanout", _handler)


@app.agent(topics.reference, name="fanout.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("fanout.reference", events, on_reference)


@app.agent(topics.results, name="fanout.holders")
async def follow_holders(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("fanout.holders", events, on_results)


# a job's cursor and its resets are one journalled step: a crash lands both or neither
# (positions recognises a job's reset sent again by a redo)
on_ticks = tick_agent(topics.fanout_ticks, "fanout.tick", RUN, on_tick)
