"""Price and FX corrections at scale: instrument-level triggers, the durable
RESET_WATERMARKS job queue and the rate limiter that paces the fan-out.

A *subject* is what a correction is about: `price|SECURITY` or `fx|FROM|TO` (see `keys`). Each subject
has one record per partition of the keys it serves: at most one pending trigger (the
earliest impacted date of the corrections not yet queued) and at most one open job.

    trigger --cycle--> job PENDING --claim--> PROCESSING --(every holder reset)--> COMPLETE
                                                   \\--(past max_attempts)--------> FAILED

Turning a trigger into a job rewrites one record, so a crash either keeps the trigger or
has the job: a trigger is never lost and never produces two jobs. A job remembers how
many holders it has reset (its cursor), so a resumed job neither skips nor repeats a key;
each reset also names its job, so a command re-sent after a crash is recognised by the
key and has no effect.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum

from epochflow.domain.keys import reset_job_id

DAY = timedelta(days=1)
JOB_TYPE = "RESET_WATERMARKS"


class ResetJobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


OPEN = (ResetJobStatus.PENDING, ResetJobStatus.PROCESSING)
ENDED = (ResetJobStatus.COMPLETE, ResetJobStatus.FAILED)


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """The fan-out's pace. Every value comes from the settings, which own the defaults
    (see `agents.configs.fanout_config`)."""

    claim_batch: int  # jobs PROCESSING at once, per partition
    keys_per_cycle: int  # most resets one job sends in one cycle
    rate_per_s: float  # resets per second, per worker
    # keys reset but not CURRENT again, per worker: the fan-out never has more than this
    # many keys being revalued at once, so the live flow keeps its share of the pipeline
    max_in_flight: int
    in_flight_timeout_s: float  # a key not CURRENT again by then no longer counts
    max_attempts: int  # a job whose worker died this often is FAILED, for an operator


@dataclass(frozen=True, slots=True)
class Trigger:
    earliest: date
    ref_offset: int  # the correction's offset on the partition's reference topic
    created_at: float
    corrections: int = 1


@dataclass(frozen=True, slots=True)
class ResetJob:
    job_id: str
    earliest: date
    ref_offset: int
    created_at: float
    status: ResetJobStatus = ResetJobStatus.PENDING
    attempt_count: int = 0
    last_attempted_at: float | None = None
    failure_reason: str | None = None
    cursor: int = 0  # holders reset so far, in the holders index's order
    finished_at: float | None = None

    @property
    def reset_to(self) -> date:
        return self.earliest - DAY


@dataclass(frozen=True, slots=True)
class SubjectState:
    subject: str
    partition: int
    trigger: Trigger | None = None
    job: ResetJob | None = None
    jobs_created: int = 0
    version: int = 0  # every change takes the next number (the sink keeps the highest)

    @property
    def open(self) -> bool:
        return self.trigger is not None or (self.job is not None and self.job.status in OPEN)


def is_correction(day: date, business_date: date | None) -> bool:
    """A price or rate that changed for a day before the business date corrects days
    already valued (or due to be). Without a business date nothing is valued yet."""
    return business_date is not None and day < business_date


def on_correction(state: SubjectState, day: date, ref_offset: int, now: float) -> SubjectState:
    """A back-dated price or rate for `day`: the trigger keeps the earliest impacted date
    (a later, earlier-dated correction moves it back; a later-dated one does not) and the
    latest reference offset (a reset must wait until valuation has seen every correction)."""
    t = state.trigger
    if t is None:
        trigger = Trigger(day, ref_offset, now)
    else:
        trigger = Trigger(min(t.earliest, day), max(t.ref_offset, ref_offset), t.created_at, t.corrections + 1)
    return replace(state, trigger=trigger, version=state.version + 1)


def queue(state: SubjectState, now: float) -> SubjectState:
    """The cycle's first step: the trigger becomes a PENDING job when the subject has no
    open job, or joins the open job while nobody has started it yet. A job already
    PROCESSING is not widened (its cursor is past some holders): the trigger waits."""
    t, job = state.trigger, state.job
    if t is None:
        return state
    if job is not None and job.status is ResetJobStatus.PENDING:
        job = replace(job, earliest=min(job.earliest, t.earliest), ref_offset=max(job.ref_offset, t.ref_offset))
        return replace(state, trigger=None, job=job, version=state.version + 1)
    if job is not None and job.status is ResetJobStatus.PROCESSING:
        return state
    number = state.jobs_created + 1
    job = ResetJob(reset_job_id(state.subject, state.partition, number), t.earliest, t.ref_offset, now)
    return replace(state, trigger=None, job=job, jobs_created=number, version=state.version + 1)


def claim_waits(state: SubjectState, processing: int, cfg: FanoutConfig) -> bool:
    """A PENDING job is not claimed while `claim_batch` jobs of its partition are already
    PROCESSING (counted over the cycle so far)."""
    return state.job is not None and state.job.status is ResetJobStatus.PENDING and processing >= cfg.claim_batch


def interrupted(job: ResetJob | None, working: Collection[str]) -> bool:
    """A PROCESSING job that this worker process neither claimed nor resumed (`working`):
    the worker that ran it died, or lost its partition."""
    return job is not None and job.status is ResetJobStatus.PROCESSING and job.job_id not in working


def claim(state: SubjectState, now: float, cfg: FanoutConfig, interrupted: bool = False) -> SubjectState:
    """PENDING -> PROCESSING (an attempt). A PROCESSING job this worker did not start was
    `interrupted` (its worker died): it resumes at its cursor as a new attempt; past
    `max_attempts` it is FAILED, for an operator, with what it had done."""
    job = state.job
    if job is None:
        return state
    if job.status is ResetJobStatus.PENDING:
        job = replace(job, status=ResetJobStatus.PROCESSING, attempt_count=job.attempt_count + 1, last_attempted_at=now)
    elif job.status is ResetJobStatus.PROCESSING and interrupted:
        if job.attempt_count >= cfg.max_attempts:
            job = replace(job, status=ResetJobStatus.FAILED, finished_at=now,
                          failure_reason=f"interrupted {job.attempt_count} times; {job.cursor} keys reset")
        else:
            job = replace(job, attempt_count=job.attempt_count + 1, last_attempted_at=now,
                          failure_reason=f"resumed after an interruption at key {job.cursor}")
    else:
        return state
    return replace(state, job=job, version=state.version + 1)


def take(state: SubjectState, holders: int, budget: int, now: float) -> tuple[SubjectState, range]:
    """Advance a PROCESSING job by up to `budget` holders: the positions in the holders
    index to reset now. The job is COMPLETE once its cursor has passed every holder known
    at that moment (a key that starts holding later is valued with the corrected data)."""
    job = state.job
    if job is None or job.status is not ResetJobStatus.PROCESSING:
        return state, range(0)
    end = min(holders, job.cursor + max(budget, 0))
    batch = range(job.cursor, end)
    if end >= holders:
        job = replace(job, cursor=end, status=ResetJobStatus.COMPLETE, last_attempted_at=now, finished_at=now)
    elif batch:
        job = replace(job, cursor=end, last_attempted_at=now)
    else:
        return state, batch
    return replace(state, job=job, version=state.version + 1), batch


def resets_wanted(holders: int, cursor: int, room: int | None, cfg: FanoutConfig) -> int:
    """How many resets a PROCESSING job asks the rate limiter for this cycle: at most
    `keys_per_cycle`, the holders it has not reset yet, and the room the in-flight window
    has (None: no window)."""
    want = min(cfg.keys_per_cycle, holders - cursor)
    return want if room is None else min(want, room)


def pace_limiter(cfg: FanoutConfig, tick_s: float, now: float) -> RateLimiter:
    """One budget for a whole worker (its partitions share the configured rate), with a
    tick's worth of resets saved up at most (at least one)."""
    return RateLimiter(cfg.rate_per_s, burst=max(cfg.rate_per_s * tick_s, 1.0), now=now)


class RateLimiter:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self.tokens = self.burst
        self.at = now

    def take(self, want: int, now: float) -> int:
        """Grant up to `want` tokens now (whole ones)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        granted = max(0, min(want, int(self.tokens)))
        self.tokens -= granted
        return granted


class InFlight:
    """Keys reset and not yet seen CURRENT again with the correction: the window that paces
    the fan-out by what the pipeline actually absorbs, whatever its speed."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self.sent: dict[str, tuple[float, int]] = {}  # key -> (sent at, the reset's ref_offset)

    def room(self, now: float) -> int:
        expired = [key for key, (at, _) in self.sent.items() if now - at > self.timeout_s]
        for key in expired:
            del self.sent[key]
        return max(0, self.limit - len(self.sent))

    def add(self, key: str, now: float, ref_offset: int = -1) -> None:
        self.sent[key] = (now, ref_offset)

    def current_again(self, key: str, as_of: float, ref_floor: int = -1) -> None:
        """The key was CURRENT at `as_of` having taken in corrections up to `ref_floor`:
        done, if that is after its reset was sent and includes the reset's correction."""
        found = self.sent.get(key)
        if found is not None and as_of > found[0] and ref_floor >= found[1]:
            del self.sent[key]
