"""The operations dashboard of the api role: `GET /dashboard/` (one self-contained HTML
page, `dashboard.html` beside this module) and `GET /dashboard/data.json` (what it draws).

A sampler task in the api worker reads PostgreSQL (`epochflow.sinks.dashboard_reads`) and
the size of the dead-letter topic every `INTERVAL_S`, and keeps the samples of the last
`WINDOW_S` in a ring buffer: the charts have history from the moment the worker started,
and however many browsers poll, the database is read once per interval. When a sample
takes long (a large database), the sampler slows down rather than spend more than
`MAX_DUTY` of its time querying.

The shaping of a sample into panels and of the ring into chart series is pure (no I/O, the
time comes in as an argument) and tested in `tests/unit/web/test_dashboard.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cache
from importlib import resources
from typing import Any

from epochflow.sinks.dashboard_reads import (
    DatabaseReading,
    KeyGroup,
    ResetJob,
    ResetJobCount,
    ValuationJobGroup,
)

log = logging.getLogger("epochflow.dashboard")

INTERVAL_S = 2.0  # one sample every two seconds ...
WINDOW_S = 30 * 60.0  # ... for the last thirty minutes
REFRESH_S = 3.0  # how often the page asks for data.json
MAX_DUTY = 0.2  # at most this share of the sampler's time is spent sampling
HISTORY_POINTS = 450  # chart points per series sent to the page (the ring holds up to 900)
RECENT_DEAD_LETTERS = 5
TEXT_LIMIT = 300  # characters of a dead letter's reason or raw message shown

KEY_STATUSES = ("CURRENT", "REPROCESSING")
RESET_JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "FAILED")
VALUATION_JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETE", "SKIPPED_NO_POSITION", "FAILED")
# days a key's watermark is behind the business date: (label, from, to inclusive)
LAG_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1", 1, 1),
    ("2-3", 2, 3),
    ("4-7", 4, 7),
    ("8-30", 8, 30),
    ("31-90", 31, 90),
    ("> 90", 91, None),
)


# -- samples and the ring buffer ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """What one sampling round saw. A part that could not be read is None, with the reason
    in `errors` under "database" or "dead_letters"."""

    at: float  # unix seconds
    duration_s: float
    panels: Mapping[str, Any] | None  # keys, valuation_queue, reprocessing_queue, watermark_lag, fanout
    rows_written: Mapping[str, int] | None  # per table, cumulative (PostgreSQL's statistics)
    throughput: Mapping[str, Any] | None
    dead_letters: Mapping[str, Any] | None
    errors: Mapping[str, str] = field(default_factory=dict)


class SampleRing:
    """The samples of the last `window_s` seconds, oldest first; at most one per
    `interval_s` is expected, so `window_s / interval_s` of them are kept at most."""

    def __init__(self, window_s: float = WINDOW_S, interval_s: float = INTERVAL_S) -> None:
        if window_s <= 0 or interval_s <= 0:
            raise ValueError("window_s and interval_s must be positive")
        self.window_s = window_s
        self.interval_s = interval_s
        self._samples: deque[Sample] = deque(maxlen=int(window_s / interval_s) + 1)

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    def __len__(self) -> int:
        return len(self._samples)

    def append(self, sample: Sample) -> None:
        """Add the newest sample and forget those older than the window before it."""
        self._samples.append(sample)
        oldest = sample.at - self.window_s
        while self._samples and self._samples[0].at < oldest:
            self._samples.popleft()

    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def latest(self, where: Callable[[Sample], bool] | None = None) -> Sample | None:
        """The newest sample (that satisfies `where`)."""
        for sample in reversed(self._samples):
            if where is None or where(sample):
                return sample
        return None

    def series(self, max_points: int = HISTORY_POINTS) -> dict[str, list]:
        """Chart data: `t` (unix seconds) and one list per `HISTORY_SERIES`, aligned, with
        None where a sample could not read the value; thinned evenly to `max_points`
        (always keeping the oldest and the newest sample)."""
        picked = [self._samples[i] for i in spread(len(self._samples), max_points)]
        data: dict[str, list] = {"t": [round(s.at, 3) for s in picked]}
        for name, value_of in HISTORY_SERIES.items():
            data[name] = [value_of(s) for s in picked]
        return data


def spread(count: int, max_points: int) -> list[int]:
    """Up to `max_points` indices of 0..count-1, evenly spaced, first and last included."""
    if count <= max_points:
        return list(range(count))
    if max_points <= 1:
        return [count - 1][:max_points]
    step = (count - 1) / (max_points - 1)
    return sorted({round(i * step) for i in range(max_points)})


def _dig(value: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


HISTORY_SERIES: dict[str, Callable[[Sample], Any]] = {
    "keys_current": lambda s: _dig(s.panels, "keys", "by_status", "CURRENT"),
    "keys_reprocessing": lambda s: _dig(s.panels, "keys", "by_status", "REPROCESSING"),
    "jobs_runnable": lambda s: _dig(s.panels, "valuation_queue", "runnable"),
    "jobs_blocked": lambda s: _dig(s.panels, "valuation_queue", "blocked"),
    "jobs_processing": lambda s: _dig(s.panels, "valuation_queue", "processing"),
    "reset_jobs_pending": lambda s: _dig(s.panels, "reprocessing_queue", "jobs_by_status", "PENDING"),
    "reset_jobs_processing": lambda s: _dig(s.panels, "reprocessing_queue", "jobs_by_status", "PROCESSING"),
    "triggers_pending": lambda s: _dig(s.panels, "reprocessing_queue", "triggers_pending"),
    "max_lag_days": lambda s: _dig(s.panels, "watermark_lag", "max_days"),
    "keys_behind": lambda s: _dig(s.panels, "watermark_lag", "keys_behind"),
    "rows_per_s": lambda s: _dig(s.throughput, "rows_per_s"),
    "dead_letters": lambda s: _dig(s.dead_letters, "count"),
}


# -- shaping a database reading into panels (pure) ----------------------------------------


def shape_panels(reading: DatabaseReading) -> dict[str, Any]:
    """The panels PostgreSQL feeds, as plain JSON-ready data."""
    business_date = infer_business_date(reading.key_groups, reading.valuation_jobs)
    return {
        "business_date": _iso(business_date),
        "keys": key_counts(reading.key_groups),
        "valuation_queue": valuation_queue(reading.valuation_jobs, reading.valuation_counts_exact,
                                           _live_rows(reading, "portfolio_valuation_jobs")),
        "reprocessing_queue": reprocessing_queue(reading.reset_jobs, reading.triggers_pending),
        "watermark_lag": watermark_lag(reading.key_groups, business_date),
        "fanout": fanout_progress(reading.reset_jobs, reading.open_reset_jobs, reading.finished_reset_jobs),
    }


def infer_business_date(groups: Iterable[KeyGroup], jobs: Iterable[ValuationJobGroup]) -> date | None:
    """The latest business date as PostgreSQL shows it (the date itself lives in the
    workers' tables): the latest watermark of any key, or the latest date of an open
    valuation job (the scheduler plans jobs up to the business date as soon as it moves)."""
    dates = [g.watermark_date for g in groups if g.watermark_date is not None]
    dates += [j.latest_date for j in jobs if j.status in ("PENDING", "PROCESSING") and j.latest_date is not None]
    return max(dates, default=None)


def key_counts(groups: Iterable[KeyGroup]) -> dict[str, Any]:
    by_status: Counter[str] = Counter({status: 0 for status in KEY_STATUSES})
    waiting = 0
    for group in groups:
        by_status[group.status] += group.keys
        waiting += group.waiting_for_data
    return {"total": sum(by_status.values()), "by_status": dict(by_status), "waiting_for_data": waiting}


def watermark_lag(groups: Iterable[KeyGroup], business_date: date | None) -> dict[str, Any]:
    """Days each key's watermark is behind `business_date`: the largest, how many keys are
    behind at all, and how many fall in each of `LAG_BUCKETS`; keys never valued (no
    watermark) are counted apart."""
    counts = [0] * len(LAG_BUCKETS)
    unvalued = behind = 0
    largest: int | None = None
    for group in groups:
        if group.watermark_date is None or business_date is None:
            unvalued += group.keys
            continue
        days = max(0, (business_date - group.watermark_date).days)
        largest = days if largest is None else max(largest, days)
        behind += group.keys if days > 0 else 0
        counts[_bucket_of(days)] += group.keys
    return {
        "business_date": _iso(business_date),
        "max_days": largest,
        "keys_behind": behind,
        "unvalued": unvalued,
        "buckets": [
            {"label": label, "from_days": low, "to_days": high, "keys": n}
            for (label, low, high), n in zip(LAG_BUCKETS, counts)
        ],
    }


def _bucket_of(days: int) -> int:
    for index, (_, low, high) in enumerate(LAG_BUCKETS):
        if days >= low and (high is None or days <= high):
            return index
    return len(LAG_BUCKETS) - 1


def valuation_queue(groups: Iterable[ValuationJobGroup], exact: bool, live_rows: int | None = None) -> dict[str, Any]:
    """Valuation jobs by status; PENDING split into runnable and blocked on missing data.
    When the job table is large only the open and FAILED statuses are counted (`exact`
    False) and the finished jobs are estimated from the table's row estimate."""
    by_status: Counter[str] = Counter()
    runnable = blocked = 0
    for group in groups:
        by_status[group.status] += group.jobs
        if group.status == "PENDING":
            if group.blocked:
                blocked += group.jobs
            else:
                runnable += group.jobs
    shown = {status: by_status.get(status, 0) if exact or status in ("PENDING", "PROCESSING", "FAILED") else None
             for status in VALUATION_JOB_STATUSES}
    shown.update({status: n for status, n in by_status.items() if status not in shown})
    finished_estimate = None
    if not exact and live_rows is not None:
        finished_estimate = max(0, live_rows - sum(by_status.values()))
    return {
        "by_status": shown,
        "runnable": runnable,
        "blocked": blocked,
        "processing": by_status.get("PROCESSING", 0),
        "failed": by_status.get("FAILED", 0),
        "open": runnable + blocked + by_status.get("PROCESSING", 0),
        "exact": exact,
        "finished_estimate": finished_estimate,
    }


def reprocessing_queue(jobs: Mapping[str, ResetJobCount], triggers_pending: int) -> dict[str, Any]:
    by_status = {status: 0 for status in RESET_JOB_STATUSES}
    by_status.update({status: count.jobs for status, count in jobs.items()})
    return {
        "jobs_by_status": by_status,
        "open": by_status["PENDING"] + by_status["PROCESSING"],
        "triggers_pending": triggers_pending,
    }


def fanout_progress(jobs: Mapping[str, ResetJobCount], open_jobs: Iterable[ResetJob],
                    finished_jobs: Iterable[ResetJob]) -> dict[str, Any]:
    """Keys reset of keys to reset over every open job, and the open jobs (oldest first)
    and the last finished ones, each with its own progress."""
    open_counts = [jobs[s] for s in ("PENDING", "PROCESSING") if s in jobs]
    keys_reset = sum(c.keys_reset for c in open_counts)
    keys_total = sum(c.keys_total for c in open_counts)
    return {
        "open_jobs": sum(c.jobs for c in open_counts),
        "keys_reset": keys_reset,
        "keys_total": keys_total,
        "fraction": _fraction(keys_reset, keys_total),
        "open": [reset_job_entry(j) for j in open_jobs],
        "recent": [reset_job_entry(j) for j in finished_jobs],
    }


def reset_job_entry(job: ResetJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "subject": job.subject,
        "partition": job.partition,
        "status": job.status,
        "keys_reset": job.keys_reset,
        "keys_total": job.keys_total,
        "fraction": 1.0 if job.status == "COMPLETE" else _fraction(job.keys_reset, job.keys_total),
        "attempt_count": job.attempt_count,
        "earliest_impacted_date": _iso(job.earliest_impacted_date),
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "failure_reason": _clip(job.failure_reason),
    }


def _fraction(done: int, total: int) -> float | None:
    # a job still looking for its holders has no total yet: unknown, not 0 %
    return None if total <= 0 else min(1.0, done / total)


def _live_rows(reading: DatabaseReading, table: str) -> int | None:
    stats = reading.tables.get(table)
    return None if stats is None else stats.live_rows


def throughput(previous: Sample | None, rows_written: Mapping[str, int] | None, at: float) -> dict[str, Any] | None:
    """Rows written per second since `previous`, in total and per table, from PostgreSQL's
    cumulative counters; a counter that went backwards (statistics reset, restarted
    database) counts as zero. Without an earlier sample there is no rate yet (None), only
    the totals."""
    if rows_written is None:
        return None
    before = previous.rows_written if previous is not None else None
    elapsed = at - previous.at if previous is not None else 0.0
    rates: dict[str, float | None] = {}
    for table, written in rows_written.items():
        if before is None or elapsed <= 0:
            rates[table] = None
        else:
            rates[table] = max(0, written - before.get(table, written)) / elapsed
    known = [r for r in rates.values() if r is not None]
    return {
        "rows_per_s": round(sum(known), 3) if known else None,
        "interval_s": round(elapsed, 3) if before is not None and elapsed > 0 else None,
        "rows_written": sum(rows_written.values()),
        "by_table": {
            table: {"rows_per_s": None if rates[table] is None else round(rates[table], 3), "rows_written": written}
            for table, written in sorted(rows_written.items())
        },
    }


def dead_letter_entry(value: bytes | None, offset: int) -> dict[str, Any]:
    """One dead-letter record as the page lists it (see `agents.batching.dead_letter_record`);
    a record that is not that JSON is shown as it is."""
    text = (value or b"").decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"offset": offset, "stage": None, "reason": "not a dead-letter record", "at": None,
                "source": None, "raw": _clip(text)}
    source = f"{doc.get('topic')}[{doc.get('partition')}]@{doc.get('offset')}" if doc.get("topic") else None
    return {
        "offset": offset,
        "stage": _clip(_text(doc.get("stage"))),
        "reason": _clip(_text(doc.get("reason"))),
        "at": _clip(_text(doc.get("at"))),
        "source": _clip(source),
        "raw": _clip(_text(doc.get("raw"))),
    }


