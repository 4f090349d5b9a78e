"""The fan-out role over in-memory stores: the holders index kept from the positions role's
state rows, back-dated prices and FX rates detected as triggers, and the cycle that
queues, claims and sends ResetWatermark commands to every holder at the limiter's rate,
resuming a restarted worker's job at its cursor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from epochflow import metrics
from epochflow.agents.configs import fanout_config
from epochflow.agents.fanout_handler import FanoutHandler
from epochflow.agents.messages import Message
from epochflow.config import Settings
from epochflow.domain.fanout import FanoutConfig, RateLimiter, SubjectState
from epochflow.domain.keys import fx_subject, price_subject
from epochflow.schemas.commands import ResetWatermark, parse_command
from epochflow.schemas.events import BusinessDateEvent, FxRateEvent, InstrumentEvent, MarketPriceEvent, PortfolioEvent
from epochflow.schemas.results import PositionStateRow, ReprocessingJobRow, ReprocessingTriggerRow
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore

D = Decimal
DAY = timedelta(days=1)
P = 0  # the partition under test
BUSINESS = 10  # the business date is day 10
DEFAULT = fanout_config(Settings())
CFG = replace(DEFAULT, claim_batch=4, keys_per_cycle=500, rate_per_s=1000.0, max_attempts=5)


def d(n: int) -> date:
    return date(2025, 8, 1) + (n - 1) * DAY


def counter(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


def fanout_handler(rate: float = 1e9, cfg: FanoutConfig = CFG) -> FanoutHandler:
    reference = ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())
    return FanoutHandler(MemoryStore(), MemoryStore(), reference, cfg, RateLimiter(rate, now=0.0), seen=set(), working=set())


def restarted(h: FanoutHandler, rate: float = 1e9) -> FanoutHandler:
    """A new worker process on the same tables: nothing in memory."""
    return FanoutHandler(h.subjects, h.index, h.reference, h.cfg, RateLimiter(rate, now=0.0), seen=set(), working=set())


def state_row(portfolio_id: str, security_id: str) -> PositionStateRow:
    return PositionStateRow(portfolio_id=portfolio_id, security_id=security_id, epoch=0, version=1, status="CURRENT",
                            watermark_date=d(BUSINESS), quantity=D(10), cost_basis=D(1000), cost_basis_local=D(1000),
                            held_since_date=d(1), first_open_date=d(1), last_transaction_date=d(1),
                            updated_at=datetime(2025, 8, 1, tzinfo=UTC))


def price(n: int, value, security_id: str = "S1", currency: str = "USD") -> MarketPriceEvent:
    return MarketPriceEvent(security_id=security_id, price_date=d(n), price=D(str(value)), currency=currency)


def rate(n: int, value, from_currency: str = "EUR", to_currency: str = "USD") -> FxRateEvent:
    return FxRateEvent(from_currency=from_currency, to_currency=to_currency, rate_date=d(n), rate=D(str(value)))


def feed(h: FanoutHandler, *events, offset: int = 0) -> list:
    out = []
    for i, event in enumerate(events):
        out += h.on_reference(event, P, offset + i, now=0.0)
    return out


def world(h: FanoutHandler, holders: tuple[str, ...] = (), portfolios: dict[str, str] | None = None,
          instruments: dict[str, str] | None = None, eur_usd: str | None = None) -> FanoutHandler:
    """Reference data as first published (prices 100 and, if given, the EUR->USD rate for
    days 1..10), the business date, then the state rows of the `holders` ('P|S' keys);
    currencies default to USD."""
    portfolios = portfolios or {"P1": "USD"}
    instruments = instruments or {"S1": "USD"}
    feed(h, *(PortfolioEvent(portfolio_id=p, base_currency=c) for p, c in portfolios.items()),
         *(InstrumentEvent(security_id=s, currency=c) for s, c in instruments.items()))
    feed(h, *(price(n, 100, s, c) for s, c in instruments.items() for n in range(1, BUSINESS + 1)))
    if eur_usd is not None:
        feed(h, *(rate(n, eur_usd) for n in range(1, BUSINESS + 1)))
    feed(h, *(BusinessDateEvent(date=d(n)) for n in range(1, BUSINESS + 1)))
    for key in holders:
        h.on_position_state(state_row(*key.split("|")), P)
    return h


def keys(n: int, security_id: str = "S1") -> tuple[str, ...]:
    return tuple(f"P{i}|{security_id}" for i in range(1, n + 1))


def usd_portfolios(n: int) -> dict[str, str]:
    return {f"P{i}": "USD" for i in range(1, n + 1)}


def messages(out: list) -> list[Message]:
    return [o for o in out if isinstance(o, Message)]


def resets(out: list) -> list[tuple[str, ResetWatermark]]:
    found = []
    for m in messages(out):
        assert (m.topic, m.partition) == ("position-commands", P)
        command = parse_command(m.value)
        assert isinstance(command, ResetWatermark)
        assert m.key.decode() == f"{command.portfolio_id}|{command.security_id}"
        found.append((m.key.decode(), command))
    return found


def rows(out: list, kind) -> list:
    return [o for o in out if isinstance(o, kind)]


def record(h: FanoutHandler, subject: str) -> SubjectState:
    return h.subjects.get(f"{subject}|p{P}")


# ---- the holders index -----------------------------------------------------------------

HOLDERS = {
    # name: (portfolio base, instrument currency, subjects holding the key)
    "same-currency-price-only": ("USD", "USD", [price_subject("S1")]),
    "foreign-instrument-adds-its-pair": ("USD", "EUR", [price_subject("S1"), fx_subject("EUR", "USD")]),
    "pair-points-to-the-base-currency": ("EUR", "USD", [price_subject("S1"), fx_subject("USD", "EUR")]),
}


@pytest.mark.parametrize("base,currency,subjects", [pytest.param(*c, id=n) for n, c in HOLDERS.items()])
def test_holders_index_from_state_rows(base, currency, subjects) -> None:
    h = world(fanout_handler(), portfolios={"P1": base}, instruments={"S1": currency})
    h.on_position_state(state_row("P1", "S1"), P)
    h.on_position_state(state_row("P1", "S1"), P)  # every state change of the key comes again
    restarted(h).on_position_state(state_row("P1", "S1"), P)  # a new worker: no cache
    all_subjects = {price_subject("S1"), fx_subject("EUR", "USD"), fx_subject("USD", "EUR")}
    for subject in all_subjects:
        assert h.holders(subject, P) == (("P1|S1",) if subject in subjects else ())
        assert h.holders(subject, P + 1) == ()


def test_holders_keep_their_arrival_order() -> None:
    h = world(fanout_handler(), portfolios=usd_portfolios(3))
    for key in ("P3|S1", "P1|S1", "P2|S1", "P1|S1"):
        h.on_position_state(state_row(*key.split("|")), P)
    assert h.holders(price_subject("S1"), P) == ("P3|S1", "P1|S1", "P2|S1")


def test_price_subject_without_instrument_or_portfolio_known() -> None:
    h = fanout_handler()
    h.on_position_state(state_row("P9", "S9"), P)
    assert h.holders(price_subject("S9"), P) == ("P9|S9",)


# ---- detection -------------------------------------------------------------------------

def test_backdated_changed_price_with_holders_raises_a_trigger() -> None:
    h = world(fanout_handler(), holders=keys(2), portfolios=usd_portfolios(2))
    corrections = counter(metrics.CORRECTIONS, "price")
    out = h.on_reference(price(4, 101), P, 70, now=5.0)
    trigger_rows = rows(out, ReprocessingTriggerRow)
    assert len(out) == len(trigger_rows) == 1
    t = trigger_rows[0]
    assert (t.subject, t.partition, t.security_id, t.from_currency, t.to_currency) == ("price|S1", P, "S1", None, None)
    assert (t.earliest_impacted_date, t.corrections, t.pending) == (d(4), 1, True)
    assert t.created_at == datetime.fromtimestamp(5.0, UTC)
    assert counter(metrics.CORRECTIONS, "price") == corrections + 1
    state = record(h, price_subject("S1"))
    assert (state.trigger.earliest, state.trigger.ref_offset, state.job) == (d(4), 70, None)

    # an earlier-dated correction moves the trigger back; a later-dated one does not
    out = h.on_reference(price(2, 99), P, 71, now=6.0) + h.on_reference(price(6, 98), P, 72, now=7.0)
    assert [(r.earliest_impacted_date, r.corrections, r.pending) for r in rows(out, ReprocessingTriggerRow)] == [
        (d(2), 2, True), (d(2), 3, True)]
    assert [r.version for r in rows(out, ReprocessingTriggerRow)] == [2, 3]
    assert counter(metrics.CORRECTIONS, "price") == corrections + 3


def test_a_late_first_price_for_a_past_day_is_a_correction_too() -> None:
    h = world(fanout_handler(), holders=keys(1))
    feed(h, InstrumentEvent(security_id="S2", currency="USD"))  # never priced until now
    h.on_position_state(state_row("P1", "S2"), P)
    out = h.on_reference(price(4, 50, "S2"), P, 80, now=1.0)
    assert [(r.subject, r.earliest_impacted_date) for r in rows(out, ReprocessingTriggerRow)] == [("price|S2", d(4))]


NOT_CORRECTIONS = {
    # name: (event, partition)
    "identical-price-resent": (price(4, 100), P),
    "price-for-the-business-date": (price(BUSINESS, 105), P),
    "price-after-the-business-date": (price(BUSINESS + 1, 105), P),
    "no-holders-of-the-security": (price(4, 101, "S2"), P),
    "no-holders-on-the-partition": (price(4, 101), P + 1),
    "identical-rate-resent": (rate(4, "1.10"), P),
    "rate-for-the-business-date": (rate(BUSINESS, "1.30"), P),
    "rate-of-a-pair-nobody-uses": (rate(4, "0.90", "GBP", "USD"), P),
    "rate-of-the-inverse-pair": (rate(4, "0.90", "USD", "EUR"), P),
}


@pytest.mark.parametrize("event,partition", [pytest.param(*c, id=n) for n, c in NOT_CORRECTIONS.items()])
def test_not_a_correction(event, partition) -> None:
    h = world(fanout_handler(), holders=("P1|S1", "P1|E1"), instruments={"S1": "USD", "E1": "EUR"},
              eur_usd="1.10")
    corrections = counter(metrics.CORRECTIONS, "price") + counter(metrics.CORRECTIONS, "fx")
    assert h.on_reference(event, partition, 90, now=1.0) == []
    assert h.on_tick(partition, now=2.0) == []
    assert counter(metrics.CORRECTIONS, "price") + counter(metrics.CORRECTIONS, "fx") == corrections
    assert h.subjects.data == {}


def test_nothing_before_a_business_date_is_known() -> None:
    h = fanout_handler()
    feed(h, PortfolioEvent(portfolio_id="P1", base_currency="USD"), InstrumentEvent(security_id="S1", currency="USD"))
    h.on_position_state(state_row("P1", "S1"), P)
    assert h.on_reference(price(4, 100), P, 1, now=0.0) == []
    assert h.on_reference(price(4, 101), P, 2, now=0.0) == []


# ---- the cycle -------------------------------------------------------------------------

def test_tick_turns_the_trigger_into_a_job_and_resets_every_holder() -> None:
    h = world(fanout_handler(), holders=keys(3), portfolios=usd_portfolios(3))
    h.on_reference(price(6, 101), P, 41, now=1.0)
    h.on_reference(price(4, 102), P, 42, now=1.5)
    created, complete = counter(metrics.RESET_JOB_EVENTS, "CREATED"), counter(metrics.RESET_JOB_EVENTS, "COMPLETE")
    sent = counter(metrics.FANOUT_KEYS_RESET)

    out = h.on_tick(P, now=2.0)
    got = resets(out)
    assert [k for k, _ in got] == ["P1|S1", "P2|S1", "P3|S1"]
    job_id = "price|S1#p0#1"
    for _, command in got:
        assert (command.to_date, command.job_id, command.ref_offset, command.epoch) == (d(3), job_id, 42, None)
        assert "RESET_WATERMARKS" in command.reason and "price|S1" in command.reason
    [t] = rows(out, ReprocessingTriggerRow)
    assert (t.pending, t.earliest_impacted_date) == (False, None)
    [j] = rows(out, ReprocessingJobRow)
    assert (j.job_id, j.job_type, j.subject, j.security_id, j.status, j.earliest_impacted_date) == (
        job_id, "RESET_WATERMARKS", "price|S1", "S1", "COMPLETE", d(4))
    assert (j.attempt_count, j.keys_total, j.keys_reset, j.failure_reason) == (1, 3, 3, None)
    assert j.finished_at == j.last_attempted_at == datetime.fromtimestamp(2.0, UTC)
    assert j.created_at == datetime.fromtimestamp(2.0, UTC)
    assert counter(metrics.RESET_JOB_EVENTS, "CREATED") == created + 1
    assert counter(metrics.RESET_JOB_EVENTS, "COMPLETE") == complete + 1
    assert counter(metrics.FANOUT_KEYS_RESET) == sent + 3
    assert not record(h, price_subject("S1")).open

    assert h.on_tick(P, now=3.0) == []  # nothing left to do


def test_limiter_paces_the_resets_over_several_ticks() -> None:
    h = world(fanout_handler(rate=3), holders=keys(7), portfolios=usd_portfolios(7))
    h.on_reference(price(4, 101), P, 50, now=0.0)
    sent: list[str] = []
    progress = []
    for now in (0.0, 0.5, 1.0, 2.0, 3.0):
        out = h.on_tick(P, now=now)
        batch = [k for k, _ in resets(out)]
        sent += batch
        progress += [(len(batch), r.status, r.keys_reset, r.keys_total, r.attempt_count) for r in rows(out, ReprocessingJobRow)]
    assert progress == [
        (3, "PROCESSING", 3, 7, 1),  # the burst
        (1, "PROCESSING", 4, 7, 1),  # half a second: 1.5 tokens, one whole
        (2, "PROCESSING", 6, 7, 1),  # the half token saved, plus 1.5
        (1, "COMPLETE", 7, 7, 1),
    ]  # and nothing at 3.0
    assert sent == list(keys(7))  # every holder once, in the index's order


def test_keys_per_cycle_bounds_one_jobs_batch() -> None:
    h = world(fanout_handler(cfg=replace(DEFAULT, keys_per_cycle=2)), holders=keys(5), portfolios=usd_portfolios(5))
    h.on_reference(price(4, 101), P, 50, now=0.0)
    assert [len(resets(h.on_tick(P, now=float(t)))) for t in range(4)] == [2, 2, 1, 0]


def test_claim_batch_bounds_the_jobs_processing_at_once() -> None:
    h = world(fanout_handler(rate=1, cfg=replace(DEFAULT, claim_batch=1)), holders=("P1|S1", "P1|S2"),
              instruments={"S1": "USD", "S2": "USD"})
    h.on_reference(price(4, 101, "S1"), P, 50, now=0.0)
    h.on_reference(price(4, 101, "S2"), P, 51, now=0.0)
    out = h.on_tick(P, now=0.0)
    assert sorted((r.subject, r.status) for r in rows(out, ReprocessingJobRow)) == [
        ("price|S1", "COMPLETE"), ("price|S2", "PENDING")]
    out = h.on_tick(P, now=1.0)
    assert [(r.subject, r.status) for r in rows(out, ReprocessingJobRow)] == [("price|S2", "COMPLETE")]


def test_a_restarted_worker_resumes_the_job_at_its_cursor() -> None:
    first = world(fanout_handler(rate=2), holders=keys(5), portfolios=usd_portfolios(5))
    first.on_reference(price(4, 101), P, 60, now=0.0)
    sent = [k for k, _ in resets(first.on_tick(P, now=0.0))]
    out = first.on_tick(P, now=0.5)  # the same worker goes on: not an interruption
    sent += [k for k, _ in resets(out)]
    [j] = rows(out, ReprocessingJobRow)
    assert (j.status, j.keys_reset, j.attempt_count, j.failure_reason) == ("PROCESSING", 3, 1, None)

    second = restarted(first, rate=2)
    out = second.on_tick(P, now=10.0)
    sent += [k for k, _ in resets(out)]
    [j] = rows(out, ReprocessingJobRow)
    assert (j.status, j.keys_reset, j.keys_total, j.attempt_count) == ("COMPLETE", 5, 5, 2)
    assert j.failure_reason == "resumed after an interruption at key 3"
    assert sent == list(keys(5))  # the new worker sent P4 and P5: none skipped, none twice


def test_a_restarted_worker_finishes_the_job_with_no_key_sent_twice() -> None:
    first = world(fanout_handler(rate=2), holders=keys(6), portfolios=usd_portfolios(6))
    first.on_reference(price(4, 101), P, 60, now=0.0)
    sent = [k for k, _ in resets(first.on_tick(P, now=0.0))]
    second = restarted(first, rate=2)
    progress = []
    for now in (10.0, 11.0, 12.0):
        out = second.on_tick(P, now=now)
        sent += [k for k, _ in resets(out)]
        progress += [(r.status, r.keys_reset, r.attempt_count) for r in rows(out, ReprocessingJobRow)]
    assert progress == [("PROCESSING", 4, 2), ("COMPLETE", 6, 2)]
    assert sent == list(keys(6))


def test_a_job_interrupted_past_max_attempts_fails() -> None:
    h = world(fanout_handler(rate=1, cfg=replace(DEFAULT, max_attempts=2)), holders=keys(5), portfolios=usd_portfolios(5))
    h.on_reference(price(4, 101), P, 60, now=0.0)
    failed = counter(metrics.RESET_JOB_EVENTS, "FAILED")
    h.on_tick(P, now=0.0)
    h = restarted(h, rate=1)
    h.on_tick(P, now=10.0)
    h = restarted(h, rate=1)
    out = h.on_tick(P, now=20.0)
    assert resets(out) == []
    [j] = rows(out, ReprocessingJobRow)
    assert (j.status, j.attempt_count, j.keys_reset) == ("FAILED", 2, 2)
    assert j.failure_reason == "interrupted 2 times; 2 keys reset"
    assert counter(metrics.RESET_JOB_EVENTS, "FAILED") == failed + 1
    assert not record(h, price_subject("S1")).open


def test_a_correction_while_the_job_runs_waits_for_it_then_gets_its_own_job() -> None:
    h = world(fanout_handler(rate=2), holders=keys(3), portfolios=usd_portfolios(3))
    h.on_reference(price(6, 101), P, 50, now=0.0)
    sent = resets(h.on_tick(P, now=0.0))  # P1, P2 reset to day 5
    h.on_reference(price(3, 102), P, 51, now=0.2)  # earlier: the running job is not widened
    sent += resets(h.on_tick(P, now=1.0))  # P3: the first job completes, the second is queued
    sent += resets(h.on_tick(P, now=2.0))
    sent += resets(h.on_tick(P, now=3.0))
    assert [(k, c.job_id, c.to_date, c.ref_offset) for k, c in sent] == [
        ("P1|S1", "price|S1#p0#1", d(5), 50), ("P2|S1", "price|S1#p0#1", d(5), 50),
        ("P3|S1", "price|S1#p0#1", d(5), 50),
        ("P1|S1", "price|S1#p0#2", d(2), 51), ("P2|S1", "price|S1#p0#2", d(2), 51),
        ("P3|S1", "price|S1#p0#2", d(2), 51),
    ]
    assert not record(h, price_subject("S1")).open


def test_a_job_completed_while_a_trigger_waits_still_reports_complete() -> None:
    """The record keeps one job: when the cycle completes a job and queues the waiting
    trigger in the same step, the finished job's COMPLETE row (and event) must still go out,
    or PostgreSQL shows it PROCESSING forever."""
    h = world(fanout_handler(rate=2), holders=keys(3), portfolios=usd_portfolios(3))
    h.on_reference(price(6, 101), P, 50, now=0.0)
    h.on_tick(P, now=0.0)
    h.on_reference(price(3, 102), P, 51, now=0.2)
    complete = counter(metrics.RESET_JOB_EVENTS, "COMPLETE")
    out = h.on_tick(P, now=1.0)
    assert sorted((r.job_id, r.status) for r in rows(out, ReprocessingJobRow)) == [
        ("price|S1#p0#1", "COMPLETE"), ("price|S1#p0#2", "PENDING")]
    assert counter(metrics.RESET_JOB_EVENTS, "COMPLETE") == complete + 1


# ---- FX --------------------------------------------------------------------------------

def test_backdated_fx_rate_resets_exactly_the_keys_valued_with_the_pair() -> None:
    portfolios = {"PU": "USD", "PU2": "USD", "PE": "EUR"}
    instruments = {"E1": "EUR", "E2": "EUR", "U1": "USD", "G1": "GBP"}
    holders = ("PU|E1", "PU|U1", "PU2|E2", "PU|G1", "PE|E1", "PE|U1")
    h = world(fanout_handler(), holders=holders, portfolios=portfolios, instruments=instruments, eur_usd="1.10")
    corrections = counter(metrics.CORRECTIONS, "fx")

    out = h.on_reference(rate(5, "1.12"), P, 300, now=1.0)
    [t] = rows(out, ReprocessingTriggerRow)
    assert (t.subject, t.security_id, t.from_currency, t.to_currency, t.earliest_impacted_date) == (
        "fx|EUR|USD", None, "EUR", "USD", d(5))
    assert counter(metrics.CORRECTIONS, "fx") == corrections + 1

    out = h.on_tick(P, now=2.0)
    got = resets(out)
    assert sorted(k for k, _ in got) == ["PU2|E2", "PU|E1"]
    assert all((c.to_date, c.ref_offset, c.job_id) == (d(4), 300, "fx|EUR|USD#p0#1") for _, c in got)
    [j] = rows(out, ReprocessingJobRow)
    assert (j.subject, j.from_currency, j.to_currency, j.status, j.keys_total, j.keys_reset) == (
        "fx|EUR|USD", "EUR", "USD", "COMPLETE", 2, 2)


def test_the_in_flight_window_paces_resets_by_keys_coming_back_current() -> None:
    from epochflow.domain.fanout import InFlight

    h = world(fanout_handler(), holders=keys(5), portfolios=usd_portfolios(5))
    h.in_flight = InFlight(limit=2, timeout_s=60)
    h.on_reference(price(5, 101), P, 100, now=1.0)

    first = [k for k, _ in resets(h.on_tick(P, now=2.0))]
    assert first == ["P1|S1", "P2|S1"]
    assert resets(h.on_tick(P, now=3.0)) == []  # the window is full

    later = {"updated_at": datetime.fromtimestamp(4.0, UTC)}
    h.on_position_state(state_row("P1", "S1").model_copy(update=later), P)  # CURRENT, not yet with the correction
    assert resets(h.on_tick(P, now=4.5)) == []
    back = state_row("P1", "S1").model_copy(update={**later, "ref_floor": 100})
    h.on_position_state(back, P)  # P1 is CURRENT again, revalued with the correction
    assert [k for k, _ in resets(h.on_tick(P, now=5.0))] == ["P3|S1"]
    assert [k for k, _ in resets(h.on_tick(P, now=70.0))] == ["P4|S1", "P5|S1"]  # the others expired
