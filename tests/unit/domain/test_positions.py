"""The positions step against DESIGN.md: duplicates, amendments, back-dated detection
against the effective completed date, epoch bumps and replay, same-day transactions,
epoch and generation fencing of commands, CURRENT at the business date, and late
reference data re-costing a key in the same epoch."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from factories import (
    DUAL_RATES,
    D,
    day,
    eur_usd,
    event_of,
    fx_event,
    handler_history,
    harness,
    portfolio_event,
    txn,
)

from epochflow import metrics
from epochflow.domain.model import Flag, KeyStatus, PositionState, TxnType
from epochflow.domain.positions import (
    Dropped,
    EpochOpened,
    HistoryWritten,
    StateChanged,
    apply_business_date,
    detect_backdated,
    recost_from,
)
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import BusinessDateEvent
from epochflow.schemas.results import HistoryCarryOver, PositionHistoryRow, PositionStateRow, TransactionRow

BUY, SELL = TxnType.BUY, TxnType.SELL
ONE_DAY = timedelta(days=1)
REPROCESSING, CURRENT = KeyStatus.REPROCESSING, KeyStatus.CURRENT


def _opt(text: str | None) -> date | None:
    return None if text is None else day(text)


def kinds(step) -> list[type]:
    return [type(o) for o in step.outputs]


def only(step, kind):
    found = [o for o in step.outputs if isinstance(o, kind)]
    assert len(found) == 1, step.outputs
    return found[0]


def completed_key(watermark: str | None = "09-03", snapshot: str | None = None, **kw):
    """The acceptance case's key (BUY 100@200 09-01, BUY 50@220 09-03), valued in epoch 0."""
    key = harness(**kw)
    key.send(txn(BUY, 100, 200, "09-01", id="B1"), txn(BUY, 50, 220, "09-03", id="B2"))
    key.state = replace(key.state, watermark_date=_opt(watermark), latest_snapshot_date=_opt(snapshot))
    return key


# ---- first arrival ---------------------------------------------------------------------

def test_first_transaction_writes_history_and_state() -> None:
    key = harness()
    step = key.send(txn(BUY, 10, 100, "09-01", id="B"))
    assert kinds(step) == [HistoryWritten, StateChanged]
    written = only(step, HistoryWritten)
    assert written.epoch == 0 and [seq for seq, _ in written.entries] == [0]
    assert key.state.epoch == 0 and key.state.status is CURRENT
    assert key.state.first_open_date == key.state.last_transaction_date == day("09-01")
    assert key.entry("B") in key.buckets[key.refs["B"].week].entries


# ---- duplicates ------------------------------------------------------------------------

DUPLICATES = {
    "identical": txn(BUY, 50, 220, "09-03", id="B2"),
    "same-content-other-decimal-scale": replace(
        txn(BUY, 50, 220, "09-03", id="B2"), quantity=D("50.00"), price=D("220.0"), gross_amount=D("11000.000")),
}


@pytest.mark.parametrize("again", [pytest.param(t, id=n) for n, t in DUPLICATES.items()])
def test_duplicate_changes_nothing_and_resends_what_its_step_rewrote(again) -> None:
    """A re-delivery (or a duplicate) re-sends the rows from the first day its original step
    rewrote, so a crash between the state write and the sends loses nothing."""
    key = completed_key(watermark=None)
    key.send(txn(SELL, 10, 230, "09-05", id="S"))
    state, buckets = key.state, dict(key.buckets)
    step = key.send(again)
    assert not step.changed
    assert step.state == state and key.state == state and key.buckets == buckets
    assert not step.buckets and not step.refs
    assert kinds(step) == [HistoryWritten, StateChanged]
    written = only(step, HistoryWritten)
    assert written.epoch == 0
    assert [(seq, e.txn.transaction_id) for seq, e in written.entries] == [(1, "B2"), (2, "S")]
    assert written.entries[0][1] == key.entry("B2") and written.entries[1][1] == key.entry("S")


