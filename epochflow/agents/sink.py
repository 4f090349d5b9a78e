"""The sink role: batched, idempotent, epoch-aware upserts of result rows into PostgreSQL.

A database outage stalls this agent (with retries and a metric) instead of dropping rows:
the results topic keeps them until PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import TypeAdapter, ValidationError

from epochflow import metrics
from epochflow.agents.batching import dead_letter_record
from epochflow.app import app, settings
from epochflow.schemas.events import describe
from epochflow.schemas.results import ResultRow
from epochflow.sinks.writer import ResultWriter
from epochflow.streams import topics

log = logging.getLogger("epochflow.sink")
ROWS = TypeAdapter(list[ResultRow])
SINK_BATCH = 2000


async def _write(writer: ResultWriter, rows: list) -> None:
    delay = 0.2
    while True:
        try:
            await writer.write(rows)
            return
        except Exception as error:  # the database is down or refused the batch: keep it and retry
            metrics.SINK_RETRIES.inc()
            log.error("sink.write failed (%r); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


@app.agent(topics.results, name="sink.write")
async def write_results(stream):
    writer = ResultWriter(settings.database_url)
    try:
        async for events in stream.take_events(SINK_BATCH, settings.follow_within_s):
            started = time.perf_counter()
            rows: list = []
            for event in events:
                try:
                    rows.extend(ROWS.validate_json(event.value))
                except ValidationError as error:
                    topics.dead_letter.send_soon(
                        key=b"dead", value=dead_letter_record("sink.write", event, describe(error)), partition=0
                    )
            if rows:
                await _write(writer, rows)
                for row in rows:
                    metrics.ROWS_WRITTEN.labels(row.kind).inc()
            metrics.BATCH_SECONDS.labels("sink.write").observe(time.perf_counter() - started)
    finally:
        await writer.close()
