"""Position and portfolio time series kept as deltas (TIMESERIES.md): the worked example,
then one rule per case."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from series_factories import book, flow, usd, value

from epochflow.domain.timeseries import SeriesBook

D = Decimal
D2, D3, D4 = date(2025, 6, 2), date(2025, 6, 3), date(2025, 6, 4)


def rows(b: SeriesBook):
    positions, portfolios = b.points(lambda p: usd)
    return ({(p.security_id, p.day): p for p in positions}, {p.day: p for p in portfolios})


def worked_example_before(b: SeriesBook) -> None:
    b.on_cashflow(flow("TS_DEPOSIT", "CASH_USD", "DEPOSIT", D2, "10000", version=1))
    b.on_cashflow(flow("TS_BUY_STK", "STK", "BUY", D2, "5000", "10", version=1))
    b.on_cashflow(flow("TS_CASH_SETTLE", "CASH_USD", "SELL", D2, "5010", version=2))
    b.on_snapshot("P", "CASH_USD", D2, 0, 10, value("4990", "4990", "4990"))
    b.on_snapshot("P", "STK", D2, 0, 10, value("100", "5010", "5100"))
    b.on_cashflow(flow("TS_FEE", "CASH_USD", "FEE", D3, "15", version=3))
    b.on_snapshot("P", "CASH_USD", D3, 0, 11, value("4975", "4975", "4975"))
    b.on_snapshot("P", "STK", D3, 0, 11, value("100", "5010", "5200"))


def test_worked_example() -> None:
    b = book()
    worked_example_before(b)
    positions, portfolios = rows(b)
    stk = positions[("STK", D3)]
    assert (stk.bod_market_value, stk.eod_market_value, stk.quantity, stk.cost) == (D(5100), D(5200), D(100), D("50.1"))
    assert (stk.bod_cashflow_position, stk.eod_cashflow_position, stk.bod_cashflow_portfolio,
            stk.eod_cashflow_portfolio) == (0, 0, 0, 0)
    assert positions[("STK", D2)].bod_cashflow_position == D(-5010)
    cash = positions[("CASH_USD", D2)]
    assert (cash.bod_cashflow_position, cash.eod_cashflow_position, cash.bod_cashflow_portfolio) == (10000, 5010, 10000)
    p2, p3 = portfolios[D2], portfolios[D3]
    assert (p2.bod_market_value, p2.bod_cashflow, p2.eod_cashflow, p2.eod_market_value, p2.fees, p2.daily_return) == \
        (0, 10000, 0, 10090, 0, D("0.009"))
    assert (p3.bod_market_value, p3.bod_cashflow, p3.eod_cashflow, p3.eod_market_value, p3.fees, p3.daily_return) == \
        (10090, 0, -15, 10175, 15, D("0.0099108028"))
    assert (p3.valuation_status, p3.keys_unvalued) == ("COMPLETE", 0)

    # the back-dated BUY: STK opens epoch 1 from 06-02, nothing carried; CASH_USD untouched
    b.on_carry("P", "STK", 0, 1, D2)
    b.on_cashflow(flow("TS_BUY_STK_LATE", "STK", "BUY", D2, "490", epoch=1, version=20))
    b.on_snapshot("P", "STK", D2, 1, 21, value("110", "5500", "5610"))
    b.on_snapshot("P", "STK", D3, 1, 22, value("110", "5500", "5720"))
    positions, portfolios = rows(b)
    assert {s for s, _ in positions} == {"STK"}  # nothing else is recomputed
    s2, s3 = positions[("STK", D2)], positions[("STK", D3)]
    assert (s2.epoch, s2.quantity, s2.cost, s2.bod_cashflow_position, s2.bod_market_value, s2.eod_market_value) == \
        (1, 110, 50, -5500, 0, 5610)
    assert (s3.bod_market_value, s3.eod_market_value, s3.cost) == (5610, 5720, 50)
    p2, p3 = portfolios[D2], portfolios[D3]
    assert (p2.eod_market_value, p2.bod_cashflow, p2.daily_return) == (10600, 10000, D("0.06"))
    assert (p3.bod_market_value, p3.eod_market_value, p3.daily_return) == (10600, 10695, D("0.0103773585"))


def test_an_epoch_bump_keeps_the_days_before_it_and_retracts_the_rest() -> None:
    b = book()
    for day, mv in ((D2, "100"), (D3, "110"), (D4, "120")):
        b.on_snapshot("P", "S", day, 0, 1, value("1", "90", mv))
    b.points(lambda p: usd)
    b.on_carry("P", "S", 0, 1, D3)
    positions, portfolios = rows(b)
    assert positions[("S", D2)].epoch == 1 and positions[("S", D2)].present  # relabelled, same figures
    assert not positions[("S", D3)].present and not positions[("S", D4)].present
    assert D2 not in portfolios and b.day("P", D2).market_value == 100  # the kept day's sum did not move
    assert not portfolios[D3].present and not portfolios[D4].present
    # the old epoch's snapshots arriving late are stale
    assert not b.on_snapshot("P", "S", D4, 0, 9, value("1", "90", "999"))
    b.on_snapshot("P", "S", D3, 1, 5, value("2", "180", "230"))
    positions, portfolios = rows(b)
    assert positions[("S", D3)].bod_market_value == 100 and portfolios[D3].eod_market_value == 230


def test_a_price_correction_revalues_in_the_same_epoch_and_a_duplicate_changes_nothing() -> None:
    b = book()
    b.on_snapshot("P", "S", D2, 0, 1, value("10", "90", "100"))
    b.on_snapshot("P", "S", D3, 0, 2, value("10", "90", "110"))
    rows(b)
    assert b.on_snapshot("P", "S", D2, 0, 7, value("10", "90", "105"))
    assert not b.on_snapshot("P", "S", D2, 0, 7, value("10", "90", "105"))  # duplicate
    assert not b.on_snapshot("P", "S", D2, 0, 1, value("10", "90", "100"))  # older version
    positions, portfolios = rows(b)
    assert portfolios[D2].eod_market_value == 105 and portfolios[D3].bod_market_value == 105
    assert positions[("S", D3)].bod_market_value == 105


def test_an_amendment_moves_the_cash_flow() -> None:
    b = book()
    b.on_cashflow(flow("T1", "C", "DEPOSIT", D2, "100", version=1))
    b.on_cashflow(flow("T1", "C", "DEPOSIT", D3, "150", version=2))
    assert not b.on_cashflow(flow("T1", "C", "DEPOSIT", D2, "100", version=1))  # the old one again
    positions, portfolios = rows(b)
    assert not portfolios[D2].present
    assert portfolios[D3].bod_cashflow == 150
    assert b.day("P", D2) is None and b.key_day("P", "C", D2) is None  # nothing left behind


def test_unvalued_keys_make_the_day_incomplete() -> None:
    b = book()
    b.on_snapshot("P", "A", D2, 0, 1, value("1", "10", "12"))
    b.on_snapshot("P", "B", D2, 0, 1, value("1", "10", "0", status="UNVALUED"))
    _, portfolios = rows(b)
    assert (portfolios[D2].valuation_status, portfolios[D2].keys_unvalued, portfolios[D2].eod_market_value) == \
        ("INCOMPLETE", 1, 12)
    b.on_snapshot("P", "B", D2, 0, 2, value("1", "10", "11", status="VALUED_STALE"))
    _, portfolios = rows(b)
    assert (portfolios[D2].valuation_status, portfolios[D2].keys_unvalued, portfolios[D2].eod_market_value) == \
        ("COMPLETE", 0, 23)


def test_flows_are_converted_to_the_base_currency_and_fees_are_absolute() -> None:
    b = book()
    b.on_snapshot("P", "A", D2, 0, 1, value("1", "10", "100", mv="110"))
    b.on_cashflow(flow("F1", "A", "FEE", D2, "10", currency="EUR"))
    b.on_cashflow(flow("W1", "A", "WITHDRAWAL", D2, "20", currency="USD"))
    _, portfolios = rows(b)
    assert (portfolios[D2].eod_cashflow, portfolios[D2].fees) == (D("-31.0"), D("11.0"))


def test_a_missing_rate_makes_the_day_incomplete() -> None:
    b = book()
    b.on_snapshot("P", "A", D2, 0, 1, value("1", "10", "100"))
    b.on_cashflow(flow("F1", "A", "DEPOSIT", D2, "10", currency="JPY"))
    _, portfolios = rows(b)
    assert portfolios[D2].valuation_status == "INCOMPLETE" and portfolios[D2].daily_return is None


def test_no_position_retracts_the_day() -> None:
    b = book()
    b.on_snapshot("P", "A", D2, 0, 1, value("1", "10", "100"))
    rows(b)
    b.on_snapshot("P", "A", D2, 0, 2, None)
    positions, portfolios = rows(b)
    assert not positions[("A", D2)].present and not portfolios[D2].present
