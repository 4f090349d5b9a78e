"""The cost engine against DESIGN.md "Domain rules": every transaction type, FIFO and AVCO,
fees, base currency at the trade-date FX rate, close and reopen, ordering within a key,
oversold SELLs and missing FX. Decimals are compared exactly (numeric equality)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from factories import DUAL_RATES, D, day, eur_usd, fold, fx_table, harness, in_order, txn

from epochflow.domain.cost import FxLookup
from epochflow.domain.model import ZERO, CostMethod, Flag, HistoryEntry, TxnType

FIFO, AVCO = CostMethod.FIFO, CostMethod.AVCO
BUY, SELL = TxnType.BUY, TxnType.SELL
NO_FX = fx_table()
DUAL = eur_usd(DUAL_RATES)

_UNCHECKED = object()
_FIELDS = ("quantity", "cost_local", "cost_base", "net_cost_local", "net_cost", "realized_local",
           "realized_base", "fx_rate", "held_since", "flags")


def after(**fields) -> dict:
    """What the history entry of one transaction must say; fields not named are not checked.
    Numbers are given as strings (or Decimals), dates as 'MM-DD', absent values as None."""
    unknown = set(fields) - set(_FIELDS)
    assert not unknown, unknown
    out = {}
    for name, value in fields.items():
        if value is None or name == "flags":
            out[name] = value
        elif name == "held_since":
            out[name] = day(value)
        else:
            out[name] = D(value) if isinstance(value, str) else value
    return out


def assert_entry(entry: HistoryEntry, expected: dict, where: str) -> None:
    for name, want in expected.items():
        got = getattr(entry, name)
        if want is None:
            assert got is None, f"{where}: {name} = {got!r}, expected None"
        elif name == "flags":
            assert got == tuple(want), f"{where}: flags {got!r}, expected {want!r}"
        elif isinstance(want, Decimal):
            assert isinstance(got, Decimal), f"{where}: {name} = {got!r} is not a Decimal"
            assert got == want, f"{where}: {name} = {got}, expected {want}"
        else:
            assert got == want, f"{where}: {name} = {got!r}, expected {want!r}"


@dataclass(frozen=True)
class Case:
    txns: tuple
    expect: tuple  # one `after(...)` (or None: not checked) per transaction
    method: CostMethod = FIFO
    fx: FxLookup = NO_FX


def _exact_date_fx(points: dict[str, str]) -> FxLookup:
    """A lookup that knows rates for exactly these days: lets a test miss only the SELL's
    rate while the lots' rates are known."""
    table = {day(d): D(v) for d, v in points.items()}
    return lambda f, t, on: D(1) if f == t else table.get(on)


