"""Position-aware scheduling: which days of a key need valuing, the job lifecycle, retries
with backoff, and the contiguous watermark. The scheduler is the only one that advances a
watermark, and only across days whose jobs all ended.

PENDING -> PROCESSING -> COMPLETE | SKIPPED_NO_POSITION | FAILED; a job blocked on missing
data goes back to PENDING with attempt_count + 1 and waits for the data or the backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum

from epochflow.domain import fencing
from epochflow.domain.keys import position_key, price_subject

DAY = timedelta(days=1)


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETE = "COMPLETE"
    SKIPPED_NO_POSITION = "SKIPPED_NO_POSITION"
    FAILED = "FAILED"


DONE = (JobStatus.COMPLETE, JobStatus.SKIPPED_NO_POSITION)


class Answer(StrEnum):
    """The valuation role's answer to one dispatch."""

    COMPLETE = "COMPLETE"
    SKIPPED_NO_POSITION = "SKIPPED_NO_POSITION"
    BLOCKED = "BLOCKED"  # valued without a price or rate it needs: retried when it arrives
    NOT_READY = "NOT_READY"  # the valuation worker had not read what the dispatch needs yet
    FAILED = "FAILED"
    STALE = "STALE"  # a job of an older epoch than the valuation role's copy of the key


VALUED = (Answer.COMPLETE, Answer.SKIPPED_NO_POSITION)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The first four come from the settings, which own their defaults (see
    `agents.configs.scheduler_config`)."""

    backoff_s: float  # a blocked job is not retried sooner (unless its data arrives)
    max_attempts: int  # past this, the job alerts (and still waits for its data)
    processing_timeout_s: float  # a PROCESSING job older than this is reclaimed
    # jobs PROCESSING per partition, at most (the dispatch window): a backlog waits here,
    # PENDING, instead of in the valuation role's queue, where it would outlast
    # processing_timeout_s and be reclaimed
    max_processing_per_partition: int
    not_ready_delay_s: float = 0.2  # valuation had not seen the positions the job needs yet
    max_in_flight_per_key: int = 1000  # jobs not yet ended, per key
    max_dispatch_per_tick: int = 2000  # per partition and tick, so a backlog never starves live work
    full_pass_s: float = 5.0  # a tick goes over every active key (reclaims) at most this often


@dataclass(frozen=True, slots=True)
class Job:
    day: date
    status: JobStatus = JobStatus.PENDING
    attempt_count: int = 0
    failure_reason: str | None = None
    waiting_on: str | None = None
    not_before: float = 0.0
    dispatched_at: float | None = None
    version: int = 0
    # what the scheduler had seen when it dispatched: the valuation role answers NOT_READY
    # until it has seen as much (positions state version, reference offset)
    state_version: int = 0
    ref_offset: int = -1


@dataclass(frozen=True, slots=True)
class ScheduleKey:
    portfolio_id: str
    security_id: str
    epoch: int = 0
    generation: int = 0
    state_version: int = 0
    watermark: date | None = None
    first_open_date: date | None = None
    jobs: tuple[Job, ...] = ()  # days after the watermark, in order
    alerted: bool = False
    # every job change takes the next number: a job planned again after a reset still gets
    # a higher version than its predecessor for the same day (the sink keeps the highest)
    job_clock: int = 0
    # a price/FX correction's offset on the reference topic: jobs are dispatched asking the
    # valuation role to have read at least this far (it answers NOT_READY until then)
    ref_floor: int = -1

    @property
    def key(self) -> str:
        return position_key(self.portfolio_id, self.security_id)

    def start_day(self) -> date | None:
        """First day to value: after the watermark, never before the first open date."""
        if self.first_open_date is None:
            return None
        if self.watermark is None:
            return self.first_open_date
        return max(self.watermark + DAY, self.first_open_date)

    def processing(self) -> int:
        return sum(1 for j in self.jobs if j.status is JobStatus.PROCESSING)

    def idle(self, business_date: date | None) -> bool:
        start = self.start_day()
        return not self.jobs and (business_date is None or start is None or start > business_date)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send this job to the valuation role."""

    job: Job


@dataclass(frozen=True, slots=True)
class JobChanged:
    """The job's new state, for PostgreSQL."""

    job: Job


@dataclass(frozen=True, slots=True)
class Advance:
    to_date: date


@dataclass(frozen=True, slots=True)
class Reset:
    """Ask the positions role to move the watermark back (same epoch): the key's history
    changed on a day this scheduler has already advanced past, or is advancing past."""

    to_date: date


Output = Dispatch | JobChanged | Advance | Reset


