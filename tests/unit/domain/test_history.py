"""A key's history buckets: their size follows their own entries, not the key's open lots,
and a recomputation from any week puts every lot back."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from factories import D, ctx, fold, fx_table, harness, in_order, txn

from epochflow.domain import history as history_module
from epochflow.domain.model import Bucket, CostMethod, Lot
from epochflow.tables.codec import encode

START = date(2025, 1, 6)


def _day(n: int) -> date:
    return START + timedelta(days=n)


def _buys_and_sells(days: int) -> list:
    """Four BUYs of 5 and a SELL of 3 in every five days: open lots pile up, and a sale
    leaves a partly sold lot at the front."""
    return [txn("SELL" if n % 5 == 4 else "BUY", 3 if n % 5 == 4 else 5, 100, _day(n), id=f"T{n}") for n in range(days)]


def _assert_matches_the_oracle(h, txns, method=CostMethod.FIFO) -> None:
    holding, expected = fold(in_order(txns), ctx(method), fx_table())
    assert h.entries() == expected
    assert h.state.holding == holding


@pytest.mark.parametrize("method", [CostMethod.FIFO, CostMethod.AVCO])
def test_a_bucket_keeps_only_the_lots_no_entry_names(method) -> None:
    txns = _buys_and_sells(400)
    h = harness(method)
    h.send(*txns)
    _assert_matches_the_oracle(h, txns, method)
    # FIFO keeps every unsold lot; AVCO pools what it holds into one lot at each sale,
    # and the last trade here is a sale
    assert txns[-1].transaction_type == "SELL"
    assert len(h.state.holding.lots) > 100 if method is CostMethod.FIFO else len(h.state.holding.lots) == 1
    sizes = [len(encode(b, Bucket)) for b in h.buckets.values()]
    # a week of seven entries, whatever the key holds: the first week's size, give or take
    assert max(sizes) < 2 * sizes[1]
    assert all(len(b.opening.lots) <= 1 for b in h.buckets.values())


@pytest.mark.parametrize("at", [0, 3, 150, 397])
@pytest.mark.parametrize("method", [CostMethod.FIFO, CostMethod.AVCO])
def test_a_back_dated_trade_recomputes_with_every_lot_back(at, method) -> None:
    """The new trade's week starts from its bucket's opening with the named lots put back;
    a SELL big enough to reach into them shows any that were lost."""
    txns = _buys_and_sells(400)
    h = harness(method)
    h.send(*txns)
    late = [txn("BUY", 7, 90, _day(at), id="LATE", hour=12), txn("SELL", 900, 110, _day(at + 2), id="BIG", hour=13)]
    h.send(*late)
    _assert_matches_the_oracle(h, txns + late, method)
    amended = replace(late[0], quantity=D("11"), gross_amount=D("990"))
    h.send(amended)
    _assert_matches_the_oracle(h, txns + [amended, late[1]], method)


def test_buckets_written_before_lots_had_origins_still_recompute() -> None:
    """Buckets kept every lot in their opening, and lots had no origin: such a history,
    recomputed from the middle, puts back the same lots as a new one."""
    txns = _buys_and_sells(120)
    h = harness()
    h.send(*txns)
    openings = {week: history_module._whole_opening(bucket, sum(c for m, c in h.state.weeks if m < week), h.state.weeks, h.load)
                for week, bucket in h.buckets.items()}
    assert any(b.lots_from is not None for b in h.buckets.values())
    for week, bucket in list(h.buckets.items()):
        whole = tuple(Lot(x.quantity, x.cost_local, x.cost_base) for x in openings[week].lots)
        h.buckets[week] = Bucket(week, replace(openings[week], lots=whole), tuple(replace(e, lot=None) for e in bucket.entries))
    h.state = replace(h.state, holding=replace(h.state.holding, lots=tuple(
        Lot(x.quantity, x.cost_local, x.cost_base) for x in h.state.holding.lots)))
    late = [txn("BUY", 7, 90, _day(60), id="LATE", hour=12), txn("SELL", 200, 110, _day(62), id="BIG", hour=13)]
    h.send(*late)
    holding, expected = fold(in_order(txns + late), ctx(), fx_table())
    strip = lambda e: replace(e, lot=None)  # noqa: E731
    assert [strip(e) for e in h.entries()] == [strip(e) for e in expected]
    assert (h.state.holding.quantity, h.state.holding.cost_local) == (holding.quantity, holding.cost_local)
