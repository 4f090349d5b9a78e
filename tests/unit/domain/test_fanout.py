"""The price/FX fan-out core against DESIGN.md ("Back-dated price"): one trigger per subject
keeps the earliest impacted date (and the latest reference offset); a cycle turns it into a
durable RESET_WATERMARKS job, which a worker claims and advances over the holders index in
budgeted batches until every holder is passed; a job whose worker died resumes at its
cursor, and past `max_attempts` is FAILED; the rate limiter is a token bucket.

The property tests drive the pure functions the way the fan-out handler does, with
crashes, and check that no correction is lost and no holder is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.agents.configs import fanout_config
from epochflow.config import Settings
from epochflow.domain.fanout import (
    RateLimiter,
    ResetJob,
    ResetJobStatus,
    SubjectState,
    Trigger,
    claim,
    claim_waits,
    interrupted,
    is_correction,
    on_correction,
    pace_limiter,
    queue,
    resets_wanted,
    take,
)
from epochflow.domain.keys import price_subject

PENDING, PROCESSING = ResetJobStatus.PENDING, ResetJobStatus.PROCESSING
COMPLETE, FAILED = ResetJobStatus.COMPLETE, ResetJobStatus.FAILED
DAY = timedelta(days=1)
SUBJECT = price_subject("S1")
CFG = replace(fanout_config(Settings()), claim_batch=4, keys_per_cycle=500, rate_per_s=1000.0, max_attempts=3)
NOW = 1_000.0


def d(n: int) -> date:
    """Day n of August 2025 (d(0) is 07-31)."""
    return date(2025, 8, 1) + (n - 1) * DAY


def subject(trigger: Trigger | None = None, job: ResetJob | None = None, jobs_created: int = 0,
            partition: int = 3) -> SubjectState:
    return SubjectState(SUBJECT, partition, trigger, job, jobs_created, version=5)


def trigger(n: int, ref_offset: int = 10, corrections: int = 1) -> Trigger:
    return Trigger(d(n), ref_offset, created_at=NOW - 100, corrections=corrections)


def job(n: int, status: ResetJobStatus = PENDING, number: int = 1, **kw) -> ResetJob:
    return ResetJob(f"{SUBJECT}#p3#{number}", d(n), kw.pop("ref_offset", 10), NOW - 50, status, **kw)


# ---- trigger merging -------------------------------------------------------------------

CORRECTIONS = {
    # name: ([(day, ref_offset), ...] in arrival order, earliest, ref_offset, corrections)
    "first-correction-opens-the-trigger": ([(10, 7)], 10, 7, 1),
    "earlier-dated-moves-it-back": ([(10, 7), (4, 8)], 4, 8, 2),
    "later-dated-does-not-move-it": ([(10, 7), (15, 8)], 10, 8, 2),
    "same-day-again": ([(10, 7), (10, 9)], 10, 9, 2),
    "ref-offset-keeps-the-max": ([(10, 9), (4, 3)], 4, 9, 2),
    "many-corrections-counted": ([(12, 1), (9, 2), (20, 3), (11, 4), (9, 5)], 9, 5, 5),
}


@pytest.mark.parametrize("arrivals,earliest,ref_offset,count", [pytest.param(*c, id=n) for n, c in CORRECTIONS.items()])
def test_trigger_keeps_the_earliest_date_and_the_latest_offset(arrivals, earliest, ref_offset, count) -> None:
    state = SubjectState(SUBJECT, 0)
    for i, (n, offset) in enumerate(arrivals):
        before = state
        state = on_correction(state, d(n), offset, NOW + i)
        assert state.version == before.version + 1
    t = state.trigger
    assert (t.earliest, t.ref_offset, t.corrections) == (d(earliest), ref_offset, count)
    assert t.created_at == NOW  # the first correction's time: the trigger's age
    assert state.open and state.job is None


def test_a_correction_leaves_the_job_alone() -> None:
    running = job(5, PROCESSING, attempt_count=1, cursor=2)
    state = on_correction(subject(job=running), d(2), 11, NOW)
    assert state.job == running
    assert state.trigger == Trigger(d(2), 11, NOW)


# ---- queue -----------------------------------------------------------------------------

QUEUES = {
    # name: (trigger day/offset, job before (day, status, offset), jobs_created, job after (id n, day, status, offset), trigger kept)
    "no-job-creates-a-pending-job": ((8, 10), None, 0, (1, 8, PENDING, 10), False),
    "numbering-follows-jobs-created": ((8, 10), None, 4, (5, 8, PENDING, 10), False),
    "pending-job-absorbs-an-earlier-trigger": ((3, 12), (8, PENDING, 10), 1, (1, 3, PENDING, 12), False),
    "pending-job-absorbs-a-later-trigger": ((9, 4), (8, PENDING, 10), 1, (1, 8, PENDING, 10), False),
    "processing-job-leaves-the-trigger-waiting": ((3, 12), (8, PROCESSING, 10), 1, (1, 8, PROCESSING, 10), True),
    "complete-job-is-followed-by-a-new-job": ((3, 12), (8, COMPLETE, 10), 1, (2, 3, PENDING, 12), False),
    "failed-job-is-followed-by-a-new-job": ((9, 12), (8, FAILED, 10), 1, (2, 9, PENDING, 12), False),
}


@pytest.mark.parametrize("t,before,created,after,waits", [pytest.param(*c, id=n) for n, c in QUEUES.items()])
def test_queue(t, before, created, after, waits) -> None:
    old = None if before is None else job(before[0], before[1], ref_offset=before[2])
    state = subject(trigger(*t), old, created)
    new = queue(state, NOW)
    number, n, status, offset = after
    assert (new.job.job_id, new.job.earliest, new.job.status, new.job.ref_offset) == (
        f"{SUBJECT}#p3#{number}", d(n), status, offset)
    if waits:
        assert new == state  # nothing written
    else:
        assert new.trigger is None
        assert new.version == state.version + 1
        assert new.jobs_created == max(created, number)
    if old is None or old.status in (COMPLETE, FAILED):
        assert (new.job.attempt_count, new.job.cursor, new.job.created_at) == (0, 0, NOW)


def test_queue_without_a_trigger_changes_nothing() -> None:
    state = subject(job=job(5, PENDING))
    assert queue(state, NOW) == state


def test_job_reset_to_is_the_day_before_the_earliest() -> None:
    assert job(8).reset_to == d(7)


# ---- claim -----------------------------------------------------------------------------

CLAIMS = {
    # name: (job before, interrupted, status, attempt_count, cursor, failure_reason starts, last_attempted_at)
    "pending-is-claimed": (job(5, PENDING), False, PROCESSING, 1, 0, None, NOW),
    "pending-claimed-by-a-new-worker-too": (job(5, PENDING), True, PROCESSING, 1, 0, None, NOW),
    "own-processing-job-is-left-alone": (job(5, PROCESSING, attempt_count=1, cursor=3, last_attempted_at=1.0),
                                         False, PROCESSING, 1, 3, None, 1.0),
    "interrupted-resumes-at-its-cursor": (job(5, PROCESSING, attempt_count=1, cursor=3, last_attempted_at=1.0),
                                          True, PROCESSING, 2, 3, "resumed after an interruption at key 3", NOW),
    "interrupted-below-max-attempts-resumes": (job(5, PROCESSING, attempt_count=2, cursor=7), True,
                                               PROCESSING, 3, 7, "resumed after an interruption at key 7", NOW),
    "interrupted-at-max-attempts-fails": (job(5, PROCESSING, attempt_count=3, cursor=7, last_attempted_at=1.0), True,
                                          FAILED, 3, 7, "interrupted 3 times; 7 keys reset", 1.0),
    "complete-is-left-alone": (job(5, COMPLETE, attempt_count=1, cursor=9), True, COMPLETE, 1, 9, None, None),
    "failed-is-left-alone": (job(5, FAILED, attempt_count=3, cursor=2), True, FAILED, 3, 2, None, None),
}


@pytest.mark.parametrize("before,interrupted,status,attempts,cursor,reason,attempted",
                         [pytest.param(*c, id=n) for n, c in CLAIMS.items()])
def test_claim(before, interrupted, status, attempts, cursor, reason, attempted) -> None:
    state = subject(job=before)
    new = claim(state, NOW, CFG, interrupted)
    j = new.job
    assert (j.status, j.attempt_count, j.cursor, j.failure_reason, j.last_attempted_at) == (
        status, attempts, cursor, reason, attempted)
    assert (j.job_id, j.earliest, j.ref_offset) == (before.job_id, before.earliest, before.ref_offset)
    assert new.version == (state.version if new == state else state.version + 1)
    assert j.finished_at == (NOW if status is FAILED and before.status is not FAILED else before.finished_at)


def test_claim_without_a_job_changes_nothing() -> None:
    state = subject(trigger(4))
    assert claim(state, NOW, CFG, interrupted=True) == state


def test_a_job_interrupted_every_time_fails_after_max_attempts() -> None:
    state = claim(subject(job=job(5), jobs_created=1), NOW, CFG)
    attempts = [state.job.attempt_count]
    for i in range(10):
        state = claim(state, NOW + i, CFG, interrupted=True)
        attempts.append(state.job.attempt_count)
        if state.job.status is FAILED:
            break
    assert state.job.status is FAILED
    assert attempts == [1, 2, 3, 3]  # attempts 1..max_attempts ran, the next interruption fails it
    assert not state.open  # for an operator: the subject's next trigger starts a new job
    assert queue(on_correction(state, d(1), 20, NOW), NOW).job.job_id == f"{SUBJECT}#p3#2"


# ---- take ------------------------------------------------------------------------------

TAKES = {
    # name: (cursor, holders, budget, batch, cursor after, status after)
    "first-batch": (0, 10, 4, range(0, 4), 4, PROCESSING),
    "middle-batch": (4, 10, 4, range(4, 8), 8, PROCESSING),
    "last-batch-completes": (8, 10, 4, range(8, 10), 10, COMPLETE),
    "exact-budget-completes": (6, 10, 4, range(6, 10), 10, COMPLETE),
    "large-budget-completes-at-once": (0, 10, 1000, range(0, 10), 10, COMPLETE),
    "zero-holders-complete-at-once": (0, 0, 4, range(0), 0, COMPLETE),
    "zero-holders-zero-budget-complete": (0, 0, 0, range(0), 0, COMPLETE),
    "zero-budget-changes-nothing": (3, 10, 0, range(0), 3, PROCESSING),
    "negative-budget-changes-nothing": (3, 10, -5, range(0), 3, PROCESSING),
    "holder-added-after-the-cursor-is-reset-too": (10, 11, 4, range(10, 11), 11, COMPLETE),
}


@pytest.mark.parametrize("cursor,holders,budget,batch,after,status", [pytest.param(*c, id=n) for n, c in TAKES.items()])
def test_take(cursor, holders, budget, batch, after, status) -> None:
    state = subject(job=job(5, PROCESSING, attempt_count=1, cursor=cursor, last_attempted_at=1.0))
    new, sent = take(state, holders, budget, NOW)
    assert sent == batch
    assert (new.job.cursor, new.job.status) == (after, status)
    if not sent and status is PROCESSING:
        assert new == state
    else:
        assert new.version == state.version + 1 and new.job.last_attempted_at == NOW
    assert new.job.finished_at == (NOW if status is COMPLETE else None)


@pytest.mark.parametrize("status", [PENDING, COMPLETE, FAILED], ids=str)
def test_take_only_advances_a_processing_job(status) -> None:
    state = subject(job=job(5, status, cursor=2))
    assert take(state, 10, 4, NOW) == (state, range(0))


def test_take_without_a_job_sends_nothing() -> None:
    state = subject(trigger(3))
    assert take(state, 10, 4, NOW) == (state, range(0))


def test_batches_cover_every_holder_once_and_in_order() -> None:
    state = claim(queue(subject(trigger(5)), NOW), NOW, CFG)
    sent: list[int] = []
    budgets = iter([3, 0, 1, 4, 2, 10])
    while state.job.status is PROCESSING:
        state, batch = take(state, 10, next(budgets), NOW)
        sent += batch
    assert sent == list(range(10))
    assert (state.job.status, state.job.cursor, state.open) == (COMPLETE, 10, False)


# ---- rate limiter ----------------------------------------------------------------------

LIMITS = {
    # name: (rate, burst, [(want, at), ...], granted)
    "starts-full-at-the-burst": (10, None, [(25, 0.0)], [10]),
    "grants-what-is-wanted-within-the-burst": (10, None, [(4, 0.0), (4, 0.0), (4, 0.0)], [4, 4, 2]),
    "empty-bucket-grants-nothing": (10, None, [(10, 0.0), (5, 0.0)], [10, 0]),
    "refills-at-the-rate": (10, None, [(10, 0.0), (100, 0.5)], [10, 5]),
    "refill-capped-at-the-burst": (10, None, [(10, 0.0), (100, 60.0)], [10, 10]),
    "larger-burst": (10, 30, [(100, 0.0), (100, 1.0)], [30, 10]),
    "fractional-tokens-accumulate": (3, None, [(3, 0.0), (5, 0.2), (5, 0.4)], [3, 0, 1]),
    "zero-wanted": (10, None, [(0, 0.0), (10, 0.0)], [0, 10]),
    "clock-going-back-does-not-refill": (10, None, [(10, 5.0), (10, 1.0), (10, 5.5)], [10, 0, 5]),
}


@pytest.mark.parametrize("rate,burst,wants,granted", [pytest.param(*c, id=n) for n, c in LIMITS.items()])
def test_rate_limiter(rate, burst, wants, granted) -> None:
    limiter = RateLimiter(rate, burst, now=0.0)
    assert [limiter.take(want, at) for want, at in wants] == granted


@pytest.mark.parametrize("rate", [0, -1.0], ids=["zero", "negative"])
def test_rate_limiter_rejects_a_rate_that_is_not_positive(rate) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    rate=st.integers(1, 50),
    calls=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 300)), min_size=1, max_size=40),
)
def test_rate_limiter_never_grants_more_than_the_rate_over_a_window(rate, calls) -> None:
    """Over any window [t0, t1] it grants at most burst + rate x (t1 - t0) tokens."""
    limiter = RateLimiter(rate, now=0.0)
    now, grants = 0.0, []
    for want, step_ms in calls:
        now += step_ms / 1000
        granted = limiter.take(want, now)
        assert 0 <= granted <= want
        grants.append((now, granted))
    for i, (t0, _) in enumerate(grants):
        total = 0
        for t1, granted in grants[i:]:
            total += granted
            assert total <= rate + rate * (t1 - t0) + 1e-9


# ---- claiming and pacing -----------------------------------------------------------------

CLAIM_WAITS = {
    # name: (job status or None, jobs PROCESSING so far in the cycle, claim_batch, waits)
    "pending-with-room": (PENDING, 3, 4, False),
    "pending-batch-full": (PENDING, 4, 4, True),
    "pending-batch-over-full": (PENDING, 5, 4, True),
    "processing-is-never-held-back": (PROCESSING, 4, 4, False),
    "complete-is-never-held-back": (COMPLETE, 9, 4, False),
    "no-job": (None, 9, 4, False),
}


@pytest.mark.parametrize("status,processing,claim_batch,waits",
                         [pytest.param(*c, id=n) for n, c in CLAIM_WAITS.items()])
def test_claim_waits_while_the_claim_batch_is_full(status, processing, claim_batch, waits) -> None:
    state = SubjectState(SUBJECT, 3, job=None if status is None else job(5, status))
    assert claim_waits(state, processing, replace(CFG, claim_batch=claim_batch)) is waits


INTERRUPTED = {
    # name: (job status or None, claimed by this worker, interrupted)
    "processing-claimed-elsewhere": (PROCESSING, False, True),
    "processing-claimed-here": (PROCESSING, True, False),
    "pending-is-not-running": (PENDING, False, False),
    "complete-is-not-running": (COMPLETE, False, False),
    "no-job": (None, False, False),
}


@pytest.mark.parametrize("status,here,expected", [pytest.param(*c, id=n) for n, c in INTERRUPTED.items()])
def test_interrupted_is_a_processing_job_this_worker_did_not_claim(status, here, expected) -> None:
    j = None if status is None else job(5, status)
    assert interrupted(j, {j.job_id} if here and j else set()) is expected


RESETS_WANTED = {
    # name: (holders, cursor, in-flight room or None, keys_per_cycle, wanted)
    "bounded-by-keys-per-cycle": (1000, 0, None, 500, 500),
    "bounded-by-holders-left": (1000, 800, None, 500, 200),
    "bounded-by-the-window": (1000, 0, 32, 500, 32),
    "full-window-wants-nothing": (1000, 0, 0, 500, 0),
    "nothing-left": (10, 10, 32, 500, 0),
    "window-larger-than-the-rest": (10, 7, 32, 500, 3),
}


@pytest.mark.parametrize("holders,cursor,room,per_cycle,wanted", [pytest.param(*c, id=n) for n, c in RESETS_WANTED.items()])
def test_resets_wanted(holders, cursor, room, per_cycle, wanted) -> None:
    assert resets_wanted(holders, cursor, room, replace(CFG, keys_per_cycle=per_cycle)) == wanted


PACE = {
    # name: (rate_per_s, tick_s, burst)
    "a-ticks-worth-saved-up": (2000.0, 0.25, 500.0),
    "at-least-one": (2.0, 0.25, 1.0),
    "one-a-tick": (4.0, 0.25, 1.0),
}


@pytest.mark.parametrize("rate,tick_s,burst", [pytest.param(*c, id=n) for n, c in PACE.items()])
def test_pace_limiter_saves_up_a_ticks_worth(rate, tick_s, burst) -> None:
    limiter = pace_limiter(replace(CFG, rate_per_s=rate), tick_s, now=NOW)
    assert (limiter.rate, limiter.burst) == (rate, burst)
    assert limiter.take(10_000, NOW) == int(burst)  # a full bucket at the start
    assert limiter.take(10_000, NOW + 1.0) == int(min(burst, rate))


# ---- properties: a worker with crashes ---------------------------------------------------

HOLDERS = 5
PROPERTY_CFG = replace(fanout_config(Settings()), max_attempts=10_000)  # crashes alone never fail a job here


@dataclass
class Sent:
    step: int
    job_id: str
    holder: int
    to_date: date
    ref_offset: int


@dataclass
class Worker:
    """The handler's cycle over one subject record, with the record as persisted and the
    worker's in-memory set of jobs it has claimed."""

    stored: SubjectState = field(default_factory=lambda: SubjectState(SUBJECT, 0))
    working: set = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    corrections: list[tuple[int, date, int]] = field(default_factory=list)  # (step, day, ref_offset)
    history: list[SubjectState] = field(default_factory=list)  # the persisted record after each step
    persisted_jobs: dict[str, ResetJob] = field(default_factory=dict)  # each job as last persisted
    now: float = 0.0
    step: int = 0

    def correct(self, n: int) -> None:
        self.corrections.append((self.step, d(n), self.step))
        self.stored = on_correction(self.stored, d(n), self.step, self.now)

    def cycle(self, budget: int, crash_before_persist: bool = False) -> None:
        state = queue(self.stored, self.now)
        state = claim(state, self.now, PROPERTY_CFG, interrupted(state.job, self.working))
        if state.job is not None:
            self.working.add(state.job.job_id)
        if state.job is not None and state.job.status is PROCESSING:
            j = state.job
            state, batch = take(state, HOLDERS, budget, self.now)
            self.sent += [Sent(self.step, j.job_id, i, j.reset_to, j.ref_offset) for i in batch]
        finished = state.job
        if finished is not None and finished.status is COMPLETE:
            state = queue(state, self.now)  # a trigger that waited for this job
        if crash_before_persist:
            self.crash()  # the resets went out, the record was not written
        else:
            if finished is not None:
                self.persisted_jobs[finished.job_id] = finished  # the record's job before the re-queue
            self.stored = state

    def crash(self) -> None:
        self.working = set()

    def run(self, ops) -> None:
        for op in ops:
            self.now += 1.0
            if op[0] == "correct":
                self.correct(op[1])
            elif op[0] == "cycle":
                self.cycle(op[1])
            elif op[0] == "cycle-crash":
                self.cycle(op[1], crash_before_persist=True)
            else:
                self.crash()
            self.record()

    def drain(self) -> None:
        for _ in range(10):
            if not self.stored.open:
                return
            self.now += 1.0
            self.cycle(HOLDERS * 10)
            self.record()
        raise AssertionError(f"not drained: {self.stored}")

    def record(self) -> None:
        self.history.append(self.stored)
        if self.stored.job is not None:
            self.persisted_jobs[self.stored.job.job_id] = self.stored.job
        self.step += 1

    def jobs(self) -> dict[str, ResetJob]:
        """Every job as it was last persisted."""
        return self.persisted_jobs