class _Clock:
    def __init__(self, sk: ScheduleKey) -> None:
        self.value = sk.job_clock

    def bump(self, job: Job, **changes) -> Job:
        self.value += 1
        return replace(job, version=self.value, **changes)


def on_position_state(sk: ScheduleKey, epoch: int, generation: int, version: int, watermark: date | None,
                      first_open_date: date | None, changed_from: date | None,
                      ref_floor: int = -1) -> tuple[ScheduleKey, list[Output]]:
    """The positions role's view of the key changed. A new epoch or a reset drops the jobs
    (their outcomes are ignored from now on); a history change on days already valued
    revalues them (a reset when the watermark is past them, possibly by an advance still in
    flight); any change retries blocked jobs at once, since what they waited on may be what
    changed."""
    if not fencing.is_news(epoch, version, sk.epoch, sk.state_version):
        return sk, []
    outputs: list[Output] = []
    jobs = sk.jobs
    in_flight_changed = None
    if not fencing.same_generation(sk.epoch, sk.generation, epoch, generation):
        jobs = ()
    else:
        # our own advance may not have reached the positions role yet
        if sk.watermark is not None and (watermark is None or sk.watermark > watermark):
            watermark = sk.watermark
        if changed_from is not None:
            if watermark is not None and changed_from <= watermark:
                outputs.append(Reset(changed_from - DAY))
            jobs = tuple(j for j in jobs if j.day < changed_from or j.status not in DONE)
            in_flight_changed = changed_from
    if watermark is not None:
        jobs = tuple(j for j in jobs if j.day > watermark)
    clock = _Clock(sk)
    if in_flight_changed is not None:
        # a dispatch in flight may be valued on the old history (jobs and positions reach the
        # valuation role on different topics): dispatch it again (its attempts kept); the
        # answer to the old dispatch no longer matches and is ignored
        superseded = []
        for j in jobs:
            if j.day >= in_flight_changed and j.status is JobStatus.PROCESSING:
                j = clock.bump(j, status=JobStatus.PENDING, not_before=0.0, dispatched_at=None)
                outputs.append(JobChanged(j))
            superseded.append(j)
        jobs = tuple(superseded)
    jobs = tuple(replace(j, not_before=0.0) if j.status is JobStatus.PENDING and j.waiting_on else j for j in jobs)
    return replace(sk, epoch=epoch, generation=generation, state_version=version, watermark=watermark,
                   first_open_date=first_open_date, jobs=jobs, job_clock=clock.value,
                   ref_floor=max(sk.ref_floor, ref_floor)), outputs


def plan(sk: ScheduleKey, business_date: date | None, cfg: SchedulerConfig) -> tuple[ScheduleKey, list[Output]]:
    """Create the missing jobs from the start day to the business date, at most
    `max_in_flight_per_key` not yet ended."""
    start = sk.start_day()
    if business_date is None or start is None or start > business_date:
        return sk, []
    have = {j.day for j in sk.jobs}
    open_jobs = sum(1 for j in sk.jobs if j.status not in DONE)
    clock = _Clock(sk)
    new: list[Job] = []
    day = start
    while day <= business_date and open_jobs + len(new) < cfg.max_in_flight_per_key:
        if day not in have:
            new.append(clock.bump(Job(day)))
        day += DAY
    if not new:
        return sk, []
    jobs = tuple(sorted(sk.jobs + tuple(new), key=lambda j: j.day))
    return replace(sk, jobs=jobs, job_clock=clock.value), [JobChanged(j) for j in new]


def dispatch(sk: ScheduleKey, now: float, limit: int, ref_offset: int) -> tuple[ScheduleKey, list[Output]]:
    """PENDING jobs whose time has come go to the valuation role."""
    outputs: list[Output] = []
    jobs = []
    clock = _Clock(sk)
    for job in sk.jobs:
        if len(outputs) // 2 < limit and job.status is JobStatus.PENDING and job.not_before <= now:
            job = clock.bump(job, status=JobStatus.PROCESSING, dispatched_at=now, state_version=sk.state_version,
                             ref_offset=max(ref_offset, sk.ref_floor))
            outputs += [Dispatch(job), JobChanged(job)]
        jobs.append(job)
    return (replace(sk, jobs=tuple(jobs), job_clock=clock.value), outputs) if outputs else (sk, [])