def test_duplicate_of_a_backdated_trigger_resends_the_replay() -> None:
    key = completed_key()
    sell = txn(SELL, 40, 215, "09-02", id="S")
    first = key.send(sell)
    state = key.state
    again = key.send(sell)
    assert not again.changed and key.state == state
    assert only(again, EpochOpened) == only(first, EpochOpened) == EpochOpened(0, 1, day("09-02"))
    assert only(again, HistoryWritten) == only(first, HistoryWritten)


def test_duplicate_through_the_handler_counts_and_resends_rows(handler) -> None:
    handler.on_reference(portfolio_event(), 0)
    buy = event_of(txn(BUY, 10, 100, "09-01", id="B"))
    handler.on_transaction(buy, 0)
    before = metrics.DUPLICATES._value.get()
    rows = handler.on_transaction(buy, 0)
    assert metrics.DUPLICATES._value.get() == before + 1
    assert [type(r) for r in rows] == [PositionHistoryRow, TransactionRow, PositionStateRow]
    assert rows[0].transaction_id == rows[1].transaction_id == "B"


# ---- amendments ------------------------------------------------------------------------

AMENDMENTS = {
    # name: (original, amended, watermark, expected epoch, expected first re-sent date, expected watermark)
    "quantity-changed-future-date": (
        txn(BUY, 10, 100, "09-05", id="X"), txn(BUY, 20, 100, "09-05", id="X"), "09-03", 0, "09-05", "09-03"),
    "moved-earlier-future-dates": (
        txn(BUY, 10, 100, "09-06", id="X"), txn(BUY, 10, 100, "09-04", id="X"), "09-03", 0, "09-04", "09-03"),
    "moved-later-into-a-later-week": (
        txn(BUY, 10, 100, "09-06", id="X"), txn(BUY, 10, 100, "10-02", id="X"), "09-03", 0, "09-06", "09-03"),
    "past-transaction-amended-in-place": (
        txn(BUY, 10, 100, "09-02", id="X"), txn(BUY, 12, 100, "09-02", id="X"), "09-05", 1, "09-02", "09-01"),
    "past-moved-into-future": (
        txn(BUY, 10, 100, "09-02", id="X"), txn(BUY, 10, 100, "09-10", id="X"), "09-05", 1, "09-02", "09-01"),
    "future-moved-into-past": (
        txn(BUY, 10, 100, "09-10", id="X"), txn(BUY, 10, 100, "09-02", id="X"), "09-05", 1, "09-02", "09-01"),
}


@pytest.mark.parametrize("original,amended,watermark,epoch,resent_from,new_watermark",
                         [pytest.param(*case, id=name) for name, case in AMENDMENTS.items()])
def test_amendment_replaces_the_old_version(original, amended, watermark, epoch, resent_from, new_watermark) -> None:
    key = harness()
    key.send(txn(BUY, 100, 200, "09-01", id="B1"), original, txn(BUY, 50, 220, "09-08", id="B2"))
    key.state = replace(key.state, watermark_date=day(watermark))
    step = key.send(amended)
    assert step.changed
    ids = [e.txn.transaction_id for e in key.entries()]
    assert sorted(ids) == ["B1", "B2", "X"] and key.state.txn_count == 3
    assert key.entry("X").txn == amended
    assert key.state.holding.quantity == 150 + amended.quantity
    assert key.state.epoch == epoch and key.state.watermark_date == day(new_watermark)
    # recomputed (and re-sent) from the earlier of the old and new dates
    resent = [e for _, e in only(step, HistoryWritten).entries]
    assert resent == [e for e in key.entries() if e.txn.date >= day(resent_from)]
    assert key.entry("X") in key.buckets[key.refs["X"].week].entries  # the ref finds the new version
    # the week the old version left is rewritten too (deleted when it is empty)
    assert all(b.entries for b in key.buckets.values())
    assert [m for m, _ in key.state.weeks] == sorted(key.buckets)


# ---- back-dated detection against the effective completed date -------------------------