CORRECT = st.tuples(st.just("correct"), st.integers(1, 30))
CYCLE = st.tuples(st.just("cycle"), st.integers(0, HOLDERS + 1))
CRASHES = st.one_of(st.tuples(st.just("crash")), st.tuples(st.just("cycle-crash"), st.integers(0, HOLDERS + 1)))
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _check_drained(w: Worker) -> None:
    assert w.stored.trigger is None and not w.stored.open  # no trigger lost, no job left open
    jobs = w.jobs()
    assert all(j.status is COMPLETE for j in jobs.values())
    assert len(jobs) == w.stored.jobs_created
    for step, day, offset in w.corrections:
        # (a) a COMPLETE job not yet started when the correction arrived reaches back to its day
        started = {s.job.job_id for s in w.history[:step + 1] if s.job is not None and s.job.status is not PENDING}
        assert any(j.earliest <= day and j.job_id not in started for j in jobs.values()), (step, day)
        # ... so every holder is reset, after the correction, to before its day, and
        # valuation is asked to have read the correction
        covered = {s.holder for s in w.sent if s.step > step and s.to_date <= day - DAY and s.ref_offset >= offset}
        assert covered == set(range(HOLDERS)), (step, day, covered)
    for job_id, _j in jobs.items():
        # (b) each job resets every holder: none skipped, even across crashes
        assert {s.holder for s in w.sent if s.job_id == job_id} == set(range(HOLDERS)), job_id


