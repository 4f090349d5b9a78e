"""The valuation role over in-memory stores: its copy of each key's history (history rows
in chunks of CHUNK entries, carry-over to a new epoch, truncation to the state's txn_count,
end-of-day lookups across chunk boundaries), and jobs: NOT_READY until the positions state
version and reference offset the job carries have been seen, STALE for an older epoch,
SKIPPED_NO_POSITION without a snapshot, snapshots with COMPLETE or BLOCKED outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from memory_roles import instrument, portfolio, price, valuation_handler

from epochflow import metrics
from epochflow.domain.history_copy import CHUNK, CachedKey
from epochflow.domain.valuation import DailyPosition
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import HistoryCarryOver, JobOutcome, PositionHistoryRow, PositionStateRow, SnapshotRow
from epochflow.tables.reference import apply_reference_event

D = Decimal
KEY = "P1|S1"
START = date(2025, 1, 1)
PER_DAY = 3  # history entries per day: seq 255 and 256 (a chunk boundary) fall on one day


def day_of(seq: int) -> date:
    return START + timedelta(days=seq // PER_DAY)


def hrow(seq: int, epoch: int = 0, day: date | None = None, quantity=None) -> PositionHistoryRow:
    q = D(seq + 1) if quantity is None else D(str(quantity))
    return PositionHistoryRow(portfolio_id="P1", security_id="S1", epoch=epoch, transaction_id=f"T{seq}",
                              position_date=day or day_of(seq), seq=seq, quantity=q, cost_basis=q * 11,
                              cost_basis_local=q * 10, held_since_date=START)


def state(epoch: int, version: int, txn_count: int) -> PositionStateRow:
    return PositionStateRow(portfolio_id="P1", security_id="S1", epoch=epoch, version=version, status="CURRENT",
                            watermark_date=None, quantity=D(0), cost_basis=D(0), cost_basis_local=D(0),
                            held_since_date=None, first_open_date=START, last_transaction_date=None,
                            updated_at=datetime(2025, 1, 1, tzinfo=UTC), txn_count=txn_count)


def carry(from_epoch: int, to_epoch: int, before: date) -> HistoryCarryOver:
    return HistoryCarryOver(portfolio_id="P1", security_id="S1", from_epoch=from_epoch, to_epoch=to_epoch,
                            before_date=before)


def loaded(length: int, epoch: int = 0, version: int = 1):
    h = valuation_handler()
    h.on_position_rows([hrow(s, epoch) for s in range(length)] + [state(epoch, version, length)])
    return h


def eod(h, day: date) -> DailyPosition | None:
    return h.end_of_day(KEY, h.keys.get(KEY), day)


def seq_at(h, day: date) -> int | None:
    """Which history entry the end-of-day lookup found (quantity is seq + 1)."""
    found = eod(h, day)
    return None if found is None else int(found.quantity) - 1


def chunks(h) -> list[int]:
    return sorted(int(k.rsplit("|", 1)[1]) for k in h.chunks.data)


# ---- the history copy -------------------------------------------------------------------

LENGTH = 2 * CHUNK + 100  # three chunks

# the day asked -> the last entry on or before it
LOOKUPS = {
    "before-the-first-entry": (START - timedelta(days=1), None),
    "first-day": (START, PER_DAY - 1),
    "last-day-all-in-chunk-0": (day_of(CHUNK - 2), CHUNK - 2),  # seqs 252..254 on that day
    "day-across-the-chunk-0-1-boundary": (day_of(CHUNK - 1), CHUNK + 1),  # seqs 255..257
    "day-after-the-boundary": (day_of(CHUNK + 2), CHUNK + 4),
    "day-across-the-chunk-1-2-boundary": (day_of(2 * CHUNK), 2 * CHUNK),  # seqs 510..512
    "last-entry": (day_of(LENGTH - 1), LENGTH - 1),
    "after-the-last-entry": (day_of(LENGTH - 1) + timedelta(days=30), LENGTH - 1),
}


@pytest.mark.parametrize("day, expected", [pytest.param(*v, id=k) for k, v in LOOKUPS.items()])
@pytest.mark.parametrize("arrival", ["in-order", "reversed"])
def test_end_of_day_across_chunks(day: date, expected: int | None, arrival: str) -> None:
    h = valuation_handler()
    rows = [hrow(s) for s in range(LENGTH)]
    h.on_position_rows((rows if arrival == "in-order" else rows[::-1]) + [state(0, 1, LENGTH)])
    assert chunks(h) == [0, 1, 2]
    assert all(len(h.chunks.get(f"{KEY}|{n}").entries) == min(CHUNK, LENGTH - n * CHUNK) for n in range(3))
    cached = h.keys.get(KEY)
    assert (cached.epoch, cached.length, cached.state_version) == (0, LENGTH, 1)
    assert seq_at(h, day) == expected
    if expected is not None:
        found = eod(h, day)
        assert (found.day, found.cost_local, found.cost_base) == (day_of(expected), D(expected + 1) * 10,
                                                                  D(expected + 1) * 11)


def test_rows_rewritten_in_the_same_epoch_replace_the_entries() -> None:
    h = loaded(10)
    h.on_position_rows([hrow(4, quantity=99), hrow(5, quantity=98), state(0, 2, 10)])
    assert eod(h, day_of(5)).quantity == D(98) and eod(h, day_of(2)).quantity == D(3)


def test_redelivered_rows_change_nothing() -> None:
    h = loaded(CHUNK + 20)
    keys, data = dict(h.keys.data), dict(h.chunks.data)
    h.on_position_rows([hrow(s) for s in range(CHUNK - 5, CHUNK + 20)] + [state(0, 1, CHUNK + 20)])
    assert h.keys.data == keys and h.chunks.data == data


# carry to a new epoch before a date -> entries kept, chunks left
CARRY_CASES = {
    "inside-chunk-1": (day_of(CHUNK + 30), CHUNK + 30 - (CHUNK + 30) % PER_DAY, [0, 1]),
    "on-the-chunk-0-1-boundary-day": (day_of(CHUNK), CHUNK - 1, [0]),  # seqs 255.. are on or after it
    "at-the-start-of-chunk-2": (day_of(2 * CHUNK + 2), 2 * CHUNK + 1, [0, 1, 2]),
    "before-everything": (START, 0, []),
    "after-everything": (day_of(LENGTH) + timedelta(days=1), LENGTH, [0, 1, 2]),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in CARRY_CASES.items()])
def test_carry_over_keeps_what_comes_before_the_carry_date(case) -> None:
    before, kept, left = case
    h = loaded(LENGTH)
    h.on_position_rows([carry(0, 1, before)])
    cached = h.keys.get(KEY)
    assert (cached.epoch, cached.length) == (1, kept)
    assert chunks(h) == left
    stored = [e.seq for n in left for e in h.chunks.get(f"{KEY}|{n}").entries]
    assert stored == list(range(kept))
    assert all(e.day < before for n in left for e in h.chunks.get(f"{KEY}|{n}").entries)
    # the new epoch re-sends the rest (here: one entry on the carry date, quantity 7)
    h.on_position_rows([hrow(kept, epoch=1, day=before, quantity=7), state(1, 2, kept + 1)])
    assert eod(h, before).quantity == D(7)
    assert eod(h, before + timedelta(days=400)).quantity == D(7)
    if kept:
        assert seq_at(h, before - timedelta(days=1)) == kept - 1


def test_carry_over_already_applied_is_ignored() -> None:
    h = loaded(CHUNK + 10)
    h.on_position_rows([carry(0, 1, day_of(CHUNK)), *(hrow(s, epoch=1) for s in range(CHUNK - 1, CHUNK + 10)),
                        state(1, 2, CHUNK + 10)])
    snapshot = (dict(h.keys.data), dict(h.chunks.data))
    h.on_position_rows([carry(0, 1, START)])  # re-delivered, or an older epoch's
    assert (h.keys.data, h.chunks.data) == snapshot


def test_chained_epochs_carry_over_twice() -> None:
    """N -> N+1 -> N+2 in quick succession: each carry keeps the days before its date."""
    h = loaded(30)
    h.on_position_rows([carry(0, 1, day_of(20)), hrow(18, epoch=1, quantity=500), state(1, 2, 19)])
    h.on_position_rows([carry(1, 2, day_of(10)), hrow(9, epoch=2, quantity=600), state(2, 3, 10)])
    cached = h.keys.get(KEY)
    assert (cached.epoch, cached.length, cached.state_version) == (2, 10, 3)
    assert eod(h, day_of(30)).quantity == D(600) and eod(h, day_of(8)).quantity == D(9)


@pytest.mark.parametrize("txn_count, left", [(CHUNK + 10, [0, 1]), (CHUNK, [0]), (5, [0]), (0, [])])
def test_state_row_truncates_the_history_to_its_txn_count(txn_count: int, left: list[int]) -> None:
    h = loaded(2 * CHUNK + 5)
    h.on_position_rows([state(0, 2, txn_count)])
    cached = h.keys.get(KEY)
    assert (cached.length, cached.state_version) == (txn_count, 2)
    assert chunks(h) == left
    if txn_count:
        assert seq_at(h, day_of(3 * CHUNK)) == txn_count - 1
    else:
        assert eod(h, day_of(3 * CHUNK)) is None


def test_older_epoch_rows_are_dropped_and_counted() -> None:
    h = loaded(10, epoch=2, version=5)
    before = (dict(h.keys.data), dict(h.chunks.data))
    dropped = metrics.STALE_EPOCH_DROPPED.labels("valuation.positions")._value.get()
    h.on_position_rows([hrow(3, epoch=1, quantity=77), state(1, 9, 4), carry(0, 1, START)])
    assert (h.keys.data, h.chunks.data) == before
    assert metrics.STALE_EPOCH_DROPPED.labels("valuation.positions")._value.get() == dropped + 1


def test_state_version_only_moves_forward() -> None:
    h = loaded(10, version=5)
    h.on_position_rows([state(0, 3, 10)])
    assert h.keys.get(KEY).state_version == 5


def test_newer_epoch_without_a_carry_starts_from_nothing() -> None:
    h = loaded(10)
    h.on_position_rows([hrow(0, epoch=1, quantity=3), state(1, 2, 1)])
    cached = h.keys.get(KEY)
    assert (cached.epoch, cached.length) == (1, 1)
    assert eod(h, day_of(9)).quantity == D(3)


def test_rows_of_other_keys_are_kept_apart() -> None:
    h = loaded(5)
    other = hrow(0, quantity=42).model_copy(update={"security_id": "S2"})
    h.on_position_rows([other])
    assert eod(h, day_of(9)).quantity == D(5)
    assert h.end_of_day("P1|S2", h.keys.get("P1|S2"), day_of(9)).quantity == D(42)


# ---- jobs ---------------------------------------------------------------------------------

def priced(h, *events) -> int:
    """Apply reference events; returns the last reference offset."""
    for event in (portfolio(), instrument(), *events):
        apply_reference_event(h.reference, event)
    return 10


def job(day: date, epoch: int = 0, state_version: int = 1, ref_offset: int = 10, version: int = 7) -> ValuationJob:
    return ValuationJob(portfolio_id="P1", security_id="S1", valuation_date=day, epoch=epoch, job_version=version,
                        state_version=state_version, ref_offset=ref_offset)


def split(out: list) -> tuple[list[SnapshotRow], JobOutcome]:
    snapshots = [r for r in out if isinstance(r, SnapshotRow)]
    outcomes = [r for r in out if isinstance(r, JobOutcome)]
    assert len(outcomes) == 1 and len(snapshots) + 1 == len(out)
    return snapshots, outcomes[0]


# id: (job epoch, job state version, job ref offset, ref offset seen) -> outcome
READINESS = {
    "caught-up": (1, 3, 10, 10, "COMPLETE"),
    "seen-more-than-needed": (1, 2, 9, 12, "COMPLETE"),
    "positions-state-not-seen-yet": (1, 4, 10, 10, "NOT_READY"),
    "reference-offset-not-seen-yet": (1, 3, 11, 10, "NOT_READY"),
    "nothing-seen-yet": (1, 3, 10, -1, "NOT_READY"),
    "newer-epoch-not-seen-yet": (2, 3, 10, 10, "NOT_READY"),
    "older-epoch-is-stale": (0, 3, 10, 10, "STALE"),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in READINESS.items()])
def test_job_readiness(case) -> None:
    epoch, state_version, ref_offset, seen, expected = case
    h = loaded(6, epoch=1, version=3)
    priced(h, price(START, "2"))
    stale = metrics.STALE_EPOCH_DROPPED.labels("valuation.value")._value.get()
    snapshots, outcome = split(h.on_job(job(START, epoch, state_version, ref_offset, version=42), seen))
    assert outcome.outcome == expected
    assert (outcome.portfolio_id, outcome.security_id, outcome.valuation_date, outcome.epoch, outcome.job_version) == (
        "P1", "S1", START, epoch, 42)
    assert len(snapshots) == (1 if expected == "COMPLETE" else 0)
    counted = metrics.STALE_EPOCH_DROPPED.labels("valuation.value")._value.get() - stale
    assert counted == (1 if expected == "STALE" else 0)


def test_not_ready_then_complete_once_the_rows_arrive() -> None:
    h = valuation_handler()
    priced(h, price(START, "2"))
    assert split(h.on_job(job(START, state_version=1), 10))[1].outcome == "NOT_READY"
    h.on_position_rows([hrow(0), state(0, 1, 1)])
    snapshots, outcome = split(h.on_job(job(START, state_version=1), 10))
    assert outcome.outcome == "COMPLETE" and snapshots[0].quantity == D(1)


def test_snapshot_row_of_a_valued_day() -> None:
    h = loaded(CHUNK + 3, epoch=2, version=4)
    priced(h, price(day_of(CHUNK - 3), "2.5"))
    day = day_of(CHUNK)  # seqs 255 (chunk 0), 256 and 257 (chunk 1): the last one is 257
    snapshots, outcome = split(h.on_job(job(day, epoch=2, state_version=4), 10))
    assert outcome.outcome == "COMPLETE" and outcome.reason is None and outcome.waiting_on is None
    s = snapshots[0]
    assert (s.portfolio_id, s.security_id, s.date, s.epoch) == ("P1", "S1", day, 2)
    assert (s.quantity, s.cost_basis_local, s.cost_basis) == (D(258), D(2580), D(2838))
    assert (s.market_price, s.price_date, s.market_value_local, s.market_value, s.fx_rate) == (
        D("2.5"), day_of(CHUNK - 3), D(645), D(645), D(1))
    assert (s.unrealized_gain_loss_local, s.unrealized_gain_loss) == (D(645 - 2580), D(645 - 2838))
    assert s.valuation_status == "VALUED_STALE"


# id: reference events beyond portfolio/instrument(USD) -> (status, outcome, waiting_on)
JOB_CASES = {
    "current": ([price(START, "3")], "VALUED_CURRENT", "COMPLETE", None),
    "no-price-is-unvalued-and-blocked": ([], "UNVALUED", "BLOCKED", "price|S1"),
    "price-only-after-the-day": ([price(START + timedelta(days=1), "3")], "UNVALUED", "BLOCKED", "price|S1"),
    "price-in-another-currency": ([price(START, "3", currency="EUR")], "FAILED", "BLOCKED", "price|S1"),
    "eur-instrument-without-fx": ([instrument(currency="EUR"), price(START, "3", currency="EUR")], "FAILED",
                                  "BLOCKED", "fx|EUR|USD"),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in JOB_CASES.items()])
def test_job_outcomes(case) -> None:
    events, status, expected, waiting = case
    h = loaded(3)
    priced(h, *events)
    snapshots, outcome = split(h.on_job(job(START), 10))
    assert snapshots[0].valuation_status == status
    assert (outcome.outcome, outcome.waiting_on) == (expected, waiting)
    assert (outcome.reason is None) == (expected == "COMPLETE")


def test_day_before_the_first_entry_is_skipped_without_a_snapshot() -> None:
    h = loaded(3)
    priced(h, price(START - timedelta(days=5), "3"))
    out = h.on_job(job(START - timedelta(days=1)), 10)
    assert [type(r) for r in out] == [JobOutcome] and out[0].outcome == "SKIPPED_NO_POSITION"


def test_key_never_seen_is_not_ready_until_its_rows_arrive() -> None:
    h = valuation_handler()
    assert h.keys.get(KEY) is None
    assert split(h.on_job(job(START, state_version=1), 10))[1].outcome == "NOT_READY"
    assert h.keys.get(KEY) in (None, CachedKey())