DETECTION = {
    # name: (watermark, latest snapshot, transaction date, outcome)
    "no-watermark-no-snapshot": (None, None, "09-02", "none"),
    "after-watermark": ("09-03", None, "09-04", "none"),
    "before-watermark": ("09-03", None, "09-02", "bump"),
    "before-snapshot-watermark-stale": ("09-01", "09-03", "09-02", "bump"),
    "before-watermark-snapshot-older": ("09-03", "09-01", "09-02", "bump"),
    "before-snapshot-no-watermark": (None, "09-03", "09-02", "bump"),
    "same-day-as-watermark": ("09-03", None, "09-03", "same-day"),
    "same-day-as-snapshot-watermark-stale": ("09-01", "09-03", "09-03", "same-day"),
    "after-snapshot-watermark-stale": ("09-01", "09-03", "09-04", "none"),
}


@pytest.mark.parametrize("watermark,snapshot,on,outcome", [pytest.param(*c, id=n) for n, c in DETECTION.items()])
def test_backdated_detection(watermark, snapshot, on, outcome) -> None:
    key = completed_key(watermark, snapshot)
    before = key.state
    assert detect_backdated(before, day(on)) is (outcome == "bump")
    step = key.send(txn(SELL, 10, 215, on, id="S", hour=12))
    after = key.state
    if outcome == "bump":
        assert (after.epoch, after.status) == (1, REPROCESSING)
        assert after.watermark_date == day(on) - ONE_DAY and after.latest_snapshot_date is None
        assert after.generation == before.generation + 1
        assert kinds(step) == [EpochOpened, HistoryWritten, StateChanged]
        assert only(step, EpochOpened) == EpochOpened(0, 1, day(on))
    elif outcome == "same-day":
        # not back-dated, but that day is valued again
        assert after.epoch == 0 and after.status is REPROCESSING
        assert after.effective_completed_date == day(on) - ONE_DAY
        assert after.generation == before.generation + 1
        assert EpochOpened not in kinds(step)
    else:
        assert after.epoch == 0 and after.status is before.status
        assert (after.watermark_date, after.latest_snapshot_date, after.generation) == (
            before.watermark_date, before.latest_snapshot_date, before.generation)
        assert EpochOpened not in kinds(step)
    assert only(step, HistoryWritten).epoch == after.epoch
    assert only(step, StateChanged).state == after


def test_backdated_sell_replays_the_acceptance_case() -> None:
    key = completed_key("09-03")
    step = key.send(txn(SELL, 40, 215, "09-02", id="S"))
    assert only(step, EpochOpened) == EpochOpened(0, 1, day("09-02"))
    written = only(step, HistoryWritten)
    # history before the back-dated day is carried over, the rest is re-sent under epoch 1
    assert written.epoch == 1
    assert [(seq, e.txn.transaction_id, e.quantity, e.cost_local) for seq, e in written.entries] == [
        (1, "S", D(60), D(12000)), (2, "B2", D(110), D(23000))]
    assert key.entry("S").realized_local == D(600)
    assert key.state.watermark_date == day("09-01") and key.state.epoch_rebuilt_from == "2025-09-02"


def test_chained_bumps_while_reprocessing() -> None:
    key = completed_key("09-10")
    key.send(txn(BUY, 1, 210, "09-05", id="T1"))
    assert (key.state.epoch, key.state.watermark_date, key.state.status) == (1, day("09-04"), REPROCESSING)

    step = key.send(txn(BUY, 1, 210, "09-07", id="T2"))  # after the reset watermark: part of the replay
    assert key.state.epoch == 1 and key.state.watermark_date == day("09-04") and EpochOpened not in kinds(step)

    step = key.send(txn(BUY, 1, 210, "09-02", id="T3"))  # back-dated again: N+1 -> N+2
    assert (key.state.epoch, key.state.watermark_date, key.state.status) == (2, day("09-01"), REPROCESSING)
    assert only(step, EpochOpened) == EpochOpened(1, 2, day("09-02"))
    assert all(o.epoch == 2 for o in step.outputs if isinstance(o, HistoryWritten))

    stale = key.advance(day("09-10"), epoch=1, generation=2)
    assert kinds(stale) == [Dropped] and key.state.epoch == 2


