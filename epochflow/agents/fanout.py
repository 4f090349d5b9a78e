"""The fan-out role's agents (its own worker process).

fanout.reference  reference data          -> back-dated prices and FX rates become triggers
fanout.holders    results (positions rows) -> the holders index (keys per security / FX pair)
fanout.tick       fanout-ticks (its clock)  -> triggers queued as jobs, jobs claimed, resets sent
"""

from __future__ import annotations

import time

from faust.streams import current_event

from epochflow.agents.batching import process_batch
from epochflow.agents.fanout_handler import FanoutHandler
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.app import app, settings
from epochflow.domain.fanout import FanoutConfig, InFlight, RateLimiter
from epochflow.schemas.events import parse_reference
from epochflow.schemas.jobs import Tick
from epochflow.schemas.results import PositionStateRow
from epochflow.streams import topics
from epochflow.tables import fanout as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore

CONFIG = FanoutConfig(
    claim_batch=settings.fanout_claim_batch,
    keys_per_cycle=settings.fanout_keys_per_cycle,
    rate_per_s=settings.fanout_rate_per_s,
    max_in_flight=settings.fanout_max_in_flight,
    in_flight_timeout_s=settings.fanout_in_flight_timeout_s,
    max_attempts=settings.max_attempts,
)
# one budget for the whole worker: its partitions share the configured rate
LIMITER = RateLimiter(CONFIG.rate_per_s, burst=max(CONFIG.rate_per_s * settings.tick_s, 1.0), now=time.time())
SEEN: set = set()
WORKING: set = set()
IN_FLIGHT = InFlight(CONFIG.max_in_flight, CONFIG.in_flight_timeout_s)


def _handler() -> tuple[FanoutHandler, list[CachedStore]]:
    subjects, index = CachedStore(tables.SUBJECTS), CachedStore(tables.INDEX)
    reference = [CachedStore(s) for s in tables.reference_stores()]
    handler = FanoutHandler(subjects, index, ReferenceData(*reference), CONFIG, LIMITER, SEEN, WORKING, IN_FLIGHT)
    return handler, [subjects, index, *reference]


async def _run(stage: str, events, handle, state_after_outputs: bool = False) -> None:
    now = time.time()

    def open_partition():
        handler, caches = _handler()
        return (lambda raw, partition: handle(handler, raw, partition, now)), caches

    await process_batch(stage, events, open_partition, b"fanout", app.producer, topics.results,
                        topics.dead_letter, topics.by_short_name, state_after_outputs=state_after_outputs)


def _reference(handler: FanoutHandler, raw: bytes, partition: int, now: float) -> list:
    return handler.on_reference(parse_reference(raw), partition, current_event().message.offset, now)


def _holders(handler: FanoutHandler, raw: bytes, partition: int, now: float) -> list:
    if current_event().key != b"positions":
        return []
    rows = decode_rows(raw)
    for row in rows:
        if isinstance(row, PositionStateRow):
            handler.on_position_state(row, partition)
    return forwarded_barriers(rows, "fanout", partition)


def _tick(handler: FanoutHandler, raw: bytes, partition: int, now: float) -> list:
    return handler.on_tick(partition, now)


@app.agent(topics.reference, name="fanout.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await _run("fanout.reference", events, _reference)


@app.agent(topics.results, name="fanout.holders")
async def follow_holders(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await _run("fanout.holders", events, _holders)


@app.agent(topics.fanout_ticks, name="fanout.tick")
async def on_ticks(stream):
    async for events in stream.take_events(settings.partitions * 4, 0.01):
        # several ticks of one partition in a batch do the work once
        latest = {event.message.partition: event for event in events}
        # a job's cursor is saved only once its resets are delivered: a crash in between
        # sends them again (positions recognises a job's reset) and never skips a key
        await _run("fanout.tick", list(latest.values()), _tick, state_after_outputs=True)


@app.timer(interval=settings.tick_s)
async def send_ticks() -> None:
    """Every worker ticks every partition; a tick is idempotent, so more than one is harmless."""
    value = Tick(at=time.time()).model_dump_json().encode()
    for partition in range(settings.partitions):
        topics.fanout_ticks.send_soon(key=b"tick", value=value, partition=partition)