def reclaim(sk: ScheduleKey, now: float, cfg: SchedulerConfig) -> tuple[ScheduleKey, list[Output]]:
    """A job PROCESSING for too long (its valuation worker died) becomes PENDING again."""
    outputs: list[Output] = []
    jobs = []
    clock = _Clock(sk)
    for job in sk.jobs:
        if job.status is JobStatus.PROCESSING and job.dispatched_at is not None and now - job.dispatched_at > cfg.processing_timeout_s:
            job = clock.bump(job, status=JobStatus.PENDING, failure_reason="reclaimed: no answer within the processing timeout",
                        not_before=0.0, dispatched_at=None)
            outputs.append(JobChanged(job))
        jobs.append(job)
    return (replace(sk, jobs=tuple(jobs), job_clock=clock.value), outputs) if outputs else (sk, [])


@dataclass(frozen=True, slots=True)
class Outcome:
    """The valuation role's answer to one dispatch."""

    day: date
    epoch: int
    job_version: int
    outcome: str  # an Answer
    reason: str | None = None
    waiting_on: str | None = None


def on_outcomes(sk: ScheduleKey, outcomes: list[Outcome], now: float, cfg: SchedulerConfig,
                arrived_since: Callable[[str, int], bool] = lambda what, offset: False) -> tuple[ScheduleKey, list[Output]]:
    """Apply the valuation role's answers (one pass for a whole batch); then advance the
    watermark across contiguous ended days. `arrived_since(what, ref_offset)` tells whether
    data a job waits on arrived after it was dispatched (then it is retried at once)."""
    by_day = {j.day: j for j in sk.jobs}
    clock = _Clock(sk)
    outputs: list[Output] = []
    for o in outcomes:
        job = by_day.get(o.day)
        in_flight = job.version if job is not None and job.status is JobStatus.PROCESSING else None
        if fencing.answer_is_stale(o.epoch, o.job_version, sk.epoch, in_flight):
            continue  # an answer for another epoch, or to a dispatch that was reclaimed or superseded
        # attempt_count counts valuation attempts: a job blocked once, then valued, ends at 2
        if o.outcome in VALUED and arrived_since(price_subject(sk.security_id), job.ref_offset):
            # valued without a price of its security that arrived meanwhile: value it again now
            job = clock.bump(job, status=JobStatus.PENDING, attempt_count=job.attempt_count + 1, not_before=now,
                             dispatched_at=None)
        elif o.outcome == Answer.COMPLETE:
            job = clock.bump(job, status=JobStatus.COMPLETE, attempt_count=job.attempt_count + 1,
                             failure_reason=None, waiting_on=None)
        elif o.outcome == Answer.SKIPPED_NO_POSITION:
            job = clock.bump(job, status=JobStatus.SKIPPED_NO_POSITION, attempt_count=job.attempt_count + 1,
                             failure_reason=None, waiting_on=None)
        elif o.outcome == Answer.BLOCKED:
            changed = sk.state_version > job.state_version or (
                o.waiting_on is not None and arrived_since(o.waiting_on, job.ref_offset))
            job = clock.bump(job, status=JobStatus.PENDING, attempt_count=job.attempt_count + 1, failure_reason=o.reason,
                             waiting_on=o.waiting_on, not_before=now if changed else now + cfg.backoff_s, dispatched_at=None)
        elif o.outcome == Answer.NOT_READY:
            # not an attempt and not a wait for data: the valuation worker had not read what
            # the scheduler had when it dispatched; the job is runnable again shortly (a
            # reason left from an earlier block would show it as waiting for data)
            job = clock.bump(job, status=JobStatus.PENDING, not_before=now + cfg.not_ready_delay_s, dispatched_at=None,
                             failure_reason=None, waiting_on=None)
        elif o.outcome == Answer.FAILED:
            job = clock.bump(job, status=JobStatus.FAILED, attempt_count=job.attempt_count + 1, failure_reason=o.reason)
        else:
            continue
        by_day[o.day] = job
        outputs.append(JobChanged(job))
    if not outputs:
        return sk, []
    sk = replace(sk, jobs=tuple(by_day[j.day] for j in sk.jobs), job_clock=clock.value)
    sk, advanced = _advance(sk)
    if advanced:
        outputs.append(Advance(sk.watermark))
    return sk, outputs


def on_outcome(sk: ScheduleKey, day: date, epoch: int, job_version: int, outcome: str, reason: str | None,
               waiting_on: str | None, now: float, cfg: SchedulerConfig,
               arrived_since: Callable[[str, int], bool] = lambda what, offset: False) -> tuple[ScheduleKey, list[Output]]:
    """One answer (see `on_outcomes`)."""
    return on_outcomes(sk, [Outcome(day, epoch, job_version, outcome, reason, waiting_on)], now, cfg, arrived_since)


