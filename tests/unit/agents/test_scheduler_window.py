"""The scheduler's dispatch window: at most `max_processing_per_partition` jobs of a
partition are PROCESSING at once, so a backlog waits PENDING in the scheduler instead of
queueing in front of the valuation role for longer than the processing timeout (where it
would be reclaimed and sent again, over and over). The running count it keeps must always
equal the PROCESSING jobs of its keys, whatever happens: answers, a dead valuation worker
and reclaims, ticks between full passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from memory_roles import Loop, business_date, instrument, portfolio, price, trade

from epochflow.agents.configs import scheduler_config
from epochflow.config import Settings
from epochflow.domain.scheduling import SchedulerConfig

DAY = timedelta(days=1)
WINDOW = 3
CFG = replace(scheduler_config(Settings()), processing_timeout_s=30.0, max_processing_per_partition=WINDOW, full_pass_s=5.0)
SECURITIES = ("S1", "S2", "S3")


def d(n: int) -> date:
    return date(2025, 8, 1) + (n - 1) * DAY


def loop_with_history(days: int, securities=SECURITIES, cfg: SchedulerConfig = CFG) -> Loop:
    loop = Loop(cfg=cfg)
    loop.feed(portfolio(), *(instrument(s) for s in securities))
    loop.feed(*(price(d(n), 100 + n, s) for s in securities for n in range(1, days + 1)))
    loop.feed(*(business_date(d(n)) for n in range(1, days + 1)))
    return loop


def processing_truth(loop: Loop) -> int:
    return sum(sk.processing() for sk in loop.scheduler.keys.data.values())


def test_a_backlog_is_dispatched_a_window_at_a_time_and_completes() -> None:
    loop = loop_with_history(10)
    loop.hold_jobs = True  # the valuation role has not answered yet
    loop.feed(trade("B1", "BUY", d(1), 10, 100))
    assert len(loop.dispatched) == WINDOW
    assert loop.scheduler.processing(0) == WINDOW == processing_truth(loop)
    loop.tick(loop.now + 0.25)  # the window is full: a tick sends nothing more
    assert len(loop.dispatched) == WINDOW

    loop.release_jobs()  # each answer makes room for the next job
    jobs = loop.jobs_of(0)
    assert list(jobs) == [d(n) for n in range(1, 11)]
    assert all(row.status == "COMPLETE" for row in jobs.values())
    assert len(loop.dispatched) == 10  # every job sent once: nothing reclaimed, nothing sent twice
    assert loop.state().watermark_date == d(10)
    assert loop.scheduler.processing(0) == 0 == processing_truth(loop)


def test_a_key_that_found_the_window_full_is_sent_by_a_later_tick() -> None:
    loop = loop_with_history(5)
    loop.hold_jobs = True
    loop.feed(trade("B1", "BUY", d(1), 10, 100, security_id="S1"))  # fills the window
    loop.feed(trade("B2", "BUY", d(5), 10, 100, security_id="S2"))  # one job: no room
    assert {j.security_id for j in loop.dispatched} == {"S1"}
    loop.release_jobs()  # answers make room for S1's own remaining days first
    loop.tick(loop.now + 0.25)  # between full passes: fills the window from the cursor
    assert loop.jobs_of(0)[d(5)].status == "COMPLETE"
    assert loop.state("P1|S2").watermark_date == d(5)
    assert loop.state("P1|S1").watermark_date == d(5)


def test_a_dead_valuation_worker_s_jobs_are_reclaimed_and_the_window_reopens() -> None:
    loop = loop_with_history(6)
    loop.hold_jobs = True
    loop.feed(trade("B1", "BUY", d(1), 10, 100))
    lost = list(loop.held_jobs)
    loop.held_jobs.clear()  # the worker died with them
    assert len(lost) == WINDOW
    loop.hold_jobs = False
    loop.tick(loop.now + CFG.processing_timeout_s + 1)  # a full pass reclaims and sends again
    assert loop.state().watermark_date == d(6)
    assert loop.scheduler.processing(0) == 0 == processing_truth(loop)


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), st.sampled_from(SECURITIES), st.integers(1, 8)),
        st.tuples(st.just("hold"), st.booleans()),
        st.tuples(st.just("release")),
        st.tuples(st.just("lose")),  # the valuation worker dies with what it held
        st.tuples(st.just("tick"), st.sampled_from([0.25, 1.0, 6.0, 31.0])),
        st.tuples(st.just("day")),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_the_running_count_is_always_the_processing_jobs_and_never_past_the_window(actions) -> None:
    loop = loop_with_history(8)
    today = 8
    for n, action in enumerate(actions):
        kind = action[0]
        if kind == "trade":
            loop.feed(trade(f"T{n}", "BUY", d(action[2]), 1, 100, security_id=action[1]))
        elif kind == "hold":
            loop.hold_jobs = action[1]
        elif kind == "release":
            loop.release_jobs()
        elif kind == "lose":
            loop.held_jobs.clear()
        elif kind == "tick":
            loop.tick(loop.now + action[1])
        else:
            today += 1
            loop.feed(*(price(d(today), 100, s) for s in SECURITIES), business_date(d(today)))
        assert loop.scheduler.processing(0) == processing_truth(loop) <= WINDOW
    # whatever happened, once the valuation role answers and time passes, every key ends valued
    loop.hold_jobs = False
    loop.release_jobs()
    loop.tick(loop.now + CFG.processing_timeout_s + 1)
    for _ in range(20):
        loop.tick(loop.now + 0.25)
    for key, _sk in loop.scheduler.keys.data.items():
        assert loop.state(key).watermark_date == d(today), key
    assert loop.scheduler.processing(0) == 0 == processing_truth(loop)