@PROPERTY
@given(ops=st.lists(st.one_of(CORRECT, CYCLE), max_size=40))
def test_without_crashes_every_holder_is_reset_exactly_once_per_job(ops) -> None:
    w = Worker()
    w.run(ops)
    w.drain()
    _check_drained(w)
    for job_id, j in w.jobs().items():
        holders = [s.holder for s in w.sent if s.job_id == job_id]
        assert holders == list(range(HOLDERS)), job_id  # exactly once, in the index's order
        assert j.attempt_count == 1 and j.failure_reason is None


@PROPERTY
@given(ops=st.lists(st.one_of(CORRECT, CYCLE, CRASHES), max_size=40))
def test_with_crashes_no_correction_is_lost_and_no_holder_skipped(ops) -> None:
    w = Worker()
    w.run(ops)
    w.drain()
    _check_drained(w)
    crashes = sum(1 for op in ops if op[0] in ("crash", "cycle-crash"))
    for j in w.jobs().values():
        assert 1 <= j.attempt_count <= 1 + crashes


def test_a_crash_after_sending_resends_from_the_persisted_cursor() -> None:
    w = Worker()
    w.run([("correct", 10), ("cycle", 2), ("cycle-crash", 2), ("cycle", 2), ("cycle", 10)])
    job_id = f"{SUBJECT}#p0#1"
    assert [s.holder for s in w.sent if s.job_id == job_id] == [0, 1, 2, 3, 2, 3, 4]
    j = w.stored.job
    assert (j.status, j.attempt_count, j.failure_reason) == (COMPLETE, 2, "resumed after an interruption at key 2")



