"""The operations dashboard's pure part: the samples and their ring buffer, the shaping
of a database reading into panels, of the ring into chart series and of both into
`data.json`. No Faust, no I/O, no clock read: the time comes in as an argument. The
sampler (`sampler.py`) fills the ring; the views (`views.py`) serve what this shapes.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from epochflow.domain import fanout
from epochflow.domain.model import KeyStatus
from epochflow.domain.scheduling import JobStatus
from epochflow.sinks.reads.dashboard import (
    INDEXED_JOB_STATUSES,
    DatabaseReading,
    KeyGroup,
    OpenedEpoch,
    ResetJob,
    ResetJobCount,
    ValuationJobGroup,
)
from epochflow.sinks.reads.query import OPEN_JOB_STATUSES

INTERVAL_S = 2.0  # one sample every two seconds ...
WINDOW_S = 30 * 60.0  # ... for the last thirty minutes
REFRESH_S = 3.0  # how often the page asks for data.json
HISTORY_POINTS = 450  # chart points per series sent to the page (the ring holds up to 900)
TEXT_LIMIT = 300  # characters of a dead letter's reason or raw message shown

# plain strings: they become the keys of the JSON the page reads
KEY_STATUSES = tuple(status.value for status in KeyStatus)
RESET_JOB_STATUSES = tuple(status.value for status in fanout.ResetJobStatus)
VALUATION_JOB_STATUSES = tuple(status.value for status in JobStatus)
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
    "keys_current": lambda s: _dig(s.panels, "keys", "by_status", KeyStatus.CURRENT),
    "keys_reprocessing": lambda s: _dig(s.panels, "keys", "by_status", KeyStatus.REPROCESSING),
    "jobs_runnable": lambda s: _dig(s.panels, "valuation_queue", "runnable"),
    "jobs_blocked": lambda s: _dig(s.panels, "valuation_queue", "blocked"),
    "jobs_processing": lambda s: _dig(s.panels, "valuation_queue", "processing"),
    "reset_jobs_pending": lambda s: _dig(s.panels, "reprocessing_queue", "jobs_by_status", fanout.ResetJobStatus.PENDING),
    "reset_jobs_processing": lambda s: _dig(s.panels, "reprocessing_queue", "jobs_by_status", fanout.ResetJobStatus.PROCESSING),
    "triggers_pending": lambda s: _dig(s.panels, "reprocessing_queue", "triggers_pending"),
    "max_lag_days": lambda s: _dig(s.panels, "watermark_lag", "max_days"),
    "keys_behind": lambda s: _dig(s.panels, "watermark_lag", "keys_behind"),
    "rows_per_s": lambda s: _dig(s.throughput, "rows_per_s"),
    "dead_letters": lambda s: _dig(s.dead_letters, "count"),
}


# -- shaping a database reading into panels ----------------------------------------------


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
        "opened_epochs": [opened_epoch_entry(e) for e in reading.opened_epochs],
    }


def opened_epoch_entry(opened: OpenedEpoch) -> dict[str, Any]:
    """A key a transaction moved to a new epoch, with the link to why its first rebuilt
    day changed (`GET /positions/{p}/{s}/changes/?date=...`)."""
    day = opened.epoch_rebuilt_from
    path = f"/positions/{quote(opened.portfolio_id, safe='')}/{quote(opened.security_id, safe='')}/changes/"
    return {
        "portfolio_id": opened.portfolio_id,
        "security_id": opened.security_id,
        "epoch": opened.epoch,
        "transaction_id": opened.epoch_trigger,
        "rebuilt_from": _iso(day),
        "status": opened.status,
        "at": _iso(opened.updated_at),
        "changes_url": f"{path}?date={day.isoformat()}" if day else None,
    }


def infer_business_date(groups: Iterable[KeyGroup], jobs: Iterable[ValuationJobGroup]) -> date | None:
    """The latest business date as PostgreSQL shows it (the date itself lives in the
    workers' tables): the latest watermark of any key, or the latest date of an open
    valuation job (the scheduler plans jobs up to the business date as soon as it moves)."""
    dates = [g.watermark_date for g in groups if g.watermark_date is not None]
    dates += [j.latest_date for j in jobs if j.status in OPEN_JOB_STATUSES and j.latest_date is not None]
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
        if group.status == JobStatus.PENDING:
            if group.blocked:
                blocked += group.jobs
            else:
                runnable += group.jobs
    shown = {status: by_status.get(status, 0) if exact or status in INDEXED_JOB_STATUSES else None
             for status in VALUATION_JOB_STATUSES}
    shown.update({status: n for status, n in by_status.items() if status not in shown})
    finished_estimate = None
    if not exact and live_rows is not None:
        finished_estimate = max(0, live_rows - sum(by_status.values()))
    return {
        "by_status": shown,
        "runnable": runnable,
        "blocked": blocked,
        "processing": by_status.get(JobStatus.PROCESSING, 0),
        "failed": by_status.get(JobStatus.FAILED, 0),
        "open": runnable + blocked + by_status.get(JobStatus.PROCESSING, 0),
        "exact": exact,
        "finished_estimate": finished_estimate,
    }


def reprocessing_queue(jobs: Mapping[str, ResetJobCount], triggers_pending: int) -> dict[str, Any]:
    by_status = {status: 0 for status in RESET_JOB_STATUSES}
    by_status.update({status: count.jobs for status, count in jobs.items()})
    return {
        "jobs_by_status": by_status,
        "open": sum(by_status[status] for status in fanout.OPEN),
        "triggers_pending": triggers_pending,
    }


def fanout_progress(jobs: Mapping[str, ResetJobCount], open_jobs: Iterable[ResetJob],
                    finished_jobs: Iterable[ResetJob]) -> dict[str, Any]:
    """Keys reset of keys to reset over every open job, and the open jobs (oldest first)
    and the last finished ones, each with its own progress."""
    open_counts = [jobs[s] for s in fanout.OPEN if s in jobs]
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
        "fraction": 1.0 if job.status == fanout.ResetJobStatus.COMPLETE else _fraction(job.keys_reset, job.keys_total),
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
        "opened_epochs": panels.get("opened_epochs"),
        "throughput": dict(with_rates.throughput) if with_rates and with_rates.throughput else None,
        "dead_letters": dict(with_dead.dead_letters) if with_dead and with_dead.dead_letters else None,
        "history": ring.series(max_points),
    }


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _iso_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def describe(error: BaseException) -> str:
    return _clip(f"{type(error).__name__}: {error}") or type(error).__name__