def dashboard_payload(ring: SampleRing, now: float, *, refresh_s: float = REFRESH_S,
                      max_points: int = HISTORY_POINTS) -> dict[str, Any]:
    """data.json: the newest figures of each source (each with the time it was read), the
    errors of the newest sampling round, and the history series."""
    latest = ring.latest()
    with_db = ring.latest(lambda s: s.panels is not None)
    with_rates = ring.latest(lambda s: s.throughput is not None)
    with_dead = ring.latest(lambda s: s.dead_letters is not None)
    panels = dict(with_db.panels) if with_db and with_db.panels else {}
    stale_after = max(3 * ring.interval_s, 10.0)
    return {
        "generated_at": _iso_ts(now),
        "refresh_s": refresh_s,
        "sampler": {
            "interval_s": ring.interval_s,
            "window_s": ring.window_s,
            "samples": len(ring),
            "last_sample_at": _iso_ts(latest.at) if latest else None,
            "last_duration_ms": round(latest.duration_s * 1000, 1) if latest else None,
            "stale": latest is None or now - latest.at > stale_after,
        },
        "errors": dict(latest.errors) if latest else {},
        "database_as_of": _iso_ts(with_db.at) if with_db else None,
        "business_date": panels.get("business_date"),
        "keys": panels.get("keys"),
        "valuation_queue": panels.get("valuation_queue"),
        "reprocessing_queue": panels.get("reprocessing_queue"),
        "watermark_lag": panels.get("watermark_lag"),
        "fanout": panels.get("fanout"),
        "throughput": dict(with_rates.throughput) if with_rates and with_rates.throughput else None,
        "dead_letters": dict(with_dead.dead_letters) if with_dead and with_dead.dead_letters else None,
        "history": ring.series(max_points),
    }


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _iso_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def describe(error: BaseException) -> str:
    return _clip(f"{type(error).__name__}: {error}") or type(error).__name__


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
        from epochflow.sinks.dashboard_reads import read_dashboard

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


