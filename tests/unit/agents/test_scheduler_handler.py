"""The scheduler role over in-memory stores, end to end with the positions and valuation
handlers standing in for their roles (see memory_roles.Loop): position-aware planning, the
job rows it writes, AdvanceWatermark commands (epoch, generation, to_date), retries of
blocked jobs (backoff, data arrival), reclaim, NOT_READY, stale answers, a history change
under an advance still in flight, and the over-attempts alert."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from memory_roles import Loop, business_date, instrument, portfolio, price, trade

from epochflow import metrics
from epochflow.agents.configs import scheduler_config
from epochflow.config import Settings
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import FxRateEvent
from epochflow.schemas.results import JobOutcome, PositionStateRow

D = Decimal
DAY = timedelta(days=1)
CFG = replace(scheduler_config(Settings()), backoff_s=600.0, max_attempts=2, processing_timeout_s=30.0, not_ready_delay_s=0.5)


def d(n: int) -> date:
    return date(2025, 8, 1) + (n - 1) * DAY


def counter(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


def priced_loop(last_price_day: int = 5, **kw) -> Loop:
    loop = Loop(cfg=kw.pop("cfg", CFG), **kw)
    loop.feed(portfolio(), instrument())
    loop.feed(*(price(d(n), 100 + n) for n in range(1, last_price_day + 1)))
    return loop


def test_values_from_the_first_open_date_to_the_business_date_and_advances() -> None:
    loop = priced_loop()
    loop.feed(*(business_date(d(n)) for n in range(1, 6)))
    assert loop.dispatched == [] and loop.job_rows == {}  # no position yet: nothing to value
    loop.feed(trade("B1", "BUY", d(3), 10, 100))

    jobs = loop.jobs_of(0)
    assert list(jobs) == [d(3), d(4), d(5)]  # none before the first open date
    assert all((r.status, r.attempt_count, r.failure_reason) == ("COMPLETE", 1, None) for r in jobs.values())
    advances = loop.advances()
    assert advances and all((a.epoch, a.generation) == (0, 0) for a in advances)
    assert [a.to_date for a in advances] == sorted(a.to_date for a in advances)
    assert advances[-1].to_date == d(5) and advances[-1].business_date == d(5)
    state = loop.state()
    assert (state.watermark_date, state.status.value) == (d(5), "CURRENT")
    assert sorted(loop.snapshots) == [(d(3), 0), (d(4), 0), (d(5), 0)]
    s = loop.snapshots[(d(4), 0)]
    assert (s.quantity, s.cost_basis, s.market_price, s.market_value, s.unrealized_gain_loss, s.valuation_status) == (
        D(10), D(1000), D(104), D(1040), D(40), "VALUED_CURRENT")


def test_a_new_business_date_values_only_the_new_days() -> None:
    loop = priced_loop(7)
    loop.feed(business_date(d(2)), trade("B1", "BUY", d(1), 10, 100))
    before = len(loop.dispatched)
    loop.feed(business_date(d(4)))
    assert [j.valuation_date for j in loop.dispatched[before:]] == [d(3), d(4)]
    assert loop.advances()[-1].to_date == d(4) and loop.state().watermark_date == d(4)


def test_backdated_transaction_values_the_new_epoch_and_advances_it() -> None:
    loop = priced_loop()
    loop.feed(*(business_date(d(n)) for n in range(1, 6)), trade("B1", "BUY", d(1), 100, 100))
    assert loop.state().watermark_date == d(5)
    loop.feed(trade("S1", "SELL", d(3), 40, 103))

    state = loop.state()
    assert state.epoch == 1
    last = loop.advances()[-1]
    assert (last.epoch, last.generation, last.to_date) == (1, state.generation, d(5))
    assert (state.watermark_date, state.status.value) == (d(5), "CURRENT")
    # the new epoch values from the back-dated day (earlier days are carried over)
    assert list(loop.jobs_of(1)) == [d(3), d(4), d(5)]
    assert all(r.status == "COMPLETE" for r in loop.jobs_of(1).values())
    assert [loop.snapshots[(d(n), 1)].quantity for n in (3, 4, 5)] == [D(60)] * 3
    assert loop.snapshots[(d(5), 1)].cost_basis == D(6000)
    assert loop.snapshots[(d(5), 1)].market_value == D(60 * 105)
    assert loop.snapshots[(d(2), 0)].quantity == D(100)


def test_blocked_job_waits_for_its_price_then_completes_at_once() -> None:
    loop = Loop(cfg=CFG)
    loop.feed(portfolio(), instrument(), business_date(d(2)), trade("B1", "BUY", d(1), 10, 100))

    jobs = loop.jobs_of(0)
    assert list(jobs) == [d(1), d(2)]
    for row in jobs.values():
        assert (row.status, row.attempt_count) == ("PENDING", 1) and "price" in row.failure_reason
    assert loop.advances() == []
    assert {s.valuation_status for s in loop.snapshots.values()} == {"UNVALUED"}
    # not retried before the backoff
    sent = len(loop.dispatched)
    loop.tick(loop.now + CFG.backoff_s - 1)
    assert len(loop.dispatched) == sent
    # the price arrives: retried at once, long before the backoff ends
    loop.feed(price(d(1), 101))
    assert len(loop.dispatched) == sent + 2
    jobs = loop.jobs_of(0)
    assert [(r.status, r.attempt_count, r.failure_reason) for r in jobs.values()] == [("COMPLETE", 2, None)] * 2
    assert loop.advances()[-1].to_date == d(2)
    assert [loop.snapshots[(d(n), 0)].valuation_status for n in (1, 2)] == ["VALUED_CURRENT", "VALUED_STALE"]


def test_blocked_job_is_retried_after_the_backoff() -> None:
    loop = Loop(cfg=CFG)
    loop.feed(portfolio(), instrument(), business_date(d(1)), trade("B1", "BUY", d(1), 10, 100))
    assert loop.jobs_of(0)[d(1)].attempt_count == 1
    start = loop.now
    loop.tick(start + CFG.backoff_s - 1)
    assert loop.jobs_of(0)[d(1)].attempt_count == 1
    loop.tick(start + CFG.backoff_s + 1)
    assert (loop.jobs_of(0)[d(1)].status, loop.jobs_of(0)[d(1)].attempt_count) == ("PENDING", 2)


def test_over_attempts_alerts_once_per_episode() -> None:
    loop = Loop(cfg=CFG)
    alerts = counter(metrics.JOBS_OVER_ATTEMPTS)
    loop.feed(portfolio(), instrument(), business_date(d(1)), trade("B1", "BUY", d(1), 10, 100))
    for _n in range(1, 6):
        loop.tick(loop.now + CFG.backoff_s + 1)
    assert loop.jobs_of(0)[d(1)].attempt_count == 6
    assert counter(metrics.JOBS_OVER_ATTEMPTS) == alerts + 1
    loop.feed(price(d(1), 100))
    assert loop.state().watermark_date == d(1)
    # a later, different data problem on the same key alerts again
    loop.feed(price(d(3), 100, currency="GBP"), business_date(d(3)))
    assert loop.jobs_of(0)[d(3)].status == "PENDING"
    for _n in range(1, 4):
        loop.tick(loop.now + CFG.backoff_s + 1)
    assert loop.jobs_of(0)[d(3)].attempt_count > CFG.max_attempts
    assert counter(metrics.JOBS_OVER_ATTEMPTS) == alerts + 2


def test_processing_jobs_of_a_dead_worker_are_reclaimed() -> None:
    loop = priced_loop(cfg=CFG, hold_jobs=True)
    loop.feed(business_date(d(2)), trade("B1", "BUY", d(1), 10, 100))
    first = list(loop.held_jobs)
    assert [j.valuation_date for j in first] == [d(1), d(2)]
    assert {r.status for r in loop.jobs_of(0).values()} == {"PROCESSING"}
    loop.held_jobs.clear()
    loop.tick(loop.now + CFG.processing_timeout_s - 1)
    assert loop.held_jobs == []
    loop.tick(loop.now + 2)
    again = list(loop.held_jobs)
    assert [j.valuation_date for j in again] == [d(1), d(2)]
    assert all(b.job_version > a.job_version for a, b in zip(first, again))
    # the dead worker's answers come in after all: ignored
    loop.hold_jobs, loop.held_jobs = True, first
    loop.release_jobs()
    assert loop.advances() == [] and {r.status for r in loop.jobs_of(0).values()} == {"PROCESSING"}
    loop.held_jobs = again
    loop.release_jobs()
    assert loop.advances()[-1].to_date == d(2)


def test_not_ready_until_the_valuation_copy_has_caught_up() -> None:
    loop = priced_loop(cfg=CFG, hold_valuation_rows=True)
    loop.feed(business_date(d(1)), trade("B1", "BUY", d(1), 10, 100))
    assert [o.outcome for o in loop.outcomes] == ["NOT_READY"]
    row = loop.jobs_of(0)[d(1)]
    assert (row.status, row.attempt_count) == ("PENDING", 0)
    loop.release_valuation_rows()
    loop.tick(loop.now + CFG.not_ready_delay_s + 0.01)
    assert loop.outcomes[-1].outcome == "COMPLETE" and loop.advances()[-1].to_date == d(1)


def test_not_ready_until_the_valuation_role_has_seen_the_reference_data() -> None:
    loop = priced_loop(cfg=CFG)
    loop.feed(trade("B1", "BUY", d(1), 10, 100))
    loop.valuation_ref_lag = 1  # its reference agent has not read the business date yet
    loop.feed(business_date(d(1)))
    assert [o.outcome for o in loop.outcomes] == ["NOT_READY"]
    assert loop.dispatched[-1].ref_offset == loop.ref_offset
    loop.tick(loop.now + CFG.not_ready_delay_s + 0.01)
    assert [o.outcome for o in loop.outcomes] == ["NOT_READY"] * 2
    loop.valuation_ref_lag, loop.valuation_ref_seen = 0, loop.ref_offset
    loop.tick(loop.now + CFG.not_ready_delay_s + 0.01)
    assert loop.outcomes[-1].outcome == "COMPLETE" and loop.advances()[-1].to_date == d(1)


def test_stale_answer_is_counted_and_ignored() -> None:
    loop = priced_loop(cfg=CFG, hold_jobs=True)
    loop.feed(business_date(d(1)), trade("B1", "BUY", d(1), 10, 100))
    job = loop.held_jobs[0]
    stale = counter(metrics.STALE_EPOCH_DROPPED, "scheduler.outcomes")
    answer = JobOutcome(portfolio_id="P1", security_id="S1", valuation_date=d(1), epoch=job.epoch, outcome="STALE",
                        job_version=job.job_version, reason="older epoch")
    loop.route([answer])
    assert counter(metrics.STALE_EPOCH_DROPPED, "scheduler.outcomes") == stale + 1
    assert loop.jobs_of(0)[d(1)].status == "PROCESSING"
    loop.route([answer.model_copy(update={"epoch": job.epoch + 1, "outcome": "COMPLETE"})])
    assert loop.jobs_of(0)[d(1)].status == "PROCESSING" and loop.advances() == []


def test_history_change_under_an_advance_in_flight_resets_and_revalues() -> None:
    """The scheduler valued every day and sent its advances, which positions has not
    applied yet when a transaction inside those days arrives (not back-dated for
    positions, whose watermark is still behind): the scheduler sends a reset, and the days
    are valued again with the new history."""
    loop = priced_loop(cfg=CFG, hold_commands=True)
    loop.feed(*(business_date(d(n)) for n in range(1, 6)), trade("B1", "BUY", d(1), 10, 100))
    assert loop.held_commands[-1].to_date == d(5) and loop.state().watermark_date is None
    loop.feed(trade("B2", "BUY", d(3), 5, 103))
    assert loop.state().epoch == 0
    resets = [c for c in loop.held_commands if isinstance(c, ResetWatermark)]
    assert [(r.epoch, r.to_date) for r in resets] == [(0, d(2))]
    loop.release_commands()

    state = loop.state()
    assert (state.epoch, state.watermark_date, state.status.value) == (0, d(5), "CURRENT")
    last = loop.advances()[-1]
    assert (last.epoch, last.generation, last.to_date) == (0, state.generation, d(5)) and state.generation > 0
    assert [loop.snapshots[(d(n), 0)].quantity for n in range(1, 6)] == [D(10), D(10), D(15), D(15), D(15)]
    assert loop.snapshots[(d(5), 0)].market_value == D(15 * 105)


def test_position_state_rows_are_applied_once() -> None:
    """A re-delivered (or older) position state changes nothing and sends nothing."""
    loop = priced_loop(cfg=CFG)
    loop.feed(business_date(d(2)), trade("B1", "BUY", d(1), 10, 100))
    rows = loop.positions.on_transaction(trade("B1", "BUY", d(1), 10, 100), 0)  # a duplicate
    state_rows = [r for r in rows if isinstance(r, PositionStateRow)]
    assert state_rows
    before = loop.scheduler.keys.get("P1|S1")
    for row in state_rows:
        assert loop.scheduler.on_position_state(row, 0, loop.now) == []
    assert loop.scheduler.keys.get("P1|S1") == before


def test_advance_carries_the_schedulers_business_date() -> None:
    loop = priced_loop(cfg=CFG)
    loop.feed(business_date(d(3)), trade("B1", "BUY", d(2), 1, 1))
    assert all(isinstance(c, AdvanceWatermark) and c.business_date == d(3) for c in loop.commands)


def test_blocked_answer_for_data_that_arrived_while_in_flight_is_retried_at_once() -> None:
    """The price arrives after the dispatch but before the valuation role read it: the job
    answers BLOCKED, and the scheduler (which saw the price arrive since) retries at once."""
    loop = Loop(cfg=CFG, hold_jobs=True)
    loop.feed(portfolio(), instrument(), business_date(d(1)), trade("B1", "BUY", d(1), 10, 100))
    job = loop.held_jobs.pop()
    answer = loop.valuation.on_job(job, loop.valuation_ref_seen)  # valued before the price
    assert [r.outcome for r in answer if isinstance(r, JobOutcome)] == ["BLOCKED"]
    loop.hold_jobs = False
    loop.feed(price(d(1), 101))
    assert loop.held_jobs == [] and len(loop.dispatched) == 1  # nobody was waiting yet
    loop.route(answer)
    assert len(loop.dispatched) == 2 and loop.outcomes[-1].outcome == "COMPLETE"
    row = loop.jobs_of(0)[d(1)]
    assert (row.status, row.attempt_count) == ("COMPLETE", 2)
    assert loop.snapshots[(d(1), 0)].valuation_status == "VALUED_CURRENT"


def test_dispatch_over_a_partitions_keys_is_bounded_per_tick() -> None:
    """max_dispatch_per_tick bounds what one tick (or one fan-out over the partition's keys,
    like a new business date) dispatches; the rest goes out on the next ticks."""
    loop = priced_loop(cfg=replace(scheduler_config(Settings()), max_dispatch_per_tick=3, backoff_s=600.0), hold_jobs=True)
    loop.feed(instrument("S2"), *(price(d(n), 50 + n, security_id="S2") for n in range(1, 6)))
    loop.feed(trade("B1", "BUY", d(1), 10, 100), trade("B2", "BUY", d(1), 10, 100, security_id="S2"))
    loop.feed(business_date(d(5)))
    assert len(loop.held_jobs) == 3
    for tick in range(1, 4):
        loop.tick(loop.now + 0.1)
        assert len(loop.held_jobs) == min(3 + 3 * tick, 10)
    assert sorted((j.security_id, j.valuation_date) for j in loop.held_jobs) == sorted(
        (s, d(n)) for s in ("S1", "S2") for n in range(1, 6))
    loop.release_jobs()
    assert {a.security_id: a.to_date for a in loop.advances()} == {"S1": d(5), "S2": d(5)}


def test_missing_fx_then_late_fx_public_case() -> None:
    """public_cases.json missing_fx_then_late_fx: nothing valued until the rate arrives, then
    the day is valued at once and the key advances."""
    loop = Loop(cfg=CFG)
    loop.feed(portfolio("P_FXL"), instrument("SEC_FX_EUR", "EUR"), business_date(d(1)),
              price(d(1), 50, "SEC_FX_EUR", "EUR"),
              trade("FXL_BUY_1", "BUY", d(1), 100, 48, "P_FXL", "SEC_FX_EUR", "EUR"))
    key = "P_FXL|SEC_FX_EUR"
    assert loop.snapshots[(d(1), 0)].valuation_status not in ("VALUED_CURRENT", "VALUED_STALE")
    assert loop.jobs_of(0)[d(1)].status == "PENDING" and loop.advances() == []
    loop.feed(FxRateEvent(from_currency="EUR", to_currency="USD", rate_date=d(1), rate=D("1.25")))
    s = loop.snapshots[(d(1), 0)]
    assert (s.quantity, s.cost_basis, s.cost_basis_local, s.market_price, s.market_value, s.market_value_local,
            s.unrealized_gain_loss, s.unrealized_gain_loss_local, s.valuation_status) == (
        D(100), D(6000), D(4800), D(50), D(6250), D(5000), D(250), D(200), "VALUED_CURRENT")
    assert loop.jobs_of(0)[d(1)].status == "COMPLETE"
    state = loop.state(key)
    assert (state.watermark_date, state.status.value) == (d(1), "CURRENT")


def test_fx_arrival_retries_jobs_waiting_on_it() -> None:
    """A job blocked on an FX rate whose key's costs do not need it (the trade was in the
    base currency) is retried when the rate arrives, not after the backoff."""
    loop = Loop(cfg=CFG)
    loop.feed(portfolio(), instrument("S1", "EUR"), business_date(d(1)), price(d(1), 50, currency="EUR"),
              trade("B1", "BUY", d(1), 10, 40, currency="USD"))
    assert [o.waiting_on for o in loop.outcomes] == ["fx|EUR|USD"]
    assert loop.scheduler.index.get("wait|fx|EUR|USD|p0").keys == ("P1|S1",)
    loop.feed(FxRateEvent(from_currency="EUR", to_currency="USD", rate_date=d(1), rate=D("1.1")))
    assert loop.outcomes[-1].outcome == "COMPLETE" and loop.advances()[-1].to_date == d(1)
    assert loop.scheduler.index.get("wait|fx|EUR|USD|p0") is None
    assert loop.snapshots[(d(1), 0)].market_value == D(550)


def test_an_older_business_date_changes_nothing() -> None:
    loop = priced_loop(cfg=CFG)
    loop.feed(business_date(d(3)), trade("B1", "BUY", d(1), 1, 1))
    sent = len(loop.dispatched)
    assert loop.scheduler.on_reference(business_date(d(2)), 0, 99, loop.now) == []
    assert loop.scheduler.business_date() == d(3) and len(loop.dispatched) == sent


def test_answers_for_an_unknown_key_are_ignored() -> None:
    loop = Loop(cfg=CFG)
    answer = JobOutcome(portfolio_id="P9", security_id="S9", valuation_date=d(1), epoch=0, outcome="COMPLETE")
    assert loop.scheduler.on_outcome(answer, 0, loop.now) == []
    assert loop.scheduler.keys.get("P9|S9") is None


def test_a_price_for_the_business_date_after_the_day_was_valued_revalues_it() -> None:
    """The day was valued with yesterday's price carried forward (VALUED_STALE) and the key
    advanced; then today's price arrives: the day is valued again with it."""
    loop = priced_loop(last_price_day=1)
    loop.feed(business_date(d(2)), trade("B1", "BUY", d(1), 10, 100))
    assert loop.snapshots[(d(2), 0)].valuation_status == "VALUED_STALE"
    loop.feed(price(d(2), 130))
    snapshot = loop.snapshots[(d(2), 0)]
    assert (snapshot.valuation_status, snapshot.market_price, snapshot.market_value) == ("VALUED_CURRENT", D(130), D(1300))
    assert loop.snapshots[(d(1), 0)].market_price == D(101)  # the day before is untouched
