"""Position-aware scheduling against DESIGN.md, RFC 003 and RFC 020:

jobs from max(watermark + 1, first_open_date) to the business date, never before the first
open date, filling gaps; the watermark advances only across contiguous COMPLETE /
SKIPPED_NO_POSITION days (the scheduler is its only authority); a job blocked on missing
data goes back to PENDING with attempt_count + 1 and a failure_reason, and is not retried
before the backoff unless its data arrives (or the key's positions changed); past the
configured attempts it alerts; PROCESSING jobs past the timeout are reclaimed; answers for
another epoch or to a superseded dispatch are ignored; a new epoch or reset generation
drops the jobs; a history change revalues the days it touched (a Reset when the watermark
is already past them); the work per key and per tick is bounded.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from epochflow.domain.scheduling import (
    DONE,
    Advance,
    Dispatch,
    Job,
    JobChanged,
    JobStatus,
    Outcome,
    Reset,
    ScheduleKey,
    SchedulerConfig,
    dispatch,
    dispatch_limit,
    fill_order,
    filled,
    full_pass_due,
    is_live_price,
    on_data_arrived,
    on_outcome,
    on_outcomes,
    on_position_state,
    over_attempts,
    plan,
    processing_after,
    reclaim,
    window_room,
)

PENDING, PROCESSING, COMPLETE = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETE
SKIPPED, FAILED = JobStatus.SKIPPED_NO_POSITION, JobStatus.FAILED
DAY = timedelta(days=1)
CFG = SchedulerConfig(backoff_s=600.0, max_attempts=3, processing_timeout_s=30.0, max_processing_per_partition=500,
                      not_ready_delay_s=0.5, max_in_flight_per_key=1000, max_dispatch_per_tick=1000)
NOW = 10_000.0


def d(n: int | None) -> date | None:
    """Day n of August 2025 (d(0) is 07-31)."""
    return None if n is None else date(2025, 8, 1) + (n - 1) * DAY


def days(jobs) -> list[int]:
    return [(j.day - d(1)).days + 1 for j in jobs]


def key(watermark: int | None = None, first_open: int | None = 1, jobs=(), **kw) -> ScheduleKey:
    clock = max((j.version for j in jobs), default=0)
    return ScheduleKey("P1", "S1", watermark=d(watermark), first_open_date=d(first_open), jobs=tuple(jobs),
                       job_clock=kw.pop("job_clock", clock), **kw)


def job(n: int, status: JobStatus = PENDING, version: int | None = None, **kw) -> Job:
    return Job(d(n), status, version=n if version is None else version, **kw)


def of(outputs, kind) -> list:
    return [o for o in outputs if isinstance(o, kind)]


def running(sk: ScheduleKey, now: float = NOW) -> ScheduleKey:
    """Plan up to the business date already planned and dispatch everything."""
    sk, _ = dispatch(sk, now, 10_000, ref_offset=7)
    return sk


def answer(sk: ScheduleKey, n: int, outcome: str, now: float = NOW, **kw) -> tuple[ScheduleKey, list]:
    j = next(j for j in sk.jobs if j.day == d(n))
    return on_outcomes(sk, [Outcome(d(n), sk.epoch, j.version, outcome, **kw)], now, CFG)


# ---- planning -------------------------------------------------------------------------

# id: (watermark, first open, business date, existing job days, max in flight) -> new days
PLAN_CASES = {
    "fresh-key-from-first-open-date": (None, 3, 5, [], 1000, [3, 4, 5]),
    "watermark-before-first-open-never-plans-before-it": (-20, 3, 5, [], 1000, [3, 4, 5]),
    "watermark-the-day-before-first-open": (2, 3, 4, [], 1000, [3, 4]),
    "from-the-day-after-the-watermark": (3, 1, 6, [], 1000, [4, 5, 6]),
    "watermark-at-the-business-date": (6, 1, 6, [], 1000, []),
    "watermark-past-the-business-date": (8, 1, 6, [], 1000, []),
    "first-open-after-the-business-date": (None, 7, 6, [], 1000, []),
    "single-day": (None, 6, 6, [], 1000, [6]),
    "no-first-open-date-no-jobs": (None, None, 6, [], 1000, []),
    "no-business-date-no-jobs": (None, 1, None, [], 1000, []),
    "gaps-are-filled-existing-days-kept": (None, 1, 6, [2, 4], 1000, [1, 3, 5, 6]),
    "nothing-missing": (1, 1, 3, [2, 3], 1000, []),
    "bounded-in-flight": (None, 1, 30, [], 4, [1, 2, 3, 4]),
    "bounded-in-flight-counts-open-jobs": (None, 1, 30, [1, 2, 3], 4, [4]),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in PLAN_CASES.items()])
def test_plan(case) -> None:
    watermark, first_open, business_date, existing, in_flight, expected = case
    sk = key(watermark, first_open, [job(n) for n in existing], job_clock=50)
    new_sk, outputs = plan(sk, d(business_date), replace(CFG, max_in_flight_per_key=in_flight))
    planned = [o.job for o in of(outputs, JobChanged)]
    assert len(planned) == len(outputs)
    assert days(planned) == expected
    assert all(j.status is PENDING and j.attempt_count == 0 for j in planned)
    # every new job takes the next job version of the key
    assert [j.version for j in planned] == list(range(51, 51 + len(expected)))
    assert days(new_sk.jobs) == sorted(existing + expected)
    assert new_sk.job_clock == 50 + len(expected)
    if not expected:
        assert new_sk == sk


def test_done_jobs_do_not_count_against_the_in_flight_bound() -> None:
    sk = key(None, 1, [job(1, COMPLETE), job(2, SKIPPED), job(3, PENDING)])
    _, outputs = plan(sk, d(10), replace(CFG, max_in_flight_per_key=3))
    assert days(o.job for o in outputs) == [4, 5]


def test_plan_is_idempotent() -> None:
    sk, _ = plan(key(None, 1), d(5), CFG)
    again, outputs = plan(sk, d(5), CFG)
    assert again == sk and outputs == []


def test_the_business_date_moving_on_plans_only_the_new_days() -> None:
    sk, _ = plan(key(None, 1), d(3), CFG)
    sk, outputs = plan(sk, d(5), CFG)
    assert days(o.job for o in outputs) == [4, 5] and days(sk.jobs) == [1, 2, 3, 4, 5]


# ---- the contiguous watermark ---------------------------------------------------------

# id: (watermark, first open, [(day, status)], answered day, outcome) -> new watermark
# (None: no advance). Every listed job not answered keeps its status.
ADVANCE_CASES = {
    "first-day-complete": (None, 1, [(1, PROCESSING), (2, PENDING)], 1, "COMPLETE", 1),
    "contiguous-run": (None, 1, [(1, PROCESSING), (2, COMPLETE), (3, COMPLETE), (4, PENDING)], 1, "COMPLETE", 3),
    "skipped-days-count-as-done": (None, 1, [(1, COMPLETE), (2, PROCESSING), (3, COMPLETE)], 2,
                                   "SKIPPED_NO_POSITION", 3),
    "all-done-to-the-last-job": (None, 1, [(1, COMPLETE), (2, COMPLETE), (3, PROCESSING)], 3, "COMPLETE", 3),
    "later-day-first-waits-for-the-earlier": (None, 1, [(1, PROCESSING), (2, PROCESSING)], 2, "COMPLETE", None),
    "blocked-day-stops-it": (None, 1, [(1, COMPLETE), (2, PROCESSING), (3, COMPLETE)], 2, "BLOCKED", 1),
    "blocked-first-day": (None, 1, [(1, PROCESSING), (2, COMPLETE)], 1, "BLOCKED", None),
    "stops-at-a-blocked-day": (None, 1, [(1, PROCESSING), (2, COMPLETE), (3, PENDING), (4, COMPLETE)], 1,
                               "COMPLETE", 2),
    "stops-at-a-failed-day": (None, 1, [(1, PROCESSING), (2, FAILED), (3, COMPLETE)], 1, "COMPLETE", 1),
    "failed-answer-stops-it": (None, 1, [(1, PROCESSING), (2, COMPLETE)], 1, "FAILED", None),
    "stops-at-a-processing-day": (None, 1, [(1, PROCESSING), (2, PROCESSING)], 1, "COMPLETE", 1),
    "not-ready-stops-it": (None, 1, [(1, PROCESSING), (2, COMPLETE)], 1, "NOT_READY", None),
    "stops-at-a-missing-day": (None, 1, [(1, PROCESSING), (3, COMPLETE)], 1, "COMPLETE", 1),
    "starts-after-the-watermark": (4, 1, [(5, PROCESSING), (6, COMPLETE)], 5, "COMPLETE", 6),
    "starts-at-first-open-date": (None, 3, [(3, PROCESSING), (4, COMPLETE)], 3, "COMPLETE", 4),
    "starts-at-first-open-after-an-old-watermark": (-5, 3, [(3, PROCESSING)], 3, "COMPLETE", 3),
    "gap-after-the-watermark-blocks": (4, 1, [(6, PROCESSING)], 6, "COMPLETE", None),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in ADVANCE_CASES.items()])
def test_watermark_advances_only_across_contiguous_done_days(case) -> None:
    watermark, first_open, listed, answered, outcome, expected = case
    sk = key(watermark, first_open, [job(n, status) for n, status in listed])
    new_sk, outputs = on_outcome(sk, d(answered), 0, answered, outcome, "why", None, NOW, CFG)
    advances = of(outputs, Advance)
    if expected is None:
        assert advances == [] and new_sk.watermark == d(watermark)
        assert days(new_sk.jobs) == [n for n, _ in listed]
    else:
        assert advances == [Advance(d(expected))] and outputs[-1] == advances[0]
        assert new_sk.watermark == d(expected)
        # ended days up to the new watermark leave the key's job list
        assert days(new_sk.jobs) == [n for n, _ in listed if n > expected]
    assert [o.job.day for o in of(outputs, JobChanged)] == [d(answered)]


def test_a_batch_of_answers_advances_once_to_the_end_of_the_run() -> None:
    sk = running(key(None, 1, [job(n) for n in (1, 2, 3, 4)]))
    answers = [Outcome(d(n), 0, j.version, "COMPLETE") for n, j in zip((3, 1, 2), (sk.jobs[2], sk.jobs[0], sk.jobs[1]))]
    sk, outputs = on_outcomes(sk, answers, NOW, CFG)
    assert of(outputs, Advance) == [Advance(d(3))] and len(of(outputs, JobChanged)) == 3
    assert sk.watermark == d(3) and days(sk.jobs) == [4]


def test_completing_a_blocked_day_releases_the_days_behind_it() -> None:
    sk = running(key(None, 1, [job(n) for n in (1, 2, 3)]))
    sk, _ = answer(sk, 1, "BLOCKED", reason="no price", waiting_on="price|S1")
    sk, out = answer(sk, 2, "COMPLETE")
    sk, out = answer(sk, 3, "COMPLETE")
    assert sk.watermark is None and of(out, Advance) == []
    sk = running(on_data_arrived(sk, "price|S1"))
    sk, out = answer(sk, 1, "COMPLETE")
    assert of(out, Advance) == [Advance(d(3))] and sk.jobs == ()


# ---- the job lifecycle ------------------------------------------------------------------

def test_dispatch_marks_pending_jobs_processing_with_what_the_scheduler_had_seen() -> None:
    sk = key(None, 1, [job(1), job(2, COMPLETE), job(3, PENDING, not_before=NOW + 1)], state_version=9)
    sk, outputs = dispatch(sk, NOW, 10, ref_offset=42)
    sent = [o.job for o in of(outputs, Dispatch)]
    assert days(sent) == [1]
    j = sent[0]
    assert (j.status, j.dispatched_at, j.state_version, j.ref_offset) == (PROCESSING, NOW, 9, 42)
    assert j.version > 3 and of(outputs, JobChanged) == [JobChanged(j)]
    assert sk.jobs[0] == j and sk.jobs[1:] == (job(2, COMPLETE), job(3, PENDING, not_before=NOW + 1))


# id: outcome -> (status, attempt_count, failure_reason, waiting_on, not_before offset from now)
OUTCOME_CASES = {
    # every answer but NOT_READY is an attempt: the job had one (blocked) before this one
    "complete": ("COMPLETE", COMPLETE, 2, None, None, None),
    "skipped": ("SKIPPED_NO_POSITION", SKIPPED, 2, None, None, None),
    "blocked-waits-for-the-backoff": ("BLOCKED", PENDING, 2, "no price", "price|S1", CFG.backoff_s),
    # NOT_READY: the valuation worker lagged the scheduler; runnable again, no longer waiting for data
    "not-ready-is-no-attempt": ("NOT_READY", PENDING, 1, None, None, CFG.not_ready_delay_s),
    "failed-is-terminal": ("FAILED", FAILED, 2, "no price", "price|S1", None),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in OUTCOME_CASES.items()])
def test_outcome_moves_the_job(case) -> None:
    outcome, status, attempts, reason, waiting, delay = case
    sk = running(key(None, 1, [job(1, attempt_count=1, failure_reason="earlier", waiting_on="price|S1"), job(2)]))
    before = sk.jobs[0]
    sk, outputs = answer(sk, 1, outcome, reason="no price" if outcome in ("BLOCKED", "FAILED") else None,
                         waiting_on="price|S1" if outcome == "BLOCKED" else None)
    changed = of(outputs, JobChanged)[0].job
    assert (changed.status, changed.attempt_count, changed.failure_reason) == (status, attempts, reason)
    assert changed.version > before.version
    if status is PENDING:
        assert changed.waiting_on == waiting and changed.not_before == NOW + delay and changed.dispatched_at is None
        # not dispatched before its time, dispatched once it has come
        assert of(dispatch(sk, NOW + delay - 0.01, 10, 7)[1], Dispatch) == []
        assert days(o.job for o in of(dispatch(sk, NOW + delay, 10, 7)[1], Dispatch)) == [1]


def test_blocked_job_retried_at_once_when_its_data_arrives() -> None:
    sk = running(key(None, 1, [job(1), job(2)]))
    sk, _ = answer(sk, 1, "BLOCKED", reason="no FX", waiting_on="fx|EUR|USD")
    sk, _ = answer(sk, 2, "BLOCKED", reason="no price", waiting_on="price|S1")
    assert of(dispatch(sk, NOW + 1, 10, 7)[1], Dispatch) == []
    unrelated = on_data_arrived(sk, "price|S2")
    assert unrelated == sk
    sk = on_data_arrived(sk, "fx|EUR|USD")
    sent = of(dispatch(sk, NOW + 1, 10, 7)[1], Dispatch)
    assert days(o.job for o in sent) == [1] and sent[0].job.attempt_count == 1


def test_data_arriving_does_not_touch_jobs_in_flight() -> None:
    sk = running(key(None, 1, [job(1, waiting_on="price|S1")]))
    assert on_data_arrived(sk, "price|S1") == sk


def test_blocked_answer_after_its_data_already_arrived_is_retried_at_once() -> None:
    """The data arrived while the job was in flight: the answer is stale, retry now."""
    sk = running(key(None, 1, [job(1)]))
    seen = []

    def arrived_since(what: str, offset: int) -> bool:
        seen.append((what, offset))
        return True

    j = sk.jobs[0]
    sk, outputs = on_outcomes(sk, [Outcome(d(1), 0, j.version, "BLOCKED", "no price", "price|S1")], NOW, CFG, arrived_since)
    assert seen == [("price|S1", 7)]  # asked about what arrived after the job's dispatch
    changed = of(outputs, JobChanged)[0].job
    assert (changed.status, changed.attempt_count, changed.not_before) == (PENDING, 1, NOW)


def test_blocked_answer_with_a_newer_positions_state_is_retried_at_once() -> None:
    sk = running(key(None, 1, [job(1)], state_version=4))
    sk = replace(sk, state_version=5)  # the positions role moved on after the dispatch
    sk, outputs = answer(sk, 1, "BLOCKED", reason="no price", waiting_on="price|S1")
    assert of(outputs, JobChanged)[0].job.not_before == NOW


def test_any_positions_change_retries_blocked_jobs_at_once() -> None:
    sk = running(key(None, 1, [job(1), job(2)], state_version=4))
    sk, _ = answer(sk, 1, "BLOCKED", reason="no FX", waiting_on="fx|EUR|USD")
    sk, _ = on_position_state(sk, 0, 0, 5, None, d(1), None)
    assert days(o.job for o in of(dispatch(sk, NOW, 10, 7)[1], Dispatch)) == [1]


# id: attempt counts -> jobs past max_attempts (3)
ATTEMPT_CASES = {
    "none": ([0, 1, 2], 0),
    "at-the-limit-is-not-past-it": ([3], 0),
    "past-the-limit": ([4], 1),
    "several": ([4, 9, 1, 3], 2),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in ATTEMPT_CASES.items()])
def test_over_attempts(case) -> None:
    counts, expected = case
    sk = key(None, 1, [job(n + 1, attempt_count=c) for n, c in enumerate(counts)])
    assert over_attempts(sk, CFG) == expected


def test_a_completed_job_is_no_longer_over_attempts() -> None:
    assert over_attempts(key(None, 1, [job(1, COMPLETE, attempt_count=9)]), CFG) == 0


def test_attempts_count_every_blocked_answer() -> None:
    sk = running(key(None, 1, [job(1)]))
    for attempt in range(1, 6):
        sk, outputs = answer(sk, 1, "BLOCKED", now=NOW, reason="no price", waiting_on="price|S1")
        assert of(outputs, JobChanged)[0].job.attempt_count == attempt
        assert over_attempts(sk, CFG) == (1 if attempt > CFG.max_attempts else 0)
        sk = running(sk, NOW + CFG.backoff_s)


# ---- reclaim ----------------------------------------------------------------------------

def test_processing_job_past_the_timeout_is_reclaimed_and_its_late_answer_ignored() -> None:
    sk = running(key(None, 1, [job(1), job(2, COMPLETE)]))
    old = sk.jobs[0]
    assert reclaim(sk, NOW + CFG.processing_timeout_s - 1, CFG) == (sk, [])
    sk, outputs = reclaim(sk, NOW + CFG.processing_timeout_s + 1, CFG)
    j = of(outputs, JobChanged)[0].job
    assert (j.day, j.status, j.dispatched_at, j.not_before, j.attempt_count) == (d(1), PENDING, None, 0.0, 0)
    assert j.failure_reason and j.version > old.version
    # the worker that died answers after all: the dispatch it answers was superseded
    late, outputs = on_outcome(sk, d(1), 0, old.version, "COMPLETE", None, None, NOW, CFG)
    assert (late, outputs) == (sk, [])
    # dispatched again at once
    sk = running(sk, NOW + CFG.processing_timeout_s + 1)
    assert sk.jobs[0].status is PROCESSING
    sk, outputs = answer(sk, 1, "COMPLETE")
    assert of(outputs, Advance) == [Advance(d(2))]


# ---- answers that must be ignored -------------------------------------------------------

def _ignored_cases():
    sk = running(key(None, 1, [job(1), job(2)], epoch=3))
    v1 = sk.jobs[0].version
    return {
        "older-epoch": (sk, Outcome(d(1), 2, v1, "COMPLETE")),
        "newer-epoch": (sk, Outcome(d(1), 4, v1, "COMPLETE")),
        "superseded-job-version": (sk, Outcome(d(1), 3, v1 - 1, "COMPLETE")),
        "future-job-version": (sk, Outcome(d(1), 3, v1 + 100, "COMPLETE")),
        "unknown-day": (sk, Outcome(d(9), 3, v1, "COMPLETE")),
        "job-not-in-flight": (key(None, 1, [job(1, version=5)], epoch=3), Outcome(d(1), 3, 5, "COMPLETE")),
        "stale-answer": (sk, Outcome(d(1), 3, v1, "STALE")),
        "blocked-for-another-epoch": (sk, Outcome(d(1), 2, v1, "BLOCKED", "no price", "price|S1")),
    }


@pytest.mark.parametrize("name", list(_ignored_cases()))
def test_stale_or_superseded_answers_are_ignored(name: str) -> None:
    sk, outcome = _ignored_cases()[name]
    assert on_outcomes(sk, [outcome], NOW, CFG) == (sk, [])


# ---- the positions role's view of the key ----------------------------------------------

def test_new_epoch_drops_the_jobs_and_takes_the_new_watermark() -> None:
    sk = running(key(3, 1, [job(4), job(5, COMPLETE), job(6)], state_version=7))
    new, outputs = on_position_state(sk, 1, 1, 8, d(1), d(1), d(2))
    assert outputs == [] and new.jobs == ()
    assert (new.epoch, new.generation, new.state_version, new.watermark) == (1, 1, 8, d(1))
    # answers to the old epoch's dispatches are ignored
    old = sk.jobs[0]
    assert on_outcome(new, d(4), 0, old.version, "COMPLETE", None, None, NOW, CFG) == (new, [])
    # days after the reset are planned again, with versions above every earlier one
    new, outputs = plan(new, d(6), CFG)
    assert days(o.job for o in outputs) == [2, 3, 4, 5, 6]
    assert min(o.job.version for o in outputs) > max(j.version for j in sk.jobs)


def test_new_generation_in_the_same_epoch_drops_the_jobs() -> None:
    sk = running(key(3, 1, [job(4), job(5)], state_version=7))
    new, outputs = on_position_state(sk, 0, 1, 8, d(2), d(1), None)
    assert outputs == [] and new.jobs == () and new.watermark == d(2) and new.generation == 1
    new, outputs = plan(new, d(5), CFG)
    assert days(o.job for o in outputs) == [3, 4, 5]


@pytest.mark.parametrize("key_epoch, epoch, version", [(0, 0, 7), (0, 0, 6), (1, 0, 99)],
                         ids=["same-version", "older-version", "older-epoch"])
def test_older_positions_state_is_ignored(key_epoch: int, epoch: int, version: int) -> None:
    sk = key(3, 1, [job(4)], epoch=key_epoch, state_version=7)
    assert on_position_state(sk, epoch, 0, version, d(1), d(1), d(1)) == (sk, [])


def test_same_epoch_state_keeps_the_schedulers_own_advance_in_flight() -> None:
    """The scheduler advanced to day 3; positions has not applied it yet (says day 1)."""
    sk = key(3, 1, [job(4), job(5)], state_version=7)
    new, outputs = on_position_state(sk, 0, 0, 8, d(1), d(1), None)
    assert outputs == [] and new.watermark == d(3) and days(new.jobs) == [4, 5]


# id: (scheduler watermark, positions watermark, jobs, changed_from) ->
#     (reset to, days kept with their old version, days planned again)
CHANGED_CASES = {
    "after-the-watermark-revalues-done-days": (
        2, 2, [(3, PENDING), (4, COMPLETE), (5, COMPLETE)], 4, None, [3], [4, 5, 6]),
    "after-every-job-changes-nothing": (
        2, 2, [(3, COMPLETE), (4, PENDING)], 6, None, [3, 4], [5, 6]),
    "before-the-done-days-revalues-them-all": (
        None, None, [(1, COMPLETE), (2, PENDING), (3, COMPLETE), (4, SKIPPED)], 2, None, [1, 2], [3, 4, 5, 6]),
    "inside-the-valued-days-resets": (
        4, 4, [(5, COMPLETE), (6, PENDING)], 3, 2, [6], [5]),
    "on-the-watermark-resets": (
        4, 4, [(5, PENDING)], 4, 3, [5], [6]),
    "inside-an-advance-still-in-flight-resets": (
        4, 1, [(5, PENDING)], 3, 2, [5], [6]),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in CHANGED_CASES.items()])
def test_history_change_revalues_the_days_it_touched(case) -> None:
    sk_watermark, positions_watermark, listed, changed_from, reset_to, kept, replanned = case
    sk = key(sk_watermark, 1, [job(n, status, version=10 + n) for n, status in listed], state_version=7)
    sk, outputs = on_position_state(sk, 0, 0, 8, d(positions_watermark), d(1), d(changed_from))
    assert outputs == ([] if reset_to is None else [Reset(d(reset_to))])
    assert sk.watermark == d(sk_watermark)  # only the positions role's answer moves it back
    by_day = {j.day: j for j in sk.jobs}
    assert all(by_day[d(n)].version == 10 + n for n in kept)
    sk, outputs = plan(sk, d(6), CFG)
    assert days(o.job for o in outputs) == replanned


def test_history_change_supersedes_a_dispatch_in_flight_on_a_changed_day() -> None:
    """A job dispatched before the history changed may be valued on the old history (the
    valuation role reads positions and jobs from different topics): its answer must not end
    the day, which is dispatched again (its attempts kept) and valued with the new state."""
    sk, _ = plan(key(None, 1, state_version=7), d(3), CFG)
    sk = running(sk)
    sk, _ = answer(sk, 3, "BLOCKED", reason="no price", waiting_on="price|S1")
    sk = running(on_data_arrived(sk, "price|S1"))
    in_flight = {j.day: j for j in sk.jobs}
    assert all(j.status is PROCESSING for j in in_flight.values()) and in_flight[d(3)].attempt_count == 1

    sk, outputs = on_position_state(sk, 0, 0, 8, None, d(1), d(2))
    again = [o.job for o in of(outputs, JobChanged)]
    assert days(again) == [2, 3] and all(j.status is PENDING and j.not_before == 0.0 for j in again)
    assert [j.attempt_count for j in again] == [0, 1]
    assert min(j.version for j in again) > max(j.version for j in in_flight.values())
    assert sk.job_clock == max(j.version for j in again)
    assert sk.jobs[0] == in_flight[d(1)]  # the day before the change is still in flight

    sk, outputs = on_outcomes(sk, [Outcome(d(n), 0, in_flight[d(n)].version, "COMPLETE") for n in (1, 2, 3)],
                              NOW, CFG)
    assert sk.watermark == d(1) and of(outputs, Advance) == [Advance(d(1))]
    assert plan(sk, d(3), CFG) == (sk, [])
    sk, outputs = dispatch(sk, NOW, 10, 7)
    sent = [o.job for o in of(outputs, Dispatch)]
    assert days(sent) == [2, 3] and all(j.state_version == 8 for j in sent)
    sk, outputs = on_outcomes(sk, [Outcome(j.day, 0, j.version, "COMPLETE") for j in sent], NOW, CFG)
    assert of(outputs, Advance) == [Advance(d(3))]


# ---- bounded work -----------------------------------------------------------------------

def test_dispatch_is_bounded_per_call() -> None:
    sk, _ = plan(key(None, 1), d(10), CFG)
    sk, outputs = dispatch(sk, NOW, 4, 7)
    assert days(o.job for o in of(outputs, Dispatch)) == [1, 2, 3, 4]
    sk, outputs = dispatch(sk, NOW, 4, 7)
    assert days(o.job for o in of(outputs, Dispatch)) == [5, 6, 7, 8]
    sk, outputs = dispatch(sk, NOW, 4, 7)
    assert days(o.job for o in of(outputs, Dispatch)) == [9, 10]
    assert dispatch(sk, NOW, 4, 7) == (sk, [])


def test_in_flight_bound_plans_more_as_days_end() -> None:
    cfg = replace(CFG, max_in_flight_per_key=3)
    sk, _ = plan(key(None, 1), d(10), cfg)
    assert days(sk.jobs) == [1, 2, 3]
    sk = running(sk)
    sk, _ = answer(sk, 1, "COMPLETE")
    sk, _ = answer(sk, 3, "COMPLETE")  # done but not contiguous: no longer in flight either
    sk, outputs = plan(sk, d(10), cfg)
    assert days(o.job for o in outputs) == [4, 5]


def test_job_versions_only_grow() -> None:
    sk, _ = plan(key(None, 1), d(3), CFG)
    seen = [j.version for j in sk.jobs]
    sk = running(sk)
    seen += [j.version for j in sk.jobs]
    sk, out = answer(sk, 2, "BLOCKED", reason="r", waiting_on="price|S1")
    seen += [o.job.version for o in of(out, JobChanged)]
    sk, out = reclaim(sk, NOW + 1000, CFG)
    seen += [o.job.version for o in of(out, JobChanged)]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert sk.job_clock == max(seen)


def test_done_statuses() -> None:
    assert set(DONE) == {COMPLETE, SKIPPED}


def test_a_price_for_a_valued_business_date_revalues_from_its_day() -> None:
    from epochflow.domain.scheduling import Reset, on_price_for_valued_days

    # valued and advanced through day 3: the watermark has to come back
    sk = key(3, 1, [])
    sk2, outputs = on_price_for_valued_days(sk, d(3))
    assert outputs == [Reset(d(2))]
    # ended but not yet advanced past: those from the day are planned again; a job in flight
    # is judged by its answer (data arrived since its dispatch), pending ones stay
    sk = key(None, 1, [job(1, COMPLETE), job(2, COMPLETE), job(3, PROCESSING), job(4, PENDING)])
    sk2, outputs = on_price_for_valued_days(sk, d(2))
    assert outputs == [] and [j.day for j in sk2.jobs] == [d(1), d(3), d(4)]
    # nothing valued from that day on: nothing to do
    sk = key(None, 1, [job(1, COMPLETE)])
    assert on_price_for_valued_days(sk, d(2)) == (sk, [])


# ---- the dispatch window -----------------------------------------------------------------

WINDOW = replace(CFG, max_processing_per_partition=10, max_dispatch_per_tick=4, full_pass_s=5.0)


def processing(n: int) -> ScheduleKey:
    """A key with n jobs PROCESSING."""
    return key(jobs=tuple(job(i + 1, PROCESSING) for i in range(n)))


ROOM = {
    # name: (PROCESSING in the partition, room)
    "empty": (0, 10),
    "some": (7, 3),
    "full": (10, 0),
    "over-full": (12, 0),
}


@pytest.mark.parametrize("count,room", [pytest.param(*c, id=n) for n, c in ROOM.items()])
def test_window_room(count, room) -> None:
    assert window_room(count, WINDOW) == room


PROCESSING_AFTER = {
    # name: (partition count, key before (PROCESSING jobs or None: new key), key after, count after)
    "new-key-dispatches": (3, None, 2, 5),
    "key-dispatches-more": (3, 1, 3, 5),
    "answers-free-the-window": (5, 3, 1, 3),
    "unchanged": (5, 2, 2, 5),
    "never-below-zero": (0, 3, 0, 0),
}


@pytest.mark.parametrize("count,before,after,expected", [pytest.param(*c, id=n) for n, c in PROCESSING_AFTER.items()])
def test_processing_after(count, before, after, expected) -> None:
    assert processing_after(count, None if before is None else processing(before), processing(after)) == expected


LIMITS = {
    # name: (budget or None, PROCESSING in the partition, key stored, key now, limit)
    "tick-budget-by-default": (None, 0, 0, 0, 4),
    "budget-left": (2, 0, 0, 0, 2),
    "window-room": (None, 8, 0, 0, 2),
    "window-full": (None, 10, 0, 0, 0),
    "the-keys-own-answers-make-room": (None, 10, 3, 0, 3),
    "the-keys-reclaims-make-room": (9, 10, 3, 1, 2),
    "a-new-key-counts-its-own-jobs": (None, 6, None, 2, 2),
}


@pytest.mark.parametrize("budget,count,stored,now,limit", [pytest.param(*c, id=n) for n, c in LIMITS.items()])
def test_dispatch_limit(budget, count, stored, now, limit) -> None:
    assert dispatch_limit(budget, count, None if stored is None else processing(stored), processing(now), WINDOW) == limit


FILLED = {
    # name: (budget left, PROCESSING in the partition, filled)
    "room-and-budget": (3, 5, False),
    "budget-used-up": (0, 5, True),
    "window-full": (3, 10, True),
}


@pytest.mark.parametrize("budget,count,done", [pytest.param(*c, id=n) for n, c in FILLED.items()])
def test_a_filling_pass_stops_when_the_budget_or_the_window_is_used_up(budget, count, done) -> None:
    assert filled(budget, count, WINDOW) is done


FULL_PASSES = {
    # name: (now, last full pass or None, due)
    "never-had-one": (NOW, None, True),
    "just-had-one": (NOW, NOW - 1.0, False),
    "exactly-full-pass-s-ago": (NOW, NOW - 5.0, True),
    "long-ago": (NOW, NOW - 60.0, True),
}


@pytest.mark.parametrize("now,last,due", [pytest.param(*c, id=n) for n, c in FULL_PASSES.items()])
def test_full_pass_due(now, last, due) -> None:
    assert full_pass_due(now, last, WINDOW) is due


FILL_ORDERS = {
    # name: (cursor, order, start)
    "from-the-start": (0, ("a", "b", "c"), 0),
    "from-where-the-last-stopped": (2, ("c", "a", "b"), 2),
    "wraps-around": (4, ("b", "c", "a"), 1),
}


@pytest.mark.parametrize("cursor,order,start", [pytest.param(*c, id=n) for n, c in FILL_ORDERS.items()])
def test_fill_order(cursor, order, start) -> None:
    assert fill_order(("a", "b", "c"), cursor) == (order, start)


LIVE_PRICES = {
    # name: (price day, business day or None, live)
    "on-the-business-date": (5, 5, True),
    "after-the-business-date": (6, 5, True),
    "before-it-is-a-correction": (4, 5, False),
    "no-business-date-yet": (1, None, True),
}


@pytest.mark.parametrize("n,business,live", [pytest.param(*c, id=k) for k, c in LIVE_PRICES.items()])
def test_is_live_price(n, business, live) -> None:
    assert is_live_price(d(n), d(business)) is live
