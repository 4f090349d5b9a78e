"""The positions role's agents: thin glue between topics, tables and the handler.

positions.apply      transactions       -> cost, history, back-date detection, epoch replay
positions.reference  reference data     -> local reference tables; re-cost keys it affects
positions.commands   position-commands  -> advance / reset watermark, fenced by epoch
"""

from __future__ import annotations

from epochflow.agents.batching import process_batch
from epochflow.agents.positions_handler import PositionsHandler
from epochflow.app import app, settings
from epochflow.schemas.commands import parse_command
from epochflow.schemas.events import parse_reference, parse_transaction
from epochflow.streams import topics
from epochflow.tables import positions as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore


def _handler() -> tuple[PositionsHandler, list[CachedStore]]:
    """A handler over write-through caches: each key is written once per batch."""
    state, history, refs, index = (CachedStore(s) for s in tables.stores())
    ref = tables.reference_data()
    cached = [state, history, refs, index]
    ref_stores = [CachedStore(s) for s in (ref.portfolios, ref.instruments, ref.series, ref.series_index, ref.scalars)]
    reference = ReferenceData(*ref_stores)
    return PositionsHandler(state, history, refs, index, reference), cached + ref_stores


async def _run(stage: str, events, handle) -> None:
    def open_partition():
        handler, caches = _handler()
        return (lambda raw, partition: handle(handler, raw, partition)), caches

    await process_batch(stage, events, open_partition, b"positions", app.producer, topics.results, topics.dead_letter)


@app.agent(topics.transactions, name="positions.apply")
async def apply_transactions(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await _run("positions.apply", events, lambda h, raw, p: h.on_transaction(parse_transaction(raw), p))


@app.agent(topics.reference, name="positions.reference")
async def apply_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await _run("positions.reference", events, lambda h, raw, p: h.on_reference(parse_reference(raw), p))


@app.agent(topics.position_commands, name="positions.commands")
async def apply_commands(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await _run("positions.commands", events, lambda h, raw, p: h.on_command(parse_command(raw)))
