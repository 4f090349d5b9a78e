"""Valuing one key on one day, against DESIGN.md's daily-snapshot rules:

market_price = latest price on or before the day; market_value_local = quantity x price;
market_value = market_value_local x fx(instrument currency -> base, latest on or before
the day); unrealized = market value - cost (local and base). VALUED_CURRENT (price dated
that day), VALUED_STALE (an earlier price carried forward), UNVALUED (no price on or
before), FAILED (FX missing, or the price's currency is not the instrument's). No position
on or before the day: no snapshot, the job ends SKIPPED_NO_POSITION.

The pure step (`value_position`, `end_of_day`) is checked table by table; the lookups that
feed it (latest price / FX on or before the day) and the public acceptance cases' numbers
are checked through the positions and valuation handlers over in-memory stores.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from valuation_factories import (
    Pipeline,
    business_date,
    fields,
    fx,
    instrument,
    portfolio,
    price,
    trade,
)

from epochflow.domain.valuation import (
    DailyPosition,
    NoPosition,
    Price,
    ValuationStatus,
    Valued,
    end_of_day,
    value_position,
)

D = Decimal
CURRENT, STALE = ValuationStatus.VALUED_CURRENT, ValuationStatus.VALUED_STALE
UNVALUED, FAILED = ValuationStatus.UNVALUED, ValuationStatus.FAILED
DAY = timedelta(days=1)


def d(text: str) -> date:
    """'08-10' -> 2025-08-10."""
    return date.fromisoformat(f"2025-{text}")


def opt(value: str | None) -> Decimal | None:
    return None if value is None else D(value)


# ---- value_position: one row per rule --------------------------------------------------

# (quantity, cost local, cost base) at the end of 08-10
HELD = ("100", "15000", "16500")
FLAT = ("0", "0", "0")

# id: (eod, price (day, value, currency) or None, instrument ccy, base ccy, fx rate,
#      expected status, market_price, mv_local, mv, ugl_local, ugl, waiting_on)
VALUE_CASES = {
    "current-same-currency": (
        ("10", "1000", "1000"), ("08-10", "110", "USD"), "USD", "USD", "1",
        CURRENT, "110", "1100", "1100", "100", "100", None),
    "stale-price-carried-forward": (
        ("10", "1000", "1000"), ("08-07", "95.5", "USD"), "USD", "USD", "1",
        STALE, "95.5", "955", "955", "-45", "-45", None),
    "current-multi-currency": (
        HELD, ("08-10", "150", "EUR"), "EUR", "USD", "1.10",
        CURRENT, "150", "15000", "16500", "0", "0", None),
    "stale-multi-currency-gain-differs-local-vs-base": (
        HELD, ("08-09", "180", "EUR"), "EUR", "USD", "1.20",
        STALE, "180", "18000", "21600", "3000", "5100", None),
    "loss-in-base-with-gain-in-local": (
        HELD, ("08-10", "151", "EUR"), "EUR", "USD", "1.05",
        CURRENT, "151", "15100", "15855", "100", "-645", None),
    "quantity-zero-current": (
        FLAT, ("08-10", "12", "USD"), "USD", "USD", "1",
        CURRENT, "12", "0", "0", "0", "0", None),
    "quantity-zero-stale-multi-currency": (
        FLAT, ("08-01", "12.5", "EUR"), "EUR", "USD", "1.3",
        STALE, "12.5", "0", "0", "0", "0", None),
    "unvalued-no-price": (
        HELD, None, "EUR", "USD", "1.10",
        UNVALUED, None, None, None, None, None, "price|S1"),
    "unvalued-no-price-and-no-fx": (
        HELD, None, "EUR", "USD", None,
        UNVALUED, None, None, None, None, None, "price|S1"),
    "failed-fx-missing": (
        HELD, ("08-10", "150", "EUR"), "EUR", "USD", None,
        FAILED, "150", "15000", None, "0", None, "fx|EUR|USD"),
    "failed-price-in-another-currency": (
        HELD, ("08-10", "150", "USD"), "EUR", "USD", "1.10",
        FAILED, "150", None, None, None, None, "price|S1"),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in VALUE_CASES.items()])
def test_value_position(case) -> None:
    (q, cost_local, cost_base), px, ccy, base, rate, status, market_price, mv_local, mv, ugl_local, ugl, waiting = case
    day = d("08-10")
    eod = DailyPosition(d("08-05"), D(q), D(cost_local), D(cost_base))
    quote = None if px is None else Price(d(px[0]), D(px[1]), px[2])
    result = value_position(day, "S1", "P1", eod, quote, ccy, base, opt(rate))
    assert isinstance(result, Valued)
    s = result.snapshot
    assert s.status is status
    assert (s.day, s.quantity, s.cost_local, s.cost_base) == (day, D(q), D(cost_local), D(cost_base))
    assert s.market_price == opt(market_price)
    assert s.price_date == (None if quote is None else quote.day)
    assert s.market_value_local == opt(mv_local)
    assert s.market_value == opt(mv)
    assert s.unrealized_local == opt(ugl_local)
    assert s.unrealized == opt(ugl)
    assert result.waiting_on == waiting
    assert result.blocked == (waiting is not None)
    assert (result.reason is None) == (waiting is None)


def test_valued_snapshot_keeps_the_fx_rate_it_used() -> None:
    result = value_position(d("08-10"), "S1", "P1", DailyPosition(d("08-10"), D(1), D(1), D(1)),
                            Price(d("08-10"), D(2), "EUR"), "EUR", "USD", D("1.25"))
    assert result.snapshot.fx_rate == D("1.25") and result.snapshot.market_value == D("2.5")


def test_no_position_on_or_before_the_day_is_no_snapshot() -> None:
    result = value_position(d("08-10"), "S1", "P1", None, Price(d("08-10"), D(1), "USD"), "USD", "USD", D(1))
    assert result == NoPosition()


def test_base_cost_waiting_for_a_trade_date_rate_fails_but_keeps_what_is_known() -> None:
    """Base cost itself needs an FX rate that is missing: the base gain cannot be known."""
    eod = DailyPosition(d("08-05"), D(10), D(100), None)
    result = value_position(d("08-10"), "S1", "P1", eod, Price(d("08-10"), D(12), "EUR"), "EUR", "USD", D("1.5"))
    s = result.snapshot
    assert s.status is FAILED and result.blocked
    assert (s.market_value_local, s.market_value, s.unrealized_local, s.unrealized) == (D(120), D(180), D(20), None)


def test_unknown_portfolio_fails_and_waits_for_it() -> None:
    eod = DailyPosition(d("08-05"), D(10), D(100), D(100))
    result = value_position(d("08-10"), "S1", "P1", eod, Price(d("08-10"), D(12), "USD"), "USD", None, None)
    assert result.snapshot.status is FAILED and result.waiting_on == "portfolio|P1"


@pytest.mark.parametrize("price_day, status", [("08-10", CURRENT), ("08-09", STALE), ("07-01", STALE)])
def test_status_depends_only_on_the_price_date(price_day: str, status) -> None:
    eod = DailyPosition(d("08-01"), D(1), D(1), D(1))
    result = value_position(d("08-10"), "S1", "P1", eod, Price(d(price_day), D(3), "USD"), "USD", "USD", D(1))
    assert result.snapshot.status is status and result.snapshot.price_date == d(price_day)


# ---- end_of_day -------------------------------------------------------------------------

HISTORY = [
    DailyPosition(d("08-01"), D(10), D(100), D(110)),
    DailyPosition(d("08-03"), D(15), D(160), D(176)),
    DailyPosition(d("08-03"), D(5), D(50), D(55)),  # a second transaction that day: the later one counts
    DailyPosition(d("08-06"), D(0), D(0), D(0)),
    DailyPosition(d("08-09"), D(7), D(70), D(77)),
]


@pytest.mark.parametrize("day, index", [
    ("07-31", None),  # before the first transaction: no position
    ("08-01", 0),
    ("08-02", 0),  # carried forward
    ("08-03", 2),  # end of day: after the day's last transaction
    ("08-05", 2),
    ("08-06", 3),  # flat is still a position
    ("08-08", 3),
    ("08-09", 4),
    ("12-31", 4),
])
def test_end_of_day(day: str, index: int | None) -> None:
    assert end_of_day(HISTORY, d(day)) == (None if index is None else HISTORY[index])


def test_end_of_day_of_nothing() -> None:
    assert end_of_day([], d("08-01")) is None


# ---- through the handlers: lookups on or before the day ---------------------------------

KEY = "P1|S1"


def eur_key() -> Pipeline:
    """A USD portfolio holding an EUR instrument: BUY 100 @ 150 EUR on 08-10 (cost 15000
    EUR = 16500 USD at 1.10), SELL 40 @ 170 on 08-15 (60 left: 9000 EUR, 9900 USD)."""
    p = Pipeline()
    p.feed_all([
        portfolio("P1"), instrument("S1", "EUR"),
        fx(d("08-10"), "1.10"), fx(d("08-15"), "1.20"), fx(d("08-18"), "1.25"),
        price("S1", d("08-10"), "150", "EUR"), price("S1", d("08-12"), "160", "EUR"),
        price("S1", d("08-15"), "180", "EUR"),
        trade("B", "P1", "S1", "BUY", d("08-10"), 100, 150, "EUR"),
        trade("S", "P1", "S1", "SELL", d("08-15"), 40, 170, "EUR"),
    ])
    return p


# day: (quantity, cost, cost local, price, mv, mv local, ugl, ugl local, status)
EUR_DAYS = {
    "08-09": None,  # before the first transaction
    "08-10": ("100", "16500", "15000", "150", "16500", "15000", "0", "0", CURRENT),
    "08-11": ("100", "16500", "15000", "150", "16500", "15000", "0", "0", STALE),
    # price 160 of the day, FX 1.10 of 08-10 carried forward
    "08-12": ("100", "16500", "15000", "160", "17600", "16000", "1100", "1000", CURRENT),
    "08-14": ("100", "16500", "15000", "160", "17600", "16000", "1100", "1000", STALE),
    "08-15": ("60", "9900", "9000", "180", "12960", "10800", "3060", "1800", CURRENT),
    # both the price (08-15) and the rate (08-15) carried forward
    "08-17": ("60", "9900", "9000", "180", "12960", "10800", "3060", "1800", STALE),
    # a newer rate, the price still carried forward
    "08-18": ("60", "9900", "9000", "180", "13500", "10800", "3600", "1800", STALE),
    "09-30": ("60", "9900", "9000", "180", "13500", "10800", "3600", "1800", STALE),
}


@pytest.mark.parametrize("day, expected", [pytest.param(d(k), v, id=k) for k, v in EUR_DAYS.items()])
def test_prices_and_rates_carry_forward(day: date, expected) -> None:
    snapshot, outcome = eur_key().value(KEY, day)
    if expected is None:
        assert snapshot is None and outcome.outcome == "SKIPPED_NO_POSITION"
        return
    *numbers, status = expected
    assert outcome.outcome == "COMPLETE"
    assert fields(snapshot) == (*(D(n) for n in numbers), status.value)
    assert snapshot.date == day and snapshot.epoch == 0


# day: rates known -> (status, fx rate used, market value)
FX_CASES = {
    "no-rate-yet": ({}, FAILED, None, None),
    "rate-only-after-the-day": ({"08-13": "1.3"}, FAILED, None, None),
    "rate-of-the-day": ({"08-12": "1.3"}, CURRENT, "1.3", "20800"),
    "earlier-rate-carried-forward": ({"08-01": "1.4", "08-13": "9"}, CURRENT, "1.4", "22400"),
    "latest-of-several-earlier-rates": ({"08-01": "1.4", "08-11": "1.5", "08-12": "1.6"}, CURRENT, "1.6", "25600"),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in FX_CASES.items()])
def test_fx_rate_is_the_latest_on_or_before_the_day(case) -> None:
    """EUR instrument, USD base, BUY 100 @ 150 EUR on 08-12 (base cost at the same rate),
    valued on 08-12 at 160 EUR."""
    rates, status, rate, mv = case
    p = Pipeline()
    p.feed_all([portfolio("P1"), instrument("S1", "EUR"), price("S1", d("08-12"), "160", "EUR")])
    p.feed_all(fx(d(day), r) for day, r in rates.items())
    p.feed(trade("B", "P1", "S1", "BUY", d("08-12"), 100, 150, "EUR"))
    snapshot, outcome = p.value(KEY, d("08-12"))
    assert snapshot.valuation_status == status.value
    assert snapshot.fx_rate == opt(rate) and snapshot.market_value == opt(mv)
    assert snapshot.market_value_local == D(16000)
    if status is FAILED:
        assert (outcome.outcome, outcome.waiting_on) == ("BLOCKED", "fx|EUR|USD")
        assert snapshot.unrealized_gain_loss is None
    else:
        assert outcome.outcome == "COMPLETE"
        assert snapshot.unrealized_gain_loss == D(mv) - D(15000) * D(rate)


def test_price_in_a_currency_other_than_the_instruments_fails() -> None:
    p = Pipeline()
    p.feed_all([portfolio("P1"), instrument("S1", "EUR"), fx(d("08-01"), "1.1"),
                price("S1", d("08-10"), "150", "USD"), trade("B", "P1", "S1", "BUY", d("08-10"), 1, 150, "EUR")])
    snapshot, outcome = p.value(KEY, d("08-10"))
    assert snapshot.valuation_status == "FAILED" and snapshot.market_value is None
    assert (outcome.outcome, outcome.waiting_on) == ("BLOCKED", "price|S1")


def test_no_price_on_or_before_the_day_is_unvalued_and_waits_for_the_price() -> None:
    p = Pipeline()
    p.feed_all([portfolio("P1"), instrument("S1"), price("S1", d("08-11"), "12"),
                trade("B", "P1", "S1", "BUY", d("08-10"), 10, 11)])
    snapshot, outcome = p.value(KEY, d("08-10"))
    assert fields(snapshot) == (D(10), D(110), D(110), None, None, None, None, None, "UNVALUED")
    assert (outcome.outcome, outcome.waiting_on) == ("BLOCKED", "price|S1")
    snapshot, outcome = p.value(KEY, d("08-11"))
    assert snapshot.valuation_status == "VALUED_CURRENT" and outcome.outcome == "COMPLETE"


def test_no_position_job_is_skipped_without_a_snapshot() -> None:
    p = Pipeline()
    p.feed_all([portfolio("P1"), instrument("S1"), price("S1", d("08-01"), "12"),
                trade("B", "P1", "S1", "BUY", d("08-04"), 10, 11)])
    for day in (d("08-01"), d("08-03")):
        snapshot, outcome = p.value(KEY, day)
        assert snapshot is None and outcome.outcome == "SKIPPED_NO_POSITION"
    snapshot, outcome = p.value(KEY, d("08-04"))
    assert snapshot is not None and outcome.outcome == "COMPLETE"


# ---- the public acceptance cases' numbers ---------------------------------------------

def _snap(quantity, cost, cost_local, market_price, mv, mv_local, ugl, ugl_local, status) -> tuple:
    return (*(D(v) for v in (quantity, cost, cost_local, market_price, mv, mv_local, ugl, ugl_local)), status)


PUBLIC_CASES = {
    # public_cases.json: dual_currency_buy_sell_fx (USD portfolio, EUR instrument)
    "dual_currency_buy_sell_fx": (
        "E2E_DUAL_CURRENCY_01|SEC_DAIMLER_DE",
        [
            portfolio("E2E_DUAL_CURRENCY_01"), instrument("SEC_DAIMLER_DE", "EUR"),
            fx(d("08-10"), "1.10"), fx(d("08-15"), "1.20"),
            business_date(d("08-10")), business_date(d("08-15")),
            trade("SEC_DAIMLER_DE_BUY", "E2E_DUAL_CURRENCY_01", "SEC_DAIMLER_DE", "BUY", d("08-10"), "100", "150.0", "EUR"),
            trade("SEC_DAIMLER_DE_SELL", "E2E_DUAL_CURRENCY_01", "SEC_DAIMLER_DE", "SELL", d("08-15"), "40", "170.0", "EUR"),
            price("SEC_DAIMLER_DE", d("08-10"), "150", "EUR"), price("SEC_DAIMLER_DE", d("08-15"), "180", "EUR"),
        ],
        {
            "08-10": _snap("100", "16500", "15000", "150", "16500", "15000", "0", "0", "VALUED_CURRENT"),
            "08-12": _snap("100", "16500", "15000", "150", "16500", "15000", "0", "0", "VALUED_STALE"),
            "08-15": _snap("60", "9900", "9000", "180", "12960", "10800", "3060", "1800", "VALUED_CURRENT"),
        },
    ),
    # public_cases.json: position_closed_to_zero_then_reopened
    "position_closed_to_zero_then_reopened": (
        "P_CR|SEC_CR",
        [
            portfolio("P_CR"), instrument("SEC_CR", "USD"),
            *(price("SEC_CR", d(f"08-0{n}"), v) for n, v in zip(range(1, 7), ["10", "10.5", "12", "12.5", "11", "11.5"])),
            trade("CR_BUY_1", "P_CR", "SEC_CR", "BUY", d("08-01"), "100", "10"),
            trade("CR_SELL_1", "P_CR", "SEC_CR", "SELL", d("08-03"), "100", "12"),
            trade("CR_BUY_2", "P_CR", "SEC_CR", "BUY", d("08-05"), "50", "11"),
            *(business_date(d(f"08-0{n}")) for n in range(1, 7)),
        ],
        {
            "08-02": _snap("100", "1000", "1000", "10.5", "1050", "1050.0", "50", "50.0", "VALUED_CURRENT"),
            "08-03": _snap("0", "0", "0", "12", "0", "0", "0", "0", "VALUED_CURRENT"),
            "08-04": _snap("0", "0", "0", "12.5", "0", "0.0", "0", "0.0", "VALUED_CURRENT"),
            "08-05": _snap("50", "550", "550", "11", "550", "550", "0", "0", "VALUED_CURRENT"),
            "08-06": _snap("50", "550", "550", "11.5", "575", "575.0", "25", "25.0", "VALUED_CURRENT"),
        },
    ),
}


@pytest.mark.parametrize("name", list(PUBLIC_CASES))
def test_public_case_snapshots(name: str) -> None:
    key, events, expected = PUBLIC_CASES[name]
    p = Pipeline()
    p.feed_all(events)
    for day, want in expected.items():
        snapshot, outcome = p.value(key, d(day))
        assert outcome.outcome == "COMPLETE", (day, outcome)
        assert snapshot.epoch == 0 and fields(snapshot) == want, day


def test_public_dual_currency_in_any_arrival_order_values_the_same() -> None:
    """The same case with the transactions first and the reference data last."""
    key, events, expected = PUBLIC_CASES["dual_currency_buy_sell_fx"]
    p = Pipeline()
    p.feed_all([e for e in events if type(e).__name__ in ("PortfolioEvent", "TransactionEvent")])
    p.feed_all([e for e in events if type(e).__name__ not in ("PortfolioEvent", "TransactionEvent")])
    for day, want in expected.items():
        snapshot, _ = p.value(key, d(day))
        assert fields(snapshot) == want, day