# -- the in-flight window -----------------------------------------------------------------

def test_the_window_gives_room_for_the_keys_not_in_flight() -> None:
    from epochflow.domain.fanout import InFlight

    window = InFlight(limit=3, timeout_s=60)
    assert window.room(0.0) == 3
    window.add("P1|S", 1.0)
    window.add("P2|S", 1.0)
    assert window.room(2.0) == 1


@pytest.mark.parametrize(
    "current_as_of, ref_floor, in_flight_after",
    [(0.5, 7, 1), (1.0, 7, 1), (1.5, 6, 1), (1.5, 7, 0), (1.5, 9, 0)],
    ids=["CURRENT before the reset: still in flight", "at the same moment: still in flight",
         "CURRENT after it, without the correction: still in flight", "CURRENT with the correction: done",
         "CURRENT with a later correction too: done"],
)
def test_a_key_leaves_the_window_when_seen_current_with_its_correction(current_as_of, ref_floor, in_flight_after) -> None:
    from epochflow.domain.fanout import InFlight

    window = InFlight(limit=3, timeout_s=60)
    window.add("P1|S", 1.0, ref_offset=7)
    window.current_again("P1|S", current_as_of, ref_floor)
    window.current_again("P9|S", 5.0)  # never reset by the fan-out: nothing to do
    assert len(window.sent) == in_flight_after


def test_a_key_that_never_comes_back_current_expires_from_the_window() -> None:
    from epochflow.domain.fanout import InFlight

    window = InFlight(limit=1, timeout_s=10)
    window.add("P1|S", 0.0)
    assert window.room(10.0) == 0
    assert window.room(10.5) == 1


CORRECTIONS_OR_NOT = {
    # name: (day, business day or None, a correction)
    "before-the-business-date": (9, 10, True),
    "on-the-business-date": (10, 10, False),
    "after-the-business-date": (11, 10, False),
    "no-business-date-yet": (1, None, False),
}


@pytest.mark.parametrize("n,business,expected", [pytest.param(*c, id=k) for k, c in CORRECTIONS_OR_NOT.items()])
def test_is_correction(n, business, expected) -> None:
    assert is_correction(d(n), None if business is None else d(business)) is expected