def test_same_day_transaction_moves_watermark_back_one_day_epoch_unchanged() -> None:
    key = completed_key("09-03")
    step = key.send(txn(BUY, 5, 221, "09-03", id="LATE", hour=15))
    assert key.state.epoch == 0 and key.state.status is REPROCESSING
    assert key.state.watermark_date == day("09-02")
    # an append changes nothing before it: only the new entry is sent (B2, the same day's
    # earlier trade, was sent by its own step and is unchanged)
    assert [e.txn.transaction_id for _, e in only(step, HistoryWritten).entries] == ["LATE"]


# ---- commands: stale epochs, generation fencing, CURRENT ---------------------------------

def _bumped_key():
    key = completed_key("09-03")
    key.send(txn(SELL, 40, 215, "09-02", id="S"))
    assert key.state.epoch == 1
    return key


STALE_COMMANDS = {
    "advance-from-older-epoch": lambda key: key.advance(day("09-03"), epoch=0),
    "reset-from-older-epoch": lambda key: key.reset(day("08-30"), epoch=0),
}


@pytest.mark.parametrize("command", [pytest.param(c, id=n) for n, c in STALE_COMMANDS.items()])
def test_stale_epoch_command_is_dropped(command) -> None:
    key = _bumped_key()
    state = key.state
    step = command(key)
    assert not step.changed and key.state == state
    assert kinds(step) == [Dropped]


def test_stale_command_is_counted_by_the_handler(handler) -> None:
    handler.on_reference(portfolio_event(), 0)
    handler.on_transaction(event_of(txn(BUY, 10, 100, "09-01", id="B")), 0)
    handler.on_command(AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=0, to_date=day("09-05")))
    handler.on_transaction(event_of(txn(BUY, 1, 100, "09-02", id="LATE")), 0)
    assert handler.states.get("P1|S1").epoch == 1
    counter = metrics.STALE_EPOCH_DROPPED.labels("positions.commands")
    before = counter._value.get()
    state = handler.states.get("P1|S1")
    for command in (
        AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=1, to_date=day("09-05")),
        ResetWatermark(portfolio_id="P1", security_id="S1", epoch=0, to_date=day("08-20")),
    ):
        assert handler.on_command(command) == []
    assert counter._value.get() == before + 2
    assert handler.states.get("P1|S1") == state


GENERATION_FENCES = {
    "reset": lambda key: key.reset(day("09-02")),
    "same-day-transaction": lambda key: key.send(txn(BUY, 1, 220, "09-03", id="SD", hour=16)),
    "backdated-transaction": lambda key: key.send(txn(BUY, 1, 220, "09-02", id="BD")),
}


@pytest.mark.parametrize("moved_back_by", [pytest.param(f, id=n) for n, f in GENERATION_FENCES.items()])
def test_advance_computed_before_a_reset_is_dropped(moved_back_by) -> None:
    key = completed_key("09-03")
    generation, epoch = key.state.generation, key.state.epoch
    moved_back_by(key)
    assert key.state.generation == generation + 1
    state = key.state
    # the scheduler valued up to 09-05 from the state before the reset: it must not undo it
    stale = key.advance(day("09-05"), epoch=epoch if key.state.epoch == epoch else key.state.epoch, generation=generation)
    assert kinds(stale) == [Dropped] and key.state == state
    fresh = key.advance(day("09-05"))
    assert fresh.changed and key.state.watermark_date == day("09-05")


ADVANCES = {
    # name: (status before, watermark before, to_date, business date, watermark after, status after)
    "reaches-business-date": (REPROCESSING, "09-01", "09-05", "09-05", "09-05", CURRENT),
    "passes-business-date": (REPROCESSING, "09-01", "09-06", "09-05", "09-06", CURRENT),
    "short-of-business-date": (REPROCESSING, "09-01", "09-04", "09-05", "09-04", REPROCESSING),
    "business-date-unknown": (REPROCESSING, "09-01", "09-04", None, "09-04", REPROCESSING),
    "never-moves-backwards": (REPROCESSING, "09-04", "09-02", "09-05", "09-04", REPROCESSING),
    "current-key-moves-forward": (CURRENT, "09-01", "09-02", "09-05", "09-02", CURRENT),
}


