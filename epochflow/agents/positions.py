"""The positions role's agents: thin glue between topics, tables and the handler.

positions.apply      transactions       -> cost, history, back-date detection, epoch replay
positions.reference  reference data     -> local reference tables; re-cost keys it affects
positions.commands   position-commands  -> advance / reset watermark, fenced by epoch
"""

from __future__ import annotations

from epochflow.agents.positions_handler import PositionsHandler, on_command, on_reference, on_transaction
from epochflow.agents.runner import BatchRunner
from epochflow.app import app, settings
from epochflow.streams import topics
from epochflow.tables import positions as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore


def _handler() -> tuple[PositionsHandler, list[CachedStore]]:
    """A handler over write-through caches: each key is written once per batch."""
    state, history, refs, index = (CachedStore(s) for s in (tables.STATE, tables.HISTORY, tables.REFS, tables.KEY_INDEX))
    reference = [CachedStore(s) for s in tables.REFERENCE]
    return PositionsHandler(state, history, refs, index, ReferenceData(*reference)), [state, history, refs, index, *reference]


RUN = BatchRunner(b"positions", _handler)


@app.agent(topics.transactions, name="positions.apply")
async def apply_transactions(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await RUN("positions.apply", events, on_transaction)


@app.agent(topics.reference, name="positions.reference")
async def apply_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await RUN("positions.reference", events, on_reference)


@app.agent(topics.position_commands, name="positions.commands")
async def apply_commands(stream):
    async for events in stream.take_events(settings.batch_size, settings.batch_within_s):
        await RUN("positions.commands", events, on_command)