def _advance(sk: ScheduleKey) -> tuple[ScheduleKey, bool]:
    day = sk.start_day()
    if day is None:
        return sk, False
    by_day = {j.day: j for j in sk.jobs}
    new_watermark = None
    while day in by_day and by_day[day].status in DONE:
        new_watermark = day
        day += DAY
    if new_watermark is None:
        return sk, False
    jobs = tuple(j for j in sk.jobs if j.day > new_watermark)
    return replace(sk, watermark=new_watermark, jobs=jobs), True


def on_data_arrived(sk: ScheduleKey, what: str) -> ScheduleKey:
    """The price or rate a blocked job waits on arrived: retry it now, not after the backoff."""
    if not any(j.waiting_on == what and j.status is JobStatus.PENDING for j in sk.jobs):
        return sk
    return replace(sk, jobs=tuple(
        replace(j, not_before=0.0) if j.waiting_on == what and j.status is JobStatus.PENDING else j for j in sk.jobs
    ))


def is_live_price(day: date, business_date: date | None) -> bool:
    """A price dated the business date or later (or before any business date) is live data,
    not a correction: the scheduler revalues the days it may have missed
    (`on_price_for_valued_days`); earlier ones are the fan-out's."""
    return business_date is None or day >= business_date


def on_price_for_valued_days(sk: ScheduleKey, day: date) -> tuple[ScheduleKey, list[Output]]:
    """A price dated `day` (the business date or later: not back-dated) arrived after some
    of the key's days from `day` on may have been valued without it: those days are valued
    again. Jobs not yet advanced past are planned again; when the watermark is already past
    `day`, the positions role is asked to move it back (a Reset, same epoch).
    (Back-dated prices and FX corrections are the price fan-out's work.)"""
    # a job in flight is judged by its answer (see on_outcomes: data arrived since dispatch)
    jobs = tuple(j for j in sk.jobs if j.day < day or j.status not in DONE)
    outputs: list[Output] = []
    if sk.watermark is not None and sk.watermark >= day:
        outputs.append(Reset(day - DAY))
    if jobs == sk.jobs and not outputs:
        return sk, []
    return replace(sk, jobs=jobs), outputs


def over_attempts(sk: ScheduleKey, cfg: SchedulerConfig) -> int:
    """Jobs past (more than) `max_attempts` attempts that have not ended well: they alert."""
    return sum(1 for j in sk.jobs if j.attempt_count > cfg.max_attempts and j.status is not JobStatus.COMPLETE)


# ---- the dispatch window ----------------------------------------------------------------
# At most `max_processing_per_partition` jobs of a partition are PROCESSING at once, and a
# tick (or one input's work over several keys) dispatches at most `max_dispatch_per_tick`.
# A backlog so waits PENDING here instead of in the valuation role's queue.

def window_room(processing: int, cfg: SchedulerConfig) -> int:
    """How many more jobs a partition with `processing` PROCESSING jobs may dispatch."""
    return max(0, cfg.max_processing_per_partition - processing)


def processing_after(count: int, before: ScheduleKey | None, after: ScheduleKey) -> int:
    """The partition's PROCESSING count once a key changes from `before` to `after`."""
    delta = after.processing() - (before.processing() if before is not None else 0)
    return max(0, count + delta) if delta else count


def dispatch_limit(budget: int | None, partition_processing: int, stored: ScheduleKey | None, sk: ScheduleKey,
                   cfg: SchedulerConfig) -> int:
    """How many of one key's jobs may be dispatched now: no more than the budget left
    (by default a tick's `max_dispatch_per_tick`) and the window's room, counting the key's
    own PROCESSING jobs as they are in `sk` rather than as `stored`."""
    budget = cfg.max_dispatch_per_tick if budget is None else budget
    in_flight = partition_processing - (stored.processing() if stored is not None else 0) + sk.processing()
    return min(budget, window_room(in_flight, cfg))


def filled(budget: int, partition_processing: int, cfg: SchedulerConfig) -> bool:
    """A pass that only fills the window stops once the budget or the window is used up."""
    return budget <= 0 or window_room(partition_processing, cfg) <= 0


def full_pass_due(now: float, last_full_pass: float | None, cfg: SchedulerConfig) -> bool:
    """Every `full_pass_s` a tick goes over every active key (reclaims, retries after the
    backoff); in between it only fills the window."""
    return last_full_pass is None or now - last_full_pass >= cfg.full_pass_s


def fill_order(keys: tuple[str, ...], cursor: int) -> tuple[tuple[str, ...], int]:
    """The active keys in the order a filling tick visits them, going on from where the
    previous one stopped, and where this one starts (for the next cursor: start + worked)."""
    start = cursor % len(keys)
    return keys[start:] + keys[:start], start
