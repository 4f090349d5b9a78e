"""The timeseries role's agents (its own worker process).

timeseries.forward    results (positions and valuation rows) -> portfolio-changes, by portfolio
timeseries.reference  reference data                         -> base currencies, FX rates
timeseries.apply      portfolio-changes                      -> cash flows, position and portfolio series rows
"""

from __future__ import annotations

from faust.streams import current_event

from epochflow.agents.results_feed import decode_rows
from epochflow.agents.runner import BatchRunner
from epochflow.agents.timeseries_handler import FORWARDED_SOURCES, SeriesHandler, forward
from epochflow.app import app, settings
from epochflow.domain.timeseries import SeriesBook
from epochflow.schemas.events import parse_reference
from epochflow.streams import topics
from epochflow.tables import timeseries as tables
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import CachedStore


def _handler() -> tuple[SeriesHandler, list[CachedStore]]:
    keys, key_days, days, flows = (CachedStore(s) for s in (tables.KEYS, tables.KEY_DAYS, tables.DAYS, tables.FLOWS))
    marks = CachedStore(tables.MARKS)
    reference = [CachedStore(s) for s in tables.REFERENCE]
    handler = SeriesHandler(SeriesBook(keys, key_days, days, flows), marks, ReferenceData(*reference),
                            settings.partitions)
    return handler, [keys, key_days, days, flows, marks, *reference]


RUN = BatchRunner(b"timeseries", _handler)


def _forward(handler: SeriesHandler, raw: bytes, partition: int, now: float) -> list:
    event = current_event()
    if event.key not in FORWARDED_SOURCES:
        return []
    return forward(decode_rows(raw), event.message.offset, settings.partitions)


def _reference(handler: SeriesHandler, raw: bytes, partition: int, now: float) -> list:
    apply_reference_event(handler.reference, parse_reference(raw))
    return []


def _apply(handler: SeriesHandler, raw: bytes, partition: int, now: float) -> list:
    return handler.on_changes(raw, partition, current_event().message.offset)


@app.agent(topics.results, name="timeseries.forward")
async def forward_changes(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.forward", events, _forward)


@app.agent(topics.reference, name="timeseries.reference")
async def follow_reference(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.reference", events, _reference)


@app.agent(topics.portfolio_changes, name="timeseries.apply")
async def apply_changes(stream):
    async for events in stream.take_events(settings.batch_size, settings.follow_within_s):
        await RUN("timeseries.apply", events, _apply)
