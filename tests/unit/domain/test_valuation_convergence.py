"""Any arrival order of transactions, prices and FX rates values every day the same.

A random history (BUYs and SELLs that never oversell in date order, USD and EUR
instruments in a USD portfolio, FIFO and AVCO), random prices and EUR->USD rates with days
missing (so prices and rates are carried forward, and some days have none yet), is
delivered to the positions handler and the valuation role's copy of the history in a
random order with duplicates and with amended transactions' earlier versions delivered
before their amendment, with the scheduler's watermark advances interleaved (so late
transactions are back-dated: epochs bump and the valuation copy carries history over to
the new epoch). In most examples the copy's chunks are made tiny, so short histories cross
chunk ends. After everything arrived, every day from the first transaction to the
business date is valued as a dispatched job would be.

What must hold, for every key and day: the same snapshot as when everything arrives in
order (every field, exactly), and that snapshot follows DESIGN.md's rules computed
directly from the in-order history (costing the transactions in order), the latest price
and the latest rate on or before the day.
"""

from __future__ import annotations

import random
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from unittest import mock

from factories import ctx, fold, fx_table, in_order
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
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

import epochflow.domain.history_copy as history_copy_module
from epochflow.agents.positions_handler import to_transaction
from epochflow.domain.model import CostMethod
from epochflow.schemas.events import MarketPriceEvent, TransactionEvent
from epochflow.schemas.results import SnapshotRow

START = date(2025, 3, 27)  # spans a month end: series buckets are crossed
SPAN_DAYS = 18
BUSINESS_DATE = START + timedelta(days=SPAN_DAYS + 3)
PORTFOLIOS = {"PF": "FIFO", "PA": "AVCO"}
BASE = "USD"
PRICES = ("10", "12.5", "7.3", "101", "0.37")
RATES = ("1.10", "1.2", "0.95", "1.3333")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Scenario:
    currencies: dict[str, str]  # security -> instrument currency
    txns: tuple[TransactionEvent, ...]
    prices: tuple[MarketPriceEvent, ...]
    rates: dict[date, Decimal]
    advances: tuple[tuple[int, int], ...]  # (percent of the way through the delivery, days past START)
    seed: int
    superseded: tuple[TransactionEvent, ...] = ()  # earlier versions, each delivered before its amendment

    def keys(self) -> list[str]:
        return sorted({f"{t.portfolio_id}|{t.security_id}" for t in self.txns})

    def of(self, key: str) -> list[TransactionEvent]:
        return [t for t in self.txns if f"{t.portfolio_id}|{t.security_id}" == key]


@st.composite
def scenarios(draw) -> Scenario:
    currencies: dict[str, str] = {}
    txns: list[TransactionEvent] = []
    prices: list[MarketPriceEvent] = []
    for k in range(draw(st.integers(1, 2))):
        security = f"S{k}"
        currency = currencies[security] = draw(st.sampled_from([BASE, "EUR"]))
        portfolio_id = draw(st.sampled_from(sorted(PORTFOLIOS)))
        slots = sorted(draw(st.lists(st.tuples(st.integers(0, SPAN_DAYS), st.sampled_from([9, 10, 11])),
                                     min_size=1, max_size=7, unique=True)))
        held = 0
        for n, (offset, hour) in enumerate(slots):
            sell = held > 0 and draw(st.booleans())
            quantity = draw(st.integers(1, held)) if sell else draw(st.integers(1, 20))
            held += -quantity if sell else quantity
            txns.append(trade(f"T{k}-{n:02d}", portfolio_id, security, "SELL" if sell else "BUY",
                              START + offset * DAY, quantity, draw(st.sampled_from(PRICES)), currency,
                              fee=draw(st.sampled_from(["0", "1.5"])), hour=hour))
        # prices on some days only (carried forward between them), maybe none before the
        # first transaction; now and then one quoted in a currency that is not the instrument's
        for offset in draw(st.lists(st.integers(-3, SPAN_DAYS + 3), max_size=8, unique=True)):
            quoted = "GBP" if draw(st.integers(0, 9)) == 0 else currency
            prices.append(price(security, START + offset * DAY, draw(st.sampled_from(PRICES)), quoted))
    # EUR->USD on some days only; none at all is allowed (then EUR keys cannot be valued)
    rates = {START + offset * DAY: Decimal(draw(st.sampled_from(RATES)))
             for offset in draw(st.lists(st.integers(-5, SPAN_DAYS), max_size=5, unique=True))}
    superseded = []
    for t in txns:
        if draw(st.integers(0, 6)) == 0:
            quantity = Decimal(draw(st.integers(1, 30)))
            unit_price = Decimal(draw(st.sampled_from(PRICES)))
            superseded.append(t.model_copy(update={
                "transaction_date": t.transaction_date + draw(st.integers(-8, 8)) * DAY,
                "quantity": quantity, "price": unit_price, "gross_amount": quantity * unit_price}))
    advances = tuple(draw(st.lists(st.tuples(st.integers(0, 100), st.integers(0, SPAN_DAYS + 3)), min_size=1, max_size=6)))
    return Scenario(currencies, tuple(txns), tuple(prices), rates, advances, draw(st.integers(0, 2**32 - 1)),
                    tuple(superseded))


