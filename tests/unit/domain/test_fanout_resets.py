"""The fan-out's resets where they land: `apply_reset` with a job id (DESIGN.md "Back-dated
price": the watermark moves back to `earliest_impacted_date - 1`, status REPROCESSING,
epoch unchanged; the days from there are marked changed; a re-sent reset of the same job
has no effect; the correction's reference offset becomes the key's `ref_floor`), and the
scheduler carrying that floor into every dispatch."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from epochflow.agents.configs import scheduler_config
from epochflow.config import Settings
from epochflow.domain.model import KeyStatus, PositionState
from epochflow.domain.positions import RESET_JOBS_KEPT, Dropped, StateChanged, apply_reset
from epochflow.domain.scheduling import (
    Dispatch,
    Job,
    JobChanged,
    JobStatus,
    Reset,
    ScheduleKey,
    dispatch,
    on_position_state,
    plan,
)

DAY = timedelta(days=1)
CURRENT, REPROCESSING = KeyStatus.CURRENT, KeyStatus.REPROCESSING
PENDING, PROCESSING, COMPLETE = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETE
JOB = "price|S1#p0#1"
NOW = 10_000.0


def d(n: int | None) -> date | None:
    """Day n of August 2025 (d(0) is 07-31)."""
    return None if n is None else date(2025, 8, 1) + (n - 1) * DAY


def state(watermark: int | None = 20, snapshot: int | None = None, **kw) -> PositionState:
    return PositionState("P1", "S1", epoch=kw.pop("epoch", 2), status=kw.pop("status", CURRENT),
                         watermark_date=d(watermark), latest_snapshot_date=d(snapshot),
                         generation=kw.pop("generation", 3), version=kw.pop("version", 7), **kw)


# ---- apply_reset from the fan-out ------------------------------------------------------

FANOUT_RESETS = {
    # name: (watermark, snapshot, to, ref_floor before, ref_floor sent,
    #        watermark after, snapshot after, moved, ref_floor after)
    "completed-watermark-moves-back": (20, None, 9, -1, 42, 9, None, True, 42),
    "snapshot-ahead-of-watermark-moves-back": (5, 20, 9, -1, 42, 5, 9, True, 42),
    "both-past-to-date": (20, 18, 9, -1, 42, 9, 9, True, 42),
    "key-behind-to-date-keeps-its-watermark": (5, None, 9, -1, 42, 5, None, False, 42),
    "key-at-to-date-keeps-its-watermark": (9, None, 9, -1, 42, 9, None, False, 42),
    "key-never-valued": (None, None, 9, -1, 42, None, None, False, 42),
    "lower-floor-keeps-the-higher": (20, None, 9, 50, 42, 9, None, True, 50),
    "no-floor-sent": (20, None, 9, 5, -1, 9, None, True, 5),
}


@pytest.mark.parametrize("watermark,snapshot,to,floor,sent,after,snapshot_after,moved,floor_after",
                         [pytest.param(*c, id=n) for n, c in FANOUT_RESETS.items()])
def test_fanout_reset(watermark, snapshot, to, floor, sent, after, snapshot_after, moved, floor_after) -> None:
    before = state(watermark, snapshot, ref_floor=floor, reset_jobs=("older-job",))
    step = apply_reset(before, None, d(to), job_id=JOB, ref_floor=sent)
    new = step.state
    assert step.changed
    assert step.outputs == (StateChanged(new),)
    assert (new.watermark_date, new.latest_snapshot_date) == (d(after), d(snapshot_after))
    assert new.epoch == before.epoch  # a price correction never opens an epoch
    assert new.changed_from == d(to) + DAY  # the days to value again
    assert new.ref_floor == floor_after
    assert new.reset_jobs == ("older-job", JOB)
    assert new.version == before.version + 1
    if moved:
        assert (new.status, new.generation) == (REPROCESSING, before.generation + 1)
    else:
        assert (new.status, new.generation) == (before.status, before.generation)
    # nothing else of the key changes
    assert replace(new, watermark_date=before.watermark_date, latest_snapshot_date=before.latest_snapshot_date,
                   status=before.status, generation=before.generation, version=before.version,
                   changed_from=before.changed_from, ref_floor=before.ref_floor,
                   reset_jobs=before.reset_jobs) == before


@pytest.mark.parametrize("watermark", [20, 5, None], ids=["moved", "behind", "never-valued"])
def test_the_same_job_again_changes_nothing_and_re_sends_the_state(watermark) -> None:
    first = apply_reset(state(watermark), None, d(9), job_id=JOB, ref_floor=42).state
    again = apply_reset(first, None, d(9), job_id=JOB, ref_floor=42)
    # the row the first delivery caused may have been lost with a crashed worker: sent again
    assert (again.changed, again.state, again.outputs) == (False, first, (StateChanged(first),))
    # nor after the scheduler has valued the key forward again
    valued = replace(first, watermark_date=d(20), status=CURRENT)
    assert apply_reset(valued, None, d(9), job_id=JOB, ref_floor=42).changed is False


def test_another_job_for_the_same_key_applies() -> None:
    first = apply_reset(state(20), None, d(9), job_id=JOB, ref_floor=42).state
    second = apply_reset(first, None, d(4), job_id="price|S1#p0#2", ref_floor=43)
    assert second.changed
    assert (second.state.watermark_date, second.state.changed_from, second.state.ref_floor) == (d(4), d(5), 43)
    assert second.state.generation == first.generation + 1


def test_recent_job_ids_are_kept_a_bounded_number() -> None:
    s = state(20)
    for i in range(RESET_JOBS_KEPT + 3):
        s = apply_reset(s, None, d(9), job_id=f"job-{i}").state
    assert s.reset_jobs == tuple(f"job-{i}" for i in range(3, RESET_JOBS_KEPT + 3))
    assert apply_reset(s, None, d(9), job_id=f"job-{RESET_JOBS_KEPT + 2}").changed is False


@pytest.mark.parametrize("epoch", [0, 2, 9], ids=["older-epoch", "same-epoch", "newer-epoch"])
def test_a_fanout_reset_is_never_stale(epoch) -> None:
    """The fan-out sends no epoch: it applies to whatever epoch the key is at."""
    s = state(20, epoch=epoch)
    step = apply_reset(s, None, d(9), job_id=JOB, ref_floor=1)
    assert step.changed and not any(isinstance(o, Dropped) for o in step.outputs)
    assert step.state.epoch == epoch


def test_a_scheduler_reset_with_an_older_epoch_is_still_dropped() -> None:
    step = apply_reset(state(20, epoch=2), 1, d(9))
    assert not step.changed and isinstance(step.outputs[0], Dropped)


def test_a_scheduler_reset_sets_no_changed_from_nor_floor() -> None:
    step = apply_reset(state(20, ref_floor=5, changed_from=d(3)), 2, d(9))
    assert step.changed
    assert (step.state.watermark_date, step.state.changed_from, step.state.ref_floor, step.state.reset_jobs) == (
        d(9), None, 5, ())


# ---- scheduling: ref_floor -------------------------------------------------------------

def key(watermark: int | None = None, jobs=(), **kw) -> ScheduleKey:
    clock = max((j.version for j in jobs), default=0)
    return ScheduleKey("P1", "S1", epoch=kw.pop("epoch", 0), generation=kw.pop("generation", 0),
                       state_version=kw.pop("state_version", 1), watermark=d(watermark), first_open_date=d(1),
                       jobs=tuple(jobs), job_clock=clock, **kw)


def job(n: int, status: JobStatus = PENDING, **kw) -> Job:
    return Job(d(n), status, version=kw.pop("version", n), **kw)


FLOORS = {
    # name: (floor before, floor in the state, state version (key at 1), floor after)
    "raised": (-1, 42, 2, 42),
    "raised-again": (42, 43, 2, 43),
    "never-lowered": (42, 7, 2, 42),
    "default-keeps-it": (42, -1, 2, 42),
    "stale-state-ignored": (-1, 42, 1, -1),
}


@pytest.mark.parametrize("before,floor,version,after", [pytest.param(*c, id=n) for n, c in FLOORS.items()])
def test_on_position_state_raises_the_ref_floor(before, floor, version, after) -> None:
    sk = key(5, ref_floor=before)
    new, _ = on_position_state(sk, 0, 0, version, d(5), d(1), None, floor)
    assert new.ref_floor == after


DISPATCHES = {
    # name: (key's ref_floor, scheduler's offset, dispatched offset)
    "floor-above-the-offset": (42, 7, 42),
    "offset-above-the-floor": (42, 50, 50),
    "no-floor": (-1, 7, 7),
    "equal": (9, 9, 9),
}


@pytest.mark.parametrize("floor,offset,sent", [pytest.param(*c, id=n) for n, c in DISPATCHES.items()])
def test_dispatch_asks_for_the_later_of_offset_and_floor(floor, offset, sent) -> None:
    sk = key(5, jobs=[job(6), job(7)], ref_floor=floor)
    new, outputs = dispatch(sk, NOW, 10, ref_offset=offset)
    dispatched = [o.job for o in outputs if isinstance(o, Dispatch)]
    assert [j.day for j in dispatched] == [d(6), d(7)]
    assert all(j.ref_offset == sent for j in dispatched)
    assert all(j.ref_offset == sent for j in new.jobs)
    assert [o.job for o in outputs if isinstance(o, JobChanged)] == dispatched


def test_a_moved_back_key_is_planned_again_with_the_correction_offset() -> None:
    """A reset that moved the watermark (new generation) drops the jobs; the ones planned
    again ask valuation to have read the correction."""
    s = apply_reset(state(6, epoch=0, generation=0, version=1), None, d(3), job_id=JOB, ref_floor=42).state
    sk = key(6, jobs=[job(7, PROCESSING, ref_offset=5)], state_version=1)
    sk, outputs = on_position_state(sk, s.epoch, s.generation, s.version, s.watermark_date, d(1), s.changed_from,
                                    s.ref_floor)
    assert (sk.watermark, sk.jobs, sk.ref_floor, outputs) == (d(3), (), 42, [])
    sk, _ = plan(sk, d(7), scheduler_config(Settings()))
    assert [j.day for j in sk.jobs] == [d(4), d(5), d(6), d(7)]
    sk, outputs = dispatch(sk, NOW, 10, ref_offset=7)
    assert [o.job.ref_offset for o in outputs if isinstance(o, Dispatch)] == [42, 42, 42, 42]


def test_a_key_behind_the_reset_values_its_changed_days_again() -> None:
    """The watermark is behind the reset, but days after it may already be valued (jobs
    COMPLETE, not yet advanced past) or in flight: they are valued again, after the
    correction."""
    s = apply_reset(state(3, epoch=0, generation=0, version=1), None, d(4), job_id=JOB, ref_floor=42).state
    assert (s.watermark_date, s.generation, s.changed_from) == (d(3), 0, d(5))
    sk = key(3, jobs=[job(4, COMPLETE), job(5, COMPLETE), job(6, PROCESSING, ref_offset=5, dispatched_at=NOW - 1)],
             state_version=1)
    sk, outputs = on_position_state(sk, s.epoch, s.generation, s.version, s.watermark_date, d(1), s.changed_from,
                                    s.ref_floor)
    assert not any(isinstance(o, Reset) for o in outputs)  # the watermark is not past the changed days
    assert [(j.day, j.status) for j in sk.jobs] == [(d(4), COMPLETE), (d(6), PENDING)]  # day 5 replanned below
    sk, _ = plan(sk, d(6), scheduler_config(Settings()))
    sk, outputs = dispatch(sk, NOW, 10, ref_offset=7)
    assert sorted((o.job.day, o.job.ref_offset) for o in outputs if isinstance(o, Dispatch)) == [(d(5), 42), (d(6), 42)]