@pytest.mark.parametrize("status,watermark,to,business,new_watermark,new_status",
                         [pytest.param(*c, id=n) for n, c in ADVANCES.items()])
def test_advance(status, watermark, to, business, new_watermark, new_status) -> None:
    key = completed_key(watermark)
    key.state = replace(key.state, status=status)
    key.advance(day(to), snapshot=day(to), business_date=_opt(business))
    assert key.state.watermark_date == day(new_watermark)
    assert key.state.status is new_status
    assert key.state.epoch == 0


def test_advance_with_the_handler_uses_the_business_date(handler) -> None:
    handler.on_reference(portfolio_event(), 0)
    handler.on_transaction(event_of(txn(BUY, 10, 100, "09-01", id="B")), 0)
    handler.on_command(AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=0, to_date=day("09-02")))
    handler.on_transaction(event_of(txn(BUY, 1, 100, "09-02", id="SD", hour=11)), 0)  # same day: valued again
    handler.on_reference(BusinessDateEvent(date=day("09-03")), 0)
    state = handler.states.get("P1|S1")
    assert (state.status, state.watermark_date, state.generation) == (REPROCESSING, day("09-01"), 1)
    handler.on_command(AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=1, to_date=day("09-02")))
    assert handler.states.get("P1|S1").status is REPROCESSING
    rows = handler.on_command(AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=1,
                                               to_date=day("09-03")))
    assert handler.states.get("P1|S1").status is CURRENT
    assert [(r.status, r.watermark_date) for r in rows] == [("CURRENT", day("09-03"))]


BUSINESS_DATES = {
    # name: (status, watermark, new business date, status after)
    "reprocessing-key-already-valued-to-it": (REPROCESSING, "09-05", "09-05", CURRENT),
    "reprocessing-key-valued-past-it": (REPROCESSING, "09-06", "09-05", CURRENT),
    "reprocessing-key-short-of-it": (REPROCESSING, "09-04", "09-05", REPROCESSING),
    "reprocessing-key-never-valued": (REPROCESSING, None, "09-05", REPROCESSING),
    "current-key-stays-current": (CURRENT, "09-04", "09-05", CURRENT),
}


@pytest.mark.parametrize("status,watermark,business,new_status", [pytest.param(*c, id=n) for n, c in BUSINESS_DATES.items()])
def test_business_date(status, watermark, business, new_status) -> None:
    key = completed_key(watermark)
    key.state = replace(key.state, status=status)
    before = key.state
    step = key.commit(apply_business_date(key.state, day(business)))
    assert key.state.status is new_status
    assert step.changed is (new_status is not status)
    assert (key.state.epoch, key.state.watermark_date, key.state.generation) == (
        before.epoch, before.watermark_date, before.generation)


RESETS = {
    # name: (watermark, snapshot, reset to, changed, effective completed after)
    "before-watermark": ("09-03", None, "09-01", True, "09-01"),
    "before-snapshot-watermark-stale": ("09-01", "09-03", "09-02", True, "09-02"),
    "at-watermark-nothing-to-redo": ("09-03", None, "09-03", False, "09-03"),
    "after-watermark-nothing-to-redo": ("09-03", None, "09-04", False, "09-03"),
    "key-never-valued": (None, None, "09-01", False, None),
}


@pytest.mark.parametrize("watermark,snapshot,to,changed,completed", [pytest.param(*c, id=n) for n, c in RESETS.items()])
def test_reset_moves_back_in_the_same_epoch(watermark, snapshot, to, changed, completed) -> None:
    key = completed_key(watermark, snapshot)
    before = key.state
    step = key.reset(day(to))
    assert step.changed is changed
    assert key.state.epoch == before.epoch
    assert key.state.effective_completed_date == _opt(completed)
    if changed:
        assert key.state.status is REPROCESSING and key.state.generation == before.generation + 1
        assert kinds(step) == [StateChanged]
    else:
        assert key.state == before


