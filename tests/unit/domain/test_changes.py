"""Why a day's figures changed (`domain.changes`): the versions a read of the day showed,
each with its cause, from the versions of the key's state, snapshots and transactions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from epochflow.domain.changes import Version, day_changes

DAY = date(2025, 1, 6)
T0 = datetime(2025, 1, 6, 18, tzinfo=UTC)
D = Decimal


def at(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def versions(*rows: tuple[int, dict[str, Any]]) -> list[Version]:
    """Versions of one row, each current until the next one's time."""
    out = []
    for i, (start, row) in enumerate(rows):
        until = at(rows[i + 1][0]) if i + 1 < len(rows) else None
        out.append(Version(at(start), until, row))
    return out


def state(epoch: int, trigger: str | None = None, rebuilt: date | None = None) -> dict[str, Any]:
    return {"epoch": epoch, "epoch_trigger": trigger, "epoch_rebuilt_from": rebuilt}


def snap(epoch: int = 0, quantity: str = "100", price: str | None = "10", fx: str | None = "1",
         status: str = "VALUED_CURRENT") -> dict[str, Any]:
    q, p = D(quantity), None if price is None else D(price)
    return {"epoch": epoch, "quantity": q, "cost_basis": q * 9, "cost_basis_local": q * 9, "market_price": p,
            "market_value": None if p is None else q * p, "market_value_local": None if p is None else q * p,
            "unrealized_gain_loss": None, "unrealized_gain_loss_local": None,
            "fx_rate": None if fx is None else D(fx), "valuation_status": status, "price_date": DAY}


def txn(tid: str, epoch: int, day: date = DAY, quantity: str = "100") -> dict[str, Any]:
    return {"transaction_id": tid, "epoch": epoch, "transaction_type": "BUY", "quantity": D(quantity),
            "price": D("9"), "trade_fee": D("0"), "trade_currency": "USD",
            "transaction_date": datetime(day.year, day.month, day.day, 10, tzinfo=UTC)}


def kinds(changes) -> list[tuple[str, int, bool]]:
    return [(c.cause.kind, c.epoch, c.figures is not None) for c in changes]


def test_a_back_dated_trade_opens_an_epoch_and_the_day_is_valued_again() -> None:
    states = versions((0, state(0)), (5, state(1, "T9", date(2025, 1, 3))))
    snaps = [*versions((1, snap(0))), *versions((8, snap(1, quantity="125")))]
    txns = [*versions((0, txn("T1", 0))), *versions((5, txn("T9", 1, date(2025, 1, 3), "25")))]
    changes = day_changes(DAY, states, snaps, txns)
    assert kinds(changes) == [("first_valuation", 0, True), ("backdated_transaction", 1, False),
                              ("backdated_transaction", 1, True)]
    assert changes[1].cause.transaction_id == "T9"
    assert "BUY T9 of 25 on 2025-01-03" in changes[1].cause.description
    assert changes[2].differences["quantity"] == (D("100"), D("125"))
    assert changes[1].system_time == at(5) and changes[2].system_time == at(8)


def test_an_amendment_that_opens_an_epoch_is_named_an_amendment() -> None:
    states = versions((0, state(0)), (5, state(1, "T1", date(2025, 1, 2))))
    snaps = [*versions((1, snap(0))), *versions((6, snap(1, quantity="90")))]
    txns = versions((0, txn("T1", 0, date(2025, 1, 2))), (5, txn("T1", 1, date(2025, 1, 2), "90")))
    changes = day_changes(DAY, states, snaps, txns)
    assert [c.cause.kind for c in changes] == ["first_valuation", "amendment", "amendment"]
    assert changes[-1].cause.description.startswith("amendment of BUY T1 of 90")


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (snap(price="10"), snap(price="11"), "price_correction"),
        (snap(price=None, status="UNPRICED"), snap(price="11"), "missing_data_arrived"),
        (snap(fx="1.1"), snap(fx="1.2"), "fx_correction"),
        (snap(fx=None), snap(fx="1.2"), "missing_data_arrived"),
        (snap(status="VALUED_STALE"), snap(status="VALUED_CURRENT"), "revaluation"),
    ],
)
def test_a_revaluation_in_the_same_epoch_is_named_by_what_moved(before, after, kind) -> None:
    changes = day_changes(DAY, versions((0, state(0))), versions((1, before), (4, after)), versions((0, txn("T1", 0))))
    assert [c.cause.kind for c in changes] == ["first_valuation", kind]
    assert changes[1].differences and all(b != a for b, a in changes[1].differences.values())


def test_a_same_day_trade_without_a_new_epoch_names_the_trade() -> None:
    snaps = versions((1, snap(quantity="100")), (4, snap(quantity="150")))
    txns = [*versions((0, txn("T1", 0))), *versions((3, txn("T2", 0, quantity="50")))]
    changes = day_changes(DAY, versions((0, state(0))), snaps, txns)
    assert [(c.cause.kind, c.cause.transaction_id) for c in changes] == [("first_valuation", None), ("transaction", "T2")]


def test_rewrites_that_change_nothing_shown_are_not_versions() -> None:
    # the state moves on (a watermark advance) without the day's figures changing
    states = versions((0, state(0)), (2, state(0)), (3, state(0)))
    changes = day_changes(DAY, states, versions((1, snap())), versions((0, txn("T1", 0))))
    assert kinds(changes) == [("first_valuation", 0, True)]


def test_a_day_never_valued_has_no_versions() -> None:
    assert day_changes(DAY, versions((0, state(0))), [], versions((0, txn("T1", 0)))) == []


def test_a_day_carried_into_a_new_epoch_unchanged_is_not_a_change() -> None:
    states = versions((0, state(0)), (5, state(1, "T9", date(2025, 1, 8))))  # rebuilt after the day
    snaps = [*versions((1, snap(0))), *versions((5, snap(1)))]  # the carry-over copy, same figures
    txns = [*versions((0, txn("T1", 0))), *versions((5, txn("T9", 1, date(2025, 1, 8))))]
    assert kinds(day_changes(DAY, states, snaps, txns)) == [("first_valuation", 0, True)]


def test_a_base_cost_that_moves_alone_is_an_fx_cause_not_a_trade() -> None:
    before, after = snap(), {**snap(), "cost_basis": D("950")}
    changes = day_changes(DAY, versions((0, state(0))), versions((1, before), (4, after)), versions((0, txn("T1", 0))))
    assert [c.cause.kind for c in changes] == ["first_valuation", "fx_correction"]


def test_the_trade_named_is_the_one_booked_since_the_previous_change_on_its_own_day() -> None:
    # a trade booked at 23:30 at -05:00 counts on its own day, though stored in UTC (the next day)
    late = {**txn("T3", 0, quantity="50"), "transaction_date": datetime(2025, 1, 7, 4, 30, tzinfo=UTC)}
    txns = [*versions((0, txn("T1", 0))),
            *versions((2, txn("T2", 0, date(2025, 1, 2)))),  # booked before the first valuation
            *versions((3, late)),
            *versions((3, txn("T1", 0)))]  # re-sent unchanged by the same step: not a new booking
    snaps = versions((1, snap(quantity="100")), (4, snap(quantity="150")))
    changes = day_changes(DAY, versions((0, state(0))), snaps, txns, position_dates={"T3": DAY})
    assert (changes[1].cause.kind, changes[1].cause.transaction_id) == ("transaction", "T3")
    assert "BUY T3 of 50 on 2025-01-06" in changes[1].cause.description
