"""The timeseries role's agents (its own worker process).

timeseries.forward    results (positions and valuation rows) -> portfolio-changes, by portfolio
timeseries.reference  reference data                         -> base currencies, FX rates
timeseries.apply      portfolio-changes                      -> cash flows, position and portfolio series rows
"""

from __future__ import annotations

from epochflow.agents.runner import BatchRunner
from epochflow.agents.timeseries_handler import SeriesHandler, on_changes, on_reference, on_results
from epochflow.app import app, settings
from epochflow.domain.timeseries import SeriesBook
from epochflow.streams import topics
from epochflow.tables import timeseries as tables
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore


def _handler() -> tuple[SeriesHandler, list[CachedStore]]:
    keys, key_days, days, flows = (CachedStore(s) for s in (tables.KEYS, tables.KEY_DAYS, tables.DAYS, tables.FLOWS))
    marks = CachedStore(tables.MARKS)
    reference = [CachedStore(s) for s in tables.REFERENCE]
    handler = SeriesHandler(SeriesBook(keys, key_days, days, flows), marks, ReferenceData(*reference),
                            settings.partitions)
    return handler, [keys, key_days, days, flows, marks, *reference]


RUN = BatchRunner(b"timeseries", _handler)


@app.agent(topics.results, name="timeseries.forward")
async def forward_changes(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.forward", events, on_results)


@app.agent(topics.reference, name="timeseries.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.reference", events, on_reference)


@app.agent(topics.portfolio_changes, name="timeseries.apply")
async def apply_changes(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.apply", events, on_changes)