# ---- late reference data ---------------------------------------------------------------

def _eur_key(watermark: str | None = None):
    key = harness()
    key.send(txn(BUY, 100, 150, "08-10", id="B", currency="EUR"), txn(SELL, 40, 170, "08-15", id="S", currency="EUR"))
    if watermark:
        key.state = replace(key.state, watermark_date=day(watermark))
    return key


def test_missing_fx_makes_the_key_wait_and_keeps_local_figures() -> None:
    key = _eur_key()
    assert key.state.waiting_for.startswith("fx EUR/USD") and key.state.fx_missing_from == day("08-10")
    assert key.state.holding.cost_local == D(9000) and key.state.holding.cost_base is None
    assert key.entry("S").realized_local == D(800)


def test_late_fx_rate_recosts_a_waiting_key_in_the_same_epoch() -> None:
    key = _eur_key(watermark="08-20")
    step = key.reference_changed(day("08-10"), harness(fx=eur_usd(DUAL_RATES)).reference)
    assert step.changed
    state = key.state
    assert state.epoch == 0 and state.status is REPROCESSING
    assert state.watermark_date == day("08-09")
    assert state.waiting_for == "" and state.fx_missing_from is None
    assert (state.holding.cost_local, state.holding.cost_base) == (D(9000), D(9900))
    written = only(step, HistoryWritten)
    assert written.epoch == 0 and [e.txn.transaction_id for _, e in written.entries] == ["B", "S"]
    assert key.entry("S").realized_base == D(1560) and key.entry("S").flags == ()


def test_rate_after_the_last_transaction_changes_nothing() -> None:
    key = harness(fx=eur_usd(DUAL_RATES))
    key.send(txn(BUY, 100, 150, "08-10", id="B", currency="EUR"))
    state = key.state
    step = key.reference_changed(day("08-15"))
    assert not step.changed and key.state == state


def test_rate_dated_before_the_first_transaction_recosts_from_the_first_open_date() -> None:
    key = _eur_key(watermark="08-20")
    step = key.reference_changed(day("07-01"), harness(fx=eur_usd({"07-01": "1.05"})).reference)
    assert key.state.watermark_date == day("08-09")
    assert key.entry("B").cost_base == D("15750") and key.state.waiting_for == ""
    assert [e.txn.transaction_id for _, e in only(step, HistoryWritten).entries] == ["B", "S"]


def test_handler_late_fx_rate_recosts_waiting_keys(handler) -> None:
    handler.on_reference(portfolio_event(), 0)
    handler.on_transaction(event_of(txn(BUY, 100, 150, "08-10", id="B", currency="EUR")), 0)
    handler.on_transaction(event_of(txn(SELL, 40, 170, "08-15", id="S", currency="EUR")), 0)
    assert handler.states.get("P1|S1").waiting_for
    handler.on_reference(fx_event("08-15", "1.20"), 0)
    assert handler.states.get("P1|S1").fx_missing_from == day("08-10")  # still waits for the BUY's rate
    rows = handler.on_reference(fx_event("08-10", "1.10"), 0)
    txns = {r.transaction_id: r for r in rows if isinstance(r, TransactionRow)}
    assert (txns["B"].net_cost, txns["S"].net_cost, txns["S"].realized_gain_loss) == (D(16500), D(-6600), D(1560))
    assert txns["S"].flags == ""
    state_row = [r for r in rows if isinstance(r, PositionStateRow)][-1]
    assert (state_row.cost_basis, state_row.waiting_for, state_row.epoch) == (D(9900), "", 0)