CASES = {
    # ---- BUY --------------------------------------------------------------------------
    "buy-adds-quantity-and-gross-plus-fee": Case(
        (txn(BUY, 10, 100, "08-01", fee=5),),
        (after(quantity="10", cost_local="1005", cost_base="1005", net_cost_local="1005", net_cost="1005",
               realized_local="0", realized_base="0", fx_rate="1", held_since="08-01", flags=()),),
    ),
    "buy-twice-adds-lots-held-since-first": Case(
        (txn(BUY, 10, 100, "08-01"), txn(BUY, 5, 110, "08-03")),
        (None, after(quantity="15", cost_local="1550", cost_base="1550", net_cost_local="550", held_since="08-01")),
    ),
    # ---- SELL -------------------------------------------------------------------------
    "sell-fifo-oldest-lots-fee-reduces-proceeds": Case(
        (txn(BUY, 10, 100, "08-01"), txn(BUY, 10, 120, "08-02"), txn(SELL, 15, 130, "08-03", fee=10)),
        (None, None, after(quantity="5", cost_local="600", cost_base="600", net_cost_local="-1600", net_cost="-1600",
                           realized_local="340", realized_base="340", held_since="08-01", flags=())),
    ),
    "sell-avco-average-cost-fee-reduces-proceeds": Case(
        (txn(BUY, 10, 100, "08-01"), txn(BUY, 10, 120, "08-02"), txn(SELL, 15, 130, "08-03", fee=10)),
        (None, None, after(quantity="5", cost_local="550", cost_base="550", net_cost_local="-1650", net_cost="-1650",
                           realized_local="290", realized_base="290", held_since="08-01", flags=())),
        method=AVCO,
    ),
    "sell-fifo-buy-fee-is-in-lot-cost": Case(
        (txn(BUY, 10, 100, "08-01", fee=10), txn(SELL, 5, 120, "08-02")),
        (None, after(quantity="5", cost_local="505", net_cost_local="-505", realized_local="95")),
    ),
    "sell-fifo-partial-lot-then-new-lot": Case(
        (txn(BUY, 10, 100, "08-01"), txn(SELL, 5, 150, "08-02"), txn(BUY, 5, 130, "08-03"), txn(SELL, 4, 140, "08-04")),
        (None,
         after(quantity="5", cost_local="500", realized_local="250"),
         after(quantity="10", cost_local="1150"),
         after(quantity="6", cost_local="750", net_cost_local="-400", realized_local="160")),
    ),
    "sell-avco-average-moves-with-each-buy": Case(
        (txn(BUY, 10, 100, "08-01"), txn(SELL, 5, 150, "08-02"), txn(BUY, 5, 130, "08-03"), txn(SELL, 4, 140, "08-04")),
        (None,
         after(quantity="5", cost_local="500", realized_local="250"),
         after(quantity="10", cost_local="1150"),
         after(quantity="6", cost_local="690", net_cost_local="-460", realized_local="100")),
        method=AVCO,
    ),
    "sell-avco-repeating-average-sells-out-exactly": Case(
        (txn(BUY, 3, 0, "08-01", gross=100), txn(SELL, 1, 40, "08-02"), txn(SELL, 2, 40, "08-03")),
        (None,
         after(quantity="2", cost_local=D(100) - D(100) / 3, net_cost_local=-(D(100) / 3), realized_local=40 - D(100) / 3),
         after(quantity="0", cost_local="0", cost_base="0", net_cost_local=-(D(100) - D(100) / 3),
               realized_local=80 - (D(100) - D(100) / 3), held_since=None)),
        method=AVCO,
    ),
    # ---- TRANSFER_IN / TRANSFER_OUT --------------------------------------------------------
    "transfer-in-adds-lot-at-gross-no-realized": Case(
        (txn(TxnType.TRANSFER_IN, 10, 100, "08-01", fee=7),),
        (after(quantity="10", cost_local="1000", cost_base="1000", net_cost_local="1000", net_cost="1000",
               realized_local=None, realized_base=None, held_since="08-01", flags=()),),
    ),
    "transfer-in-lot-is-sold-at-its-cost": Case(
        (txn(TxnType.TRANSFER_IN, 10, 100, "08-01"), txn(SELL, 10, 110, "08-02")),
        (None, after(quantity="0", cost_local="0", net_cost_local="-1000", realized_local="100", held_since=None)),
    ),
    "transfer-out-fifo-removes-oldest-lot-cost": Case(
        (txn(BUY, 10, 100, "08-01"), txn(BUY, 10, 120, "08-02"), txn(TxnType.TRANSFER_OUT, 5, 150, "08-03")),
        (None, None, after(quantity="15", cost_local="1700", cost_base="1700", net_cost_local="-500", net_cost="-500",
                           realized_local=None, realized_base=None, held_since="08-01")),
    ),
    "transfer-out-avco-removes-average-cost": Case(
        (txn(BUY, 10, 100, "08-01"), txn(BUY, 10, 120, "08-02"), txn(TxnType.TRANSFER_OUT, 5, 150, "08-03")),
        (None, None, after(quantity="15", cost_local="1650", net_cost_local="-550", realized_local=None)),
        method=AVCO,
    ),
    "transfer-out-to-zero-resets-cost": Case(
        (txn(BUY, 10, 100, "08-01"), txn(TxnType.TRANSFER_OUT, 10, 100, "08-02")),
        (None, after(quantity="0", cost_local="0", cost_base="0", net_cost_local="-1000", held_since=None)),
    ),
    # ---- cash: DEPOSIT / WITHDRAWAL / FEE / INTEREST -------------------------------------
    "deposit-adds-gross-as-quantity-and-cost": Case(
        (txn(TxnType.DEPOSIT, gross=500, on="08-01", security="CASH_USD"),),
        (after(quantity="500", cost_local="500", cost_base="500", net_cost_local="500", net_cost="500",
               realized_local=None, realized_base=None, held_since="08-01"),),
    ),
    "withdrawal-removes-gross": Case(
        (txn(TxnType.DEPOSIT, gross=500, on="08-01", security="CASH_USD"),
         txn(TxnType.WITHDRAWAL, gross=200, on="08-02", security="CASH_USD")),
        (None, after(quantity="300", cost_local="300", cost_base="300", net_cost_local="-200", net_cost="-200",
                     realized_local=None, realized_base=None, held_since="08-01")),
    ),
    "fee-removes-gross": Case(
        (txn(TxnType.DEPOSIT, gross=500, on="08-01", security="CASH_USD"),
         txn(TxnType.FEE, gross=25, on="08-02", security="CASH_USD")),
        (None, after(quantity="475", cost_local="475", net_cost_local="-25", net_cost="-25", realized_local=None)),
    ),
    "withdrawal-all-closes-cash": Case(
        (txn(TxnType.DEPOSIT, gross=500, on="08-01", security="CASH_USD"),
         txn(TxnType.WITHDRAWAL, gross=500, on="08-02", security="CASH_USD")),
        (None, after(quantity="0", cost_local="0", cost_base="0", held_since=None)),
    ),
    "interest-leaves-position-unchanged": Case(
        (txn(TxnType.DEPOSIT, gross=1000, on="08-01", security="CASH_USD"),
         txn(TxnType.INTEREST, gross=3, on="08-02", security="CASH_USD")),
        (None, after(quantity="1000", cost_local="1000", cost_base="1000", net_cost_local="0", net_cost="0",
                     realized_local=None, realized_base=None, held_since="08-01")),
    ),
    "dividend-leaves-position-unchanged": Case(
        (txn(BUY, 10, 100, "08-01"), txn(TxnType.DIVIDEND, gross=50, on="08-02")),
        (None, after(quantity="10", cost_local="1000", cost_base="1000", net_cost_local="0", net_cost="0",
                     realized_local=None, realized_base=None, held_since="08-01", flags=())),
    ),
    # ---- multi-currency: base at the trade date's rate, lots keep their own rate ----------------
    "dual-currency-buy-sell-public-case": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(SELL, 40, 170, "08-15", currency="EUR")),
        (after(quantity="100", cost_local="15000", cost_base="16500", net_cost_local="15000", net_cost="16500",
               realized_local="0", realized_base="0", fx_rate="1.10", flags=()),
         after(quantity="60", cost_local="9000", cost_base="9900", net_cost_local="-6000", net_cost="-6600",
               realized_local="800", realized_base="1560", fx_rate="1.20", held_since="08-10", flags=())),
        fx=DUAL,
    ),
    "buy-between-rate-dates-uses-latest-earlier-rate": Case(
        (txn(BUY, 10, 150, "08-12", currency="EUR"),),
        (after(cost_local="1500", cost_base="1650", fx_rate="1.10"),),
        fx=DUAL,
    ),
    "dual-currency-fees-fifo": Case(
        (txn(BUY, 100, 150, "08-10", fee=10, currency="EUR"), txn(SELL, 40, 170, "08-15", fee=20, currency="EUR")),
        (after(cost_local="15010", cost_base="16511"),
         after(quantity="60", cost_local="9006", cost_base="9906.6", net_cost_local="-6004", net_cost="-6604.4",
               realized_local="776", realized_base="1531.6")),
        fx=DUAL,
    ),
    "dual-currency-avco-average-base-cost": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(BUY, 100, 160, "08-15", currency="EUR"),
         txn(SELL, 50, 170, "08-20", currency="EUR")),
        (None, after(cost_local="31000", cost_base="35700"),
         after(quantity="150", cost_local="23250", cost_base="26775", net_cost_local="-7750", net_cost="-8925",
               realized_local="750", realized_base="1700", fx_rate="1.25")),
        method=AVCO, fx=DUAL,
    ),
    "dual-currency-fifo-lots-own-rates": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(BUY, 100, 160, "08-15", currency="EUR"),
         txn(SELL, 50, 170, "08-20", currency="EUR")),
        (None, None,
         after(quantity="150", cost_local="23500", cost_base="27450", net_cost_local="-7500", net_cost="-8250",
               realized_local="1000", realized_base="2375")),
        fx=DUAL,
    ),
    "transfer-in-foreign-at-trade-date-rate": Case(
        (txn(TxnType.TRANSFER_IN, 10, 100, "08-15", currency="EUR"),),
        (after(cost_local="1000", cost_base="1200", net_cost="1200", fx_rate="1.20"),),
        fx=DUAL,
    ),
    "withdrawal-foreign-cash-at-its-own-date-rate": Case(
        (txn(TxnType.DEPOSIT, gross=1000, on="08-10", currency="EUR", security="CASH_EUR"),
         txn(TxnType.WITHDRAWAL, gross=400, on="08-15", currency="EUR", security="CASH_EUR")),
        (after(quantity="1000", cost_base="1100"),
         after(quantity="600", cost_local="600", cost_base="620", net_cost_local="-400", net_cost="-480")),
        fx=DUAL,
    ),
    # ---- close to zero, reopen ---------------------------------------------------------------
    "close-then-reopen-fifo-starts-fresh": Case(
        (txn(BUY, 100, 10, "08-01"), txn(SELL, 100, 12, "08-03"), txn(BUY, 50, 11, "08-05")),
        (None,
         after(quantity="0", cost_local="0", cost_base="0", realized_local="200", held_since=None),
         after(quantity="50", cost_local="550", cost_base="550", net_cost_local="550", held_since="08-05")),
    ),
    "close-then-reopen-avco-starts-fresh": Case(
        (txn(BUY, 100, 10, "08-01"), txn(BUY, 100, 20, "08-02"), txn(SELL, 200, 12, "08-03"), txn(BUY, 50, 11, "08-05"),
         txn(SELL, 10, 12, "08-06")),
        (None, None,
         after(quantity="0", cost_local="0", realized_local="-600", held_since=None),
         after(quantity="50", cost_local="550", held_since="08-05"),
         after(quantity="40", cost_local="440", realized_local="10", held_since="08-05")),
        method=AVCO,
    ),
    "close-then-reopen-foreign-base-resets": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(SELL, 100, 170, "08-15", currency="EUR"),
         txn(BUY, 10, 160, "08-20", currency="EUR")),
        (None,
         after(quantity="0", cost_local="0", cost_base="0", realized_local="2000", realized_base="3900", held_since=None),
         after(quantity="10", cost_local="1600", cost_base="2000", held_since="08-20")),
        fx=DUAL,
    ),
    # ---- oversold: kept and flagged, not thrown away ---------------------------------------------
    "sell-with-nothing-held-is-flagged-oversold": Case(
        (txn(SELL, 40, 170, "08-15"),),
        (after(quantity="-40", cost_local="0", net_cost_local="0", realized_local=None, realized_base=None,
               held_since=None, flags=(Flag.OVERSOLD,)),),
    ),
    "sell-larger-than-holding-is-flagged-oversold": Case(
        (txn(BUY, 10, 100, "08-01"), txn(SELL, 15, 120, "08-02")),
        (None, after(quantity="-5", cost_local="0", net_cost_local="-1000", realized_local=None,
                     realized_base=None, flags=(Flag.OVERSOLD,))),
    ),
    "sell-larger-than-holding-avco-is-flagged-oversold": Case(
        (txn(BUY, 10, 100, "08-01"), txn(SELL, 15, 120, "08-02")),
        (None, after(quantity="-5", cost_local="0", net_cost_local="-1000", realized_local=None,
                     flags=(Flag.OVERSOLD,))),
        method=AVCO,
    ),
    # ---- missing FX: only the base figures wait --------------------------------------------------
    "buy-without-rate-base-waits-local-right": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"),),
        (after(quantity="100", cost_local="15000", cost_base=None, net_cost_local="15000", net_cost=None,
               fx_rate=None, realized_local="0", held_since="08-10", flags=(Flag.FX_MISSING,)),),
    ),
    "sell-after-unconverted-buy-realized-local-right": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(SELL, 40, 170, "08-15", currency="EUR")),
        (None,
         after(quantity="60", cost_local="9000", cost_base=None, net_cost_local="-6000", net_cost=None,
               realized_local="800", realized_base=None, fx_rate="1.20", flags=(Flag.FX_MISSING,))),
        fx=eur_usd({"08-15": "1.20"}),
    ),
    "sell-date-rate-missing-lot-rates-known": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(SELL, 40, 170, "08-15", currency="EUR")),
        (after(cost_base="16500", flags=()),
         after(quantity="60", cost_local="9000", cost_base="9900", net_cost_local="-6000", net_cost="-6600",
               realized_local="800", realized_base=None, fx_rate=None, flags=(Flag.FX_MISSING,))),
        fx=_exact_date_fx({"08-10": "1.10"}),
    ),
    "converted-buy-onto-unconverted-holding-cost-base-waits": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(BUY, 10, 160, "08-15", currency="EUR"),
         txn(TxnType.DIVIDEND, gross=30, on="08-16", currency="EUR")),
        (None,
         after(quantity="110", cost_local="16600", cost_base=None, net_cost_local="1600", net_cost="1920",
               fx_rate="1.20", flags=(Flag.FX_MISSING,)),
         after(quantity="110", cost_base=None, net_cost="0", flags=(Flag.FX_MISSING,))),
        fx=eur_usd({"08-15": "1.20"}),
    ),
    "close-without-rate-cost-resets-base-figures-wait": Case(
        (txn(BUY, 100, 150, "08-10", currency="EUR"), txn(SELL, 100, 170, "08-15", currency="EUR")),
        (None,
         after(quantity="0", cost_local="0", cost_base="0", net_cost_local="-15000", net_cost=None,
               realized_local="2000", realized_base=None, flags=(Flag.FX_MISSING,))),
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_cost_table(case: Case, ctx_of) -> None:
    holding, entries = fold(case.txns, ctx_of(case.method), case.fx)
    assert len(case.expect) == len(entries)
    for i, (entry, expected) in enumerate(zip(entries, case.expect)):
        if expected is not None:
            assert_entry(entry, expected, f"{entry.txn.transaction_id} (#{i})")
    last = entries[-1]
    # the holding after the last transaction is what its history entry says
    assert (holding.quantity, holding.cost_local, holding.cost_base, holding.held_since) == (
        last.quantity, last.cost_local, last.cost_base, last.held_since)


def test_every_transaction_type_is_covered() -> None:
    covered = {t.transaction_type for case in CASES.values() for t in case.txns}
    assert covered == set(TxnType)


@pytest.mark.parametrize("method", [FIFO, AVCO])
def test_net_cost_is_the_cost_delta(method: CostMethod, ctx_of) -> None:
    """DESIGN: a transaction's net_cost(_local) is its cost delta, whatever its type."""
    txns = (
        txn(BUY, 10, 150, "08-10", fee=3, currency="EUR"),
        txn(TxnType.TRANSFER_IN, 5, 160, "08-12", currency="EUR"),
        txn(SELL, 7, 170, "08-15", fee=2, currency="EUR"),
        txn(TxnType.DIVIDEND, gross=12, on="08-16", currency="EUR"),
        txn(TxnType.TRANSFER_OUT, 3, 170, "08-20", currency="EUR"),
        txn(SELL, 5, 175, "08-21", currency="EUR"),
    )
    _, entries = fold(txns, ctx_of(method), DUAL)
    cost_local, cost_base = ZERO, ZERO
    for entry in entries:
        assert entry.cost_local - cost_local == entry.net_cost_local, entry.txn.transaction_id
        assert entry.cost_base - cost_base == entry.net_cost, entry.txn.transaction_id
        cost_local, cost_base = entry.cost_local, entry.cost_base
    assert entries[-1].quantity == 0 and entries[-1].cost_local == 0 and entries[-1].cost_base == 0


# ---- order within a key: timestamp, then transaction id ---------------------------------

SAME_DAY = (
    txn(BUY, 10, 100, "08-05", id="Z-early", hour=9),
    txn(SELL, 10, 110, "08-05", id="A-sell", hour=10),
    txn(BUY, 5, 120, "08-05", id="B-buy", hour=10),
)


@pytest.mark.parametrize(
    "arrival", [pytest.param(p, id="-".join(t.transaction_id.split("-")[0] for t in p)) for p in itertools.permutations(SAME_DAY)]
)
def test_same_day_order_is_timestamp_then_id(arrival) -> None:
    key = harness()
    key.send(*arrival)
    entries = key.entries()
    assert [e.txn.transaction_id for e in entries] == ["Z-early", "A-sell", "B-buy"]
    assert [e.quantity for e in entries] == [D(10), D(0), D(5)]
    assert entries[1].realized_local == D(100) and entries[1].flags == ()
    assert entries[2].cost_local == D(600) and entries[2].held_since == date(2025, 8, 5)


def test_sort_key_is_timestamp_then_id() -> None:
    assert in_order(reversed(SAME_DAY)) == list(SAME_DAY)


# ---- oversold SELL resolved when the earlier BUY arrives -------------------------------

@pytest.mark.parametrize("method", [FIFO, AVCO])
def test_oversold_sell_is_resolved_when_the_earlier_buy_arrives(method: CostMethod) -> None:
    key = harness(method)
    key.send(txn(SELL, 40, 170, "08-15", id="S"))
    sell = key.entry("S")
    assert sell.flags == (Flag.OVERSOLD,) and sell.quantity == -40 and sell.realized_local is None

    key.send(txn(BUY, 100, 150, "08-10", id="B"))
    buy, sell = key.entries()
    assert (buy.txn.transaction_id, sell.txn.transaction_id) == ("B", "S")
    assert sell.flags == ()
    assert (sell.quantity, sell.cost_local, sell.net_cost_local) == (D(60), D(9000), D(-6000))
    assert (sell.realized_local, sell.realized_base) == (D(800), D(800))
    assert key.state.holding.quantity == 60 and key.state.holding.cost_local == 9000


def test_oversold_sell_stays_flagged_while_cover_is_later() -> None:
    """A BUY dated after the SELL is not the earlier trade it depends on."""
    key = harness()
    key.send(txn(SELL, 40, 170, "08-15", id="S"), txn(BUY, 100, 150, "08-20", id="B"))
    sell, buy = key.entries()
    assert sell.flags == (Flag.OVERSOLD,)
    assert buy.quantity == 60


@pytest.mark.parametrize("method", [FIFO, AVCO])
def test_late_fx_rate_fills_base_figures_local_unchanged(method: CostMethod) -> None:
    key = harness(method)
    key.send(txn(BUY, 100, 150, "08-10", id="B", currency="EUR"), txn(SELL, 40, 170, "08-15", id="S", currency="EUR"))
    before = key.entries()
    assert [e.flags for e in before] == [(Flag.FX_MISSING,), (Flag.FX_MISSING,)]
    key.reference_changed(day("08-10"), harness(method, DUAL).reference)
    buy, sell = key.entries()
    assert [(e.quantity, e.cost_local, e.net_cost_local, e.realized_local) for e in (buy, sell)] == [
        (e.quantity, e.cost_local, e.net_cost_local, e.realized_local) for e in before]
    assert (buy.cost_base, buy.net_cost, buy.flags) == (D(16500), D(16500), ())
    assert (sell.cost_base, sell.net_cost, sell.realized_base, sell.flags) == (D(9900), D(-6600), D(1560), ())
