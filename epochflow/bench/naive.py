"""The benchmark baseline: the same positions logic written the obvious way, one event at
a time with a table write and an awaited send per event. `epochflow bench ingest` runs it
beside the batched agents on the same stack to show what batching buys. Its app is the
`naive` role of `epochflow.bench.baseline`, run only by that benchmark."""

from __future__ import annotations

from epochflow.agents.batching import BatchOutcome, encode_rows, event_context, run_partition
from epochflow.agents.positions_handler import PositionsHandler, on_reference, on_transaction
from epochflow.app import app
from epochflow.bench.baseline import NAIVE_TOPIC
from epochflow.streams import topics
from epochflow.tables import positions as tables
from epochflow.tables.reference import ReferenceData

naive_transactions = topics.raw_topic(NAIVE_TOPIC)


def _handler() -> PositionsHandler:
    return PositionsHandler(tables.STATE, tables.HISTORY, tables.REFS, tables.KEY_INDEX, ReferenceData(*tables.REFERENCE))


async def _one_by_one(stage: str, stream, handle) -> None:
    async for event in stream.events():
        outcome = BatchOutcome()
        handler = _handler()
        with event_context(event):
            run_partition(stage, [event], lambda message, p, handler=handler: handle(handler, message, p, 0.0), outcome)
        for partition, rows in outcome.rows.items():
            await topics.results.send(key=b"naive", value=encode_rows(rows), partition=partition)
        for record in outcome.dead:
            await topics.dead_letter.send(key=b"dead", value=record, partition=0)


@app.agent(naive_transactions, name="naive.apply")
async def naive_apply(stream):
    await _one_by_one("naive.apply", stream, on_transaction)


@app.agent(topics.reference, name="naive.reference")
async def naive_reference(stream):
    await _one_by_one("naive.reference", stream, on_reference)