def setup_events(s: Scenario) -> list:
    return [*(portfolio(p, BASE, m) for p, m in PORTFOLIOS.items()),
            *(instrument(sec, ccy) for sec, ccy in s.currencies.items()),
            business_date(BUSINESS_DATE)]


def data_events(s: Scenario) -> list:
    return [*s.txns, *s.prices, *(fx(day, rate) for day, rate in s.rates.items())]


def value_every_day(p: Pipeline, s: Scenario) -> dict[tuple[str, date], SnapshotRow]:
    out = {}
    for key in s.keys():
        first = min(t.transaction_date.date() for t in s.of(key))
        day = first
        while day <= BUSINESS_DATE:
            snapshot, outcome = p.value(key, day)
            assert outcome.outcome in ("COMPLETE", "BLOCKED"), (key, day, outcome)
            assert snapshot is not None and snapshot.epoch == p.positions.states.get(key).epoch
            assert (outcome.outcome == "BLOCKED") == (snapshot.valuation_status in ("UNVALUED", "FAILED"))
            out[(key, day)] = snapshot
            day += DAY
    return out


def in_order_snapshots(s: Scenario) -> dict[tuple[str, date], SnapshotRow]:
    p = Pipeline()
    p.feed_all(setup_events(s))
    p.feed_all(fx(day, rate) for day, rate in sorted(s.rates.items()))
    p.feed_all(sorted(s.prices, key=lambda e: e.price_date))
    p.feed_all(sorted(s.txns, key=lambda t: (t.transaction_date, t.transaction_id)))
    return value_every_day(p, s)


def shuffled_snapshots(s: Scenario) -> dict[tuple[str, date], SnapshotRow]:
    rng = random.Random(s.seed)
    events = data_events(s)
    deliveries: list = events + [rng.choice(events) for _ in range(rng.randint(0, 5))]  # duplicates
    rng.shuffle(deliveries)
    for old in s.superseded:
        first = next(i for i, e in enumerate(deliveries)
                     if isinstance(e, TransactionEvent) and e.transaction_id == old.transaction_id)
        deliveries.insert(rng.randint(0, first), old)
    length = len(deliveries)
    for percent, offset in sorted(s.advances, reverse=True):
        deliveries.insert(length * percent // 100, ("advance", START + offset * DAY))
    p = Pipeline()
    p.feed_all(setup_events(s))
    for item in deliveries:
        if isinstance(item, tuple):
            for key in s.keys():
                p.advance(key, min(item[1], BUSINESS_DATE))
        else:
            p.feed(item)
    event(f"max epoch {max(p.positions.states.get(k).epoch for k in s.keys())}")
    return value_every_day(p, s)


def expected_by_the_rules(s: Scenario, key: str, day: date, row: SnapshotRow) -> None:
    """The snapshot against DESIGN.md, from the in-order history and the raw data."""
    portfolio_id, security = key.split("|")
    currency = s.currencies[security]
    rate_of = fx_table({("EUR", BASE): s.rates})
    _, entries = fold(in_order(to_transaction(t) for t in s.of(key)), ctx(CostMethod(PORTFOLIOS[portfolio_id])), rate_of)
    eod = [e for e in entries if e.txn.date <= day][-1]
    assert (row.quantity, row.cost_basis_local, row.cost_basis) == (eod.quantity, eod.cost_local, eod.cost_base)

    quotes = sorted((e.price_date, e) for e in s.prices if e.security_id == security and e.price_date <= day)
    if not quotes:
        assert row.valuation_status == "UNVALUED"
        assert (row.market_price, row.market_value_local, row.market_value) == (None, None, None)
        return
    quote_day, quote = quotes[-1]
    assert row.market_price == quote.price
    if quote.currency != currency:
        assert row.valuation_status == "FAILED" and row.market_value is None and row.unrealized_gain_loss is None
        return
    mv_local = eod.quantity * quote.price
    assert row.market_value_local == mv_local
    assert row.unrealized_gain_loss_local == mv_local - eod.cost_local
    rate = rate_of(currency, BASE, day)
    if rate is None or eod.cost_base is None:
        assert row.valuation_status == "FAILED" and row.unrealized_gain_loss is None
        return
    assert row.valuation_status == ("VALUED_CURRENT" if quote_day == day else "VALUED_STALE")
    assert row.market_value == mv_local * rate
    assert row.unrealized_gain_loss == mv_local * rate - eod.cost_base


def chunks_of(size: int) -> ExitStack:
    """The valuation copy's chunk size, made small so short histories cross chunk ends."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(history_copy_module, "CHUNK", size))
    return stack


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([2, 3, history_copy_module.CHUNK]))
def test_any_arrival_order_values_every_day_as_in_order(s: Scenario, chunk: int) -> None:
    with chunks_of(chunk):
        expected = in_order_snapshots(s)
        actual = shuffled_snapshots(s)
    assert actual.keys() == expected.keys()
    for (key, day), row in expected.items():
        event(f"status {row.valuation_status}")
        expected_by_the_rules(s, key, day, row)
        got = actual[(key, day)]
        assert (fields(got), got.price_date, got.fx_rate) == (fields(row), row.price_date, row.fx_rate), (key, day)