def test_handler_portfolio_arriving_late_recosts_with_its_method(handler) -> None:
    handler.on_reference(fx_event("08-01", "1.10"), 0)
    for t in (txn(BUY, 10, 100, "08-01", id="B1", currency="EUR"), txn(BUY, 10, 120, "08-02", id="B2", currency="EUR"),
              txn(SELL, 15, 130, "08-03", id="S", currency="EUR")):
        handler.on_transaction(event_of(t), 0)
    state = handler.states.get("P1|S1")
    assert state.waiting_for == "portfolio P1" and state.holding.cost_base is None
    assert state.holding.cost_local == D(600)  # local figures do not wait (FIFO until told otherwise)
    handler.on_reference(portfolio_event(method="AVCO"), 0)
    state = handler.states.get("P1|S1")
    assert state.waiting_for == "" and state.holding.cost_local == D(550) and state.holding.cost_base == D("605.0")
    sell = handler_history(handler, "P1|S1")[-1]
    assert sell.realized_local == D(300) and Flag.FX_MISSING not in sell.flags
    # and a later rate change for the pair now reaches the key
    handler.on_reference(fx_event("08-02", "1.20"), 0)
    assert handler.states.get("P1|S1").holding.cost_base == D("635")


def test_history_rows_carry_the_new_epoch_and_the_carry_over(handler) -> None:
    handler.on_reference(portfolio_event(), 0)
    handler.on_transaction(event_of(txn(BUY, 100, 200, "09-01", id="B1")), 0)
    handler.on_transaction(event_of(txn(BUY, 50, 220, "09-03", id="B2")), 0)
    handler.on_command(AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=0, generation=0,
                                        to_date=day("09-03"), latest_snapshot_date=day("09-03")))
    rows = handler.on_transaction(event_of(txn(SELL, 40, 215, "09-02", id="S")), 0)
    assert rows[0] == HistoryCarryOver(portfolio_id="P1", security_id="S1", from_epoch=0, to_epoch=1,
                                       before_date=day("09-02"))
    history = [r for r in rows if isinstance(r, PositionHistoryRow)]
    assert [(r.epoch, r.seq, r.transaction_id, r.quantity, r.cost_basis) for r in history] == [
        (1, 1, "S", D(60), D(12000)), (1, 2, "B2", D(110), D(23000))]
    state = [r for r in rows if isinstance(r, PositionStateRow)][-1]
    assert (state.epoch, state.status, state.watermark_date) == (1, "REPROCESSING", day("09-01"))
    assert isinstance(state.quantity, Decimal)


def test_portfolio_arriving_after_the_first_transaction_was_amended_later(handler) -> None:
    """The key waits for its portfolio from its first transaction *as it is now*: an
    amendment that moved the first transaction later must not leave the key waiting from
    the old date once the portfolio arrives."""
    handler.on_transaction(event_of(txn(BUY, 1, 10, "2024-12-28", id="T")), 0)
    handler.on_transaction(event_of(txn(BUY, 1, 10, "2025-01-25", id="T")), 0)
    state = handler.states.get("P1|S1")
    assert state.waiting_for == "portfolio P1" and state.fx_missing_from == day("01-25")
    handler.on_reference(portfolio_event(), 0)
    state = handler.states.get("P1|S1")
    assert (state.waiting_for, state.fx_missing_from) == ("", None)
    assert (state.holding.cost_local, state.holding.cost_base) == (D(10), D(10))


RECOST_FROM = {
    # name: (change date or None (a portfolio), first open date, FX missing from, start)
    "fx-rate-from-its-date": ("08-10", "08-01", None, "08-10"),
    "portfolio-from-the-first-transaction": (None, "08-01", None, "08-01"),
    "earlier-where-figures-wait-for-a-rate": ("08-10", "08-01", "08-05", "08-05"),
    "a-later-wait-does-not-move-it": ("08-10", "08-01", "08-12", "08-10"),
    "no-history-yet": (None, None, None, None),
}


@pytest.mark.parametrize("since,first_open,missing_from,start", [pytest.param(*c, id=n) for n, c in RECOST_FROM.items()])
def test_recost_from(since, first_open, missing_from, start) -> None:
    def opt(text: str | None) -> date | None:
        return None if text is None else day(text)

    state = PositionState("P1", "S1", first_open_date=opt(first_open), fx_missing_from=opt(missing_from))
    assert recost_from(state, opt(since)) == opt(start)