# -- Faust wiring (the api role) ----------------------------------------------------------


@cache
def page_html() -> str:
    return resources.files("epochflow.web").joinpath("dashboard.html").read_text(encoding="utf-8")


def _register() -> Sampler:
    from epochflow.app import app, settings
    from epochflow.streams.names import topic_name
    from epochflow.streams.security import client_options
    from epochflow.web.access import Access
    from epochflow.web.routes import ApiView, Operation, route

    sampler = Sampler(settings.database_url, settings.kafka_bootstrap if settings.kafka_url else "",
                      topic_name(settings, "dead-letter"), kafka_options=client_options(settings))
    no_store = {"Cache-Control": "no-store"}

    @route("/dashboard/", tag="operations",
           get=Operation("The operations dashboard (an HTML page that polls /dashboard/data.json)", Access.READ,
                         None, content_type="text/html"))
    class DashboardPage(ApiView):
        async def get(self, request):
            try:
                return self.html(page_html(), headers=no_store)
            except OSError as error:  # a packaging mistake: say so instead of a bare 500
                return self.text(f"dashboard.html is missing from the installed package: {error}", status=500)

    @route("/dashboard/data.json", tag="operations",
           get=Operation("The dashboard's figures: the latest sample and the history the charts draw", Access.READ,
                         None, errors={503: "neither a database nor a broker is configured"}))
    class DashboardData(ApiView):
        async def get(self, request):
            if not settings.database_url and not settings.kafka_url:
                return self.json({"error": "neither a database (DATABASE_URL) nor a broker is configured"},
                                 status=503, headers=no_store)
            return self.json(await sampler.payload(), headers=no_store)

    @app.task
    async def dashboard_sampler() -> None:
        await sampler.run()

    return sampler


SAMPLER = _register()
