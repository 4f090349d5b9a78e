"""The sink role: batched, idempotent, epoch-aware upserts of result rows into PostgreSQL.

A database outage stalls this agent (with retries and a metric) instead of dropping rows:
the results topic keeps them until PostgreSQL is back. A row PostgreSQL refuses (a value
it cannot store, a violated constraint) would fail the same way forever: it goes to the
dead-letter topic with PostgreSQL's reason and the rest of its batch is written.

Nothing is skipped: the sink stores the last results message it wrote of each partition
in the transaction of its rows (`sink_offsets`), and a batch that does not continue from
it shows a message the consumer never handed over (Faust's consumer can drop what it
fetched around a rebalance and commit past it): the consumer is sent back to that
message, as every role's steps do (epochflow.agents.holes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from epochflow import metrics
from epochflow.agents.batching import by_partition, dead_letter_record, taken_up_to_a_hole
from epochflow.agents.runner import HOLES, WRITTEN_SOURCE, seek_back
from epochflow.app import app, settings
from epochflow.schemas.events import describe
from epochflow.schemas.results import ResultRow
from epochflow.sinks import versions
from epochflow.sinks.errors import ErrorKind, classify
from epochflow.sinks.schema import create_engine
from epochflow.sinks.writer import Offsets, Refusal, ResultWriter
from epochflow.streams import topics

log = logging.getLogger("epochflow.sink")
ROWS = TypeAdapter(list[ResultRow])
SINK_BATCH = 2000
STAGE = "sink.write"
PRUNE_EVERY_S = 3600.0
T = TypeVar("T")


async def _retrying(call: Callable[[], Awaitable[T]], retry_refused: bool = True) -> T:
    """`call()`, again and again while the database is unreachable, restarting or busy (or
    failing in a way no row is to blame for); with `retry_refused` False, an error that
    names a refused row is raised instead."""
    delay = 0.2
    while True:
        try:
            return await call()
        except Exception as error:
            kind = classify(error)
            if kind is ErrorKind.REFUSED_ROW and not retry_refused:
                raise
            metrics.SINK_RETRIES.inc()
            log.error("%s failed (%s: %r); retrying in %.1fs", STAGE, kind.value, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _write(writer: ResultWriter, rows: list, sources: Sequence[Any], offsets: Offsets) -> set[int]:
    """Write `rows` (from the events `sources`, one per row) and the batch's `offsets`,
    retrying while the database is unreachable; returns the indexes of the rows it
    refused, dead-lettered."""
    try:
        await _retrying(lambda: writer.write(rows, offsets), retry_refused=False)
        return set()
    except Exception as error:  # a row PostgreSQL refuses: the only error not retried
        log.warning("%s: PostgreSQL refused the batch (%r); writing it without the rows it refuses", STAGE, error)
    refusals = await _retrying(lambda: writer.write_refusing(rows, offsets))
    for refusal in refusals:
        _dead_letter_row(refusal, sources[refusal.index])
    return {refusal.index for refusal in refusals}


async def _taken(writer: ResultWriter, events: list, written: Offsets) -> tuple[list, Offsets]:
    """The batch's events to write now, and the last offset of each partition among them.
    A partition's events are taken from its first on when that first continues what the
    sink wrote or comes before it (a repeat, a replay from earlier, a recreated broker:
    written again, which changes nothing); when they start past the next message the sink
    has to write, or skip one, the consumer never handed that message over: the events
    after it wait, and the consumer is sent back to it (epochflow.agents.holes).

    `written` is what this agent knows of `sink_offsets`; the table is read again only
    when a batch does not continue from it (a partition new to the agent, another sink
    worker's writes, or a hole), not for every batch."""
    groups = by_partition(events)
    firsts = {(m.topic, m.partition): m.offset for m in (evs[0].message for evs in groups.values())}
    if any(where not in written or first > written[where] + 1 for where, first in firsts.items()):
        written.update(await _retrying(writer.last_offsets))
    taken: set[int] = set()
    offsets: Offsets = {}
    for partition_events in groups.values():
        first = partition_events[0].message
        last = written.get((first.topic, first.partition))
        applied = first.offset - 1 if last is None else min(last, first.offset - 1)
        fresh = taken_up_to_a_hole(STAGE, partition_events, applied, HOLES)
        if fresh:
            taken.update(map(id, fresh))
            offsets[(first.topic, first.partition)] = fresh[-1].message.offset
    return [event for event in events if id(event) in taken], offsets  # in the batch's order


def _dead_letter_row(refusal: Refusal, event: Any) -> None:
    """A refused row on the dead-letter topic: the stage, PostgreSQL's reason and SQLSTATE,
    the row (`row`, and as JSON text in `raw` like every dead letter) and the results
    message it came in."""
    metrics.DEAD_LETTERS.labels(STAGE).inc()
    message = event.message
    row = refusal.row.model_dump(mode="json")
    log.warning("%s: dead-lettered a %s row of %s[%s]@%s: %s", STAGE, refusal.row.kind, message.topic,
                message.partition, message.offset, refusal.reason)
    record = {
        "stage": STAGE,
        "reason": refusal.reason,
        "sqlstate": refusal.sqlstate,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "raw": json.dumps(row),
        "row": row,
        "at": datetime.now(UTC).isoformat(),
    }
    topics.dead_letter.send_soon(key=b"dead", value=json.dumps(record).encode(), partition=0)


@app.agent(topics.results, name=STAGE)
async def write_results(stream):
    writer = ResultWriter(settings.database_url)
    written: Offsets = {}  # the last offset written of each partition, as far as this agent knows
    try:
        async for batch in stream.take_events(SINK_BATCH, settings.sink_within_s):
            started = time.perf_counter()
            events, offsets = await _taken(writer, batch, written)
            rows: list = []
            sources: list = []  # the event of each row
            for event in events:
                try:
                    decoded = ROWS.validate_json(event.value)
                except ValidationError as error:
                    topics.dead_letter.send_soon(
                        key=b"dead", value=dead_letter_record(STAGE, event, describe(error)), partition=0
                    )
                    continue
                rows.extend(decoded)
                sources.extend([event] * len(decoded))
            decoded_at = time.perf_counter()
            if offsets:
                refused = await _write(writer, rows, sources, offsets)
                written.update(offsets)
                for index, row in enumerate(rows):
                    if index not in refused:
                        metrics.ROWS_WRITTEN.labels(row.kind).inc()
            written_at = time.perf_counter()
            metrics.BATCH_SECONDS.labels(STAGE).observe(written_at - started)
            metrics.PHASE_SECONDS.labels(STAGE, "decode").observe(decoded_at - started)
            metrics.PHASE_SECONDS.labels(STAGE, "sink").observe(written_at - decoded_at)
            await seek_back(STAGE, HOLES.take_due())
    finally:
        await writer.close()


async def written_offsets() -> Offsets:
    """The last results message written of each partition (for the watchdog's look at
    partitions that stand still, epochflow.streams.watchdog)."""
    writer = ResultWriter(settings.database_url, pool_size=1)
    try:
        return await writer.last_offsets()
    finally:
        await writer.close()


WRITTEN_SOURCE.append(written_offsets)


@app.timer(interval=PRUNE_EVERY_S, on_leader=False)
async def prune_versions() -> None:
    """EPOCHFLOW_VERSIONS_RETENTION_DAYS: drop the versions superseded longer ago (any sink
    worker may; dropping twice drops nothing more)."""
    if settings.versions_retention_days <= 0 or not settings.database_url:
        return
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        dropped = await versions.prune(engine, timedelta(days=settings.versions_retention_days))
    except Exception as error:  # the next round tries again; the sink's writes go on
        log.warning("sink.prune_versions failed: %r", error)
        return
    finally:
        await engine.dispose()
    metrics.VERSIONS_PRUNED.inc(dropped)
    if dropped:
        log.info("sink.prune_versions dropped %d versions older than %d days", dropped,
                 settings.versions_retention_days)
