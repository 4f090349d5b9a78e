"""The operations dashboard's I/O: a sampler task in the api worker reads PostgreSQL
(`epochflow.sinks.reads.dashboard`) and the size of the dead-letter topic every
`INTERVAL_S`, and keeps the samples of the last `WINDOW_S` in a ring buffer: the charts
have history from the moment the worker started, and however many browsers poll, the
database is read once per interval. When a sample takes long (a large database), the
sampler slows down rather than spend more than `MAX_DUTY` of its time querying.

No Faust here: `views.py` starts the sampler as a task of the api role's app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from epochflow.sinks.reads.dashboard import DatabaseReading
from epochflow.web.dashboard.panels import (
    Sample,
    SampleRing,
    dashboard_payload,
    dead_letter_entry,
    describe,
    shape_panels,
    throughput,
)

log = logging.getLogger("epochflow.dashboard")

MAX_DUTY = 0.2  # at most this share of the sampler's time is spent sampling
RECENT_DEAD_LETTERS = 5


# -- reading the dead-letter topic --------------------------------------------------------


class DeadLetterWatch:
    """The size of the dead-letter topic (high watermark − log start of its one partition)
    and its last few records, from one long-lived consumer with no group.

    Cheap per sample: the consumer's background fetcher long-polls the end of the log and
    every Fetch response carries the high watermark (which the embedded broker, unlike
    ListOffsets(LATEST), reports exactly); a sample only takes the records buffered since
    the last one. The log start is asked for once a minute."""

    LOG_START_EVERY_S = 60.0
    STALE_AFTER_S = 15.0

    def __init__(self, bootstrap: str, topic: str, recent: int = RECENT_DEAD_LETTERS,
                 client_options: Mapping[str, Any] | None = None,
                 consumer_factory: Callable[..., Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._client_options = dict(client_options or {})  # TLS / SASL (epochflow.streams.security)
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self._consumer: Any = None
        self._tp: Any = None
        self._log_start = 0
        self._log_start_read_at = 0.0
        self._factory = consumer_factory

    async def read(self, now: float) -> dict[str, Any]:
        if self._consumer is None:
            await self._start()
        consumer, tp = self._consumer, self._tp
        try:
            for records in (await consumer.getmany(tp, timeout_ms=0)).values():
                for record in records:
                    self._recent.append(dead_letter_entry(record.value, record.offset))
            if now - self._log_start_read_at > self.LOG_START_EVERY_S:
                self._log_start = (await consumer.beginning_offsets([tp]))[tp]
                self._log_start_read_at = now
            highwater = consumer.highwater(tp)
            polled_ms = consumer.last_poll_timestamp(tp)
        except Exception:
            await self.close()  # start over next time
            raise
        if highwater is None:
            raise TimeoutError(f"no fetch response from {self.topic} yet")
        age = max(0.0, now - polled_ms / 1000) if polled_ms else None
        return {
            "topic": self.topic,
            "count": max(0, highwater - self._log_start),
            "log_start": self._log_start,
            "high_watermark": highwater,
            "stale": age is None or age > self.STALE_AFTER_S,
            "recent": list(reversed(self._recent)),  # newest first
        }

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        factory = self._factory or AIOKafkaConsumer
        consumer = factory(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="epochflow-dashboard",
            fetch_max_wait_ms=500,
            max_partition_fetch_bytes=64 * 1024,
            request_timeout_ms=10_000,
            **self._client_options,
        )
        await consumer.start()
        try:
            # all topics' metadata: naming a missing topic would make the broker create it
            if self.topic not in await consumer.topics():
                raise LookupError(f"topic {self.topic} does not exist")
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            start = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]  # may be a batch short: a start point only
            consumer.seek(tp, max(start, end - self._recent.maxlen))
            deadline = time.monotonic() + 10
            while consumer.highwater(tp) is None and time.monotonic() < deadline:
                for records in (await consumer.getmany(tp, timeout_ms=200)).values():
                    for record in records:
                        self._recent.append(dead_letter_entry(record.value, record.offset))
        except BaseException:
            await consumer.stop()
            raise
        self._consumer, self._tp = consumer, tp
        self._log_start, self._log_start_read_at = start, time.time()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:  # closing is best effort; the next read starts afresh
                log.debug("dashboard.dead_letters: consumer stop failed", exc_info=True)


# -- the sampler --------------------------------------------------------------------------


class Sampler:
    """Takes a sample every `interval_s` (slower when sampling is slow) into `ring`."""

    DATABASE_TIMEOUT_S = 10.0
    BROKER_TIMEOUT_S = 15.0

    def __init__(self, database_url: str, bootstrap: str, dead_letter_topic: str,
                 ring: SampleRing | None = None, clock: Callable[[], float] = time.time,
                 kafka_options: Mapping[str, Any] | None = None) -> None:
        self.database_url = database_url
        self.ring = ring or SampleRing()
        self._clock = clock
        self._engine: Any = None
        self._watch = DeadLetterWatch(bootstrap, dead_letter_topic, client_options=kafka_options) if bootstrap else None
        self._lock = asyncio.Lock()
        self._failing: set[str] = set()

    def _database(self) -> Any:
        if self._engine is None:
            from epochflow.sinks.schema import create_engine

            self._engine = create_engine(self.database_url, pool_size=1, max_overflow=1)
        return self._engine

    async def sample_once(self) -> Sample:
        async with self._lock:
            started, at = time.monotonic(), self._clock()
            errors: dict[str, str] = {}
            panels = rows_written = None
            if self.database_url:
                try:
                    reading = await asyncio.wait_for(self._read_database(), self.DATABASE_TIMEOUT_S)
                    panels = shape_panels(reading)
                    rows_written = {table: stats.rows_written for table, stats in reading.tables.items()}
                except Exception as error:  # the page shows it; the sampler goes on
                    errors["database"] = describe(error)
            else:
                errors["database"] = "no database configured (DATABASE_URL)"
            dead_letters = None
            if self._watch is not None:
                try:
                    dead_letters = await asyncio.wait_for(self._watch.read(at), self.BROKER_TIMEOUT_S)
                    if dead_letters["stale"]:
                        errors["dead_letters"] = f"no answer from the broker about {self._watch.topic} lately"
                except Exception as error:
                    await self._watch.close()
                    errors["dead_letters"] = describe(error)
            else:
                errors["dead_letters"] = "no broker configured (EPOCHFLOW_KAFKA_URL)"
            previous = self.ring.latest(lambda s: s.rows_written is not None)
            sample = Sample(
                at=at,
                duration_s=time.monotonic() - started,
                panels=panels,
                rows_written=rows_written,
                throughput=throughput(previous, rows_written, at),
                dead_letters=dead_letters,
                errors=errors,
            )
            self.ring.append(sample)
            self._log_changes(errors)
            return sample

    async def _read_database(self) -> DatabaseReading:
        from epochflow.sinks.reads.dashboard import read_dashboard

        return await read_dashboard(self._database())

    def _log_changes(self, errors: Mapping[str, str]) -> None:
        # once per change, not every two seconds
        for source in set(errors) - self._failing:
            log.warning("dashboard.sample: %s unavailable: %s", source, errors[source])
        for source in self._failing - set(errors):
            log.info("dashboard.sample: %s available again", source)
        self._failing = set(errors)

    async def payload(self) -> dict[str, Any]:
        if not len(self.ring):  # the first request of a fresh worker does not wait a round
            await self.sample_once()
        return dashboard_payload(self.ring, self._clock())

    async def run(self) -> None:
        try:
            while True:
                sample = await self.sample_once()
                # slow down rather than query more than MAX_DUTY of the time
                pause = max(self.ring.interval_s - sample.duration_s, sample.duration_s * (1 / MAX_DUTY - 1))
                await asyncio.sleep(pause)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._watch is not None:
            await self._watch.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()
