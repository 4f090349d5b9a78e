"""The built-in demo dataset: a small investment manager's month. Deterministic (seeded)
so the demo prints the same numbers every time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from epochflow.schemas.events import (
    BusinessDateEvent,
    FxRateEvent,
    InstrumentEvent,
    MarketPriceEvent,
    PortfolioEvent,
    TransactionEvent,
)

START = date(2025, 6, 2)
DAYS = 28

PORTFOLIOS = [
    ("GLOBAL_GROWTH_USD", "USD", "FIFO"),
    ("EURO_INCOME_EUR", "EUR", "AVCO"),
    ("BALANCED_GBP", "GBP", "FIFO"),
]
INSTRUMENTS = [
    ("AAPL", "USD", Decimal("195")),
    ("MSFT", "USD", Decimal("420")),
    ("SAP", "EUR", Decimal("180")),
    ("ASML", "EUR", Decimal("690")),
    ("HSBA", "GBP", Decimal("6.40")),
    ("NESN", "CHF", Decimal("92")),
]
# model portfolios a wealth manager runs for its clients: all of them hold the same stock,
# the widely held security whose price the demo corrects
MODEL_PORTFOLIOS = 240
WIDELY_HELD = "AAPL"
FX_BASE = {("EUR", "USD"): Decimal("1.08"), ("GBP", "USD"): Decimal("1.27"), ("CHF", "USD"): Decimal("1.11")}


def _cross(frm: str, to: str, level: dict[tuple[str, str], Decimal]) -> Decimal:
    usd = {c: level[(c, "USD")] for c, _ in level} | {"USD": Decimal(1)}
    return (usd[frm] / usd[to]).quantize(Decimal("0.000001"))


def demo_events(seed: int = 7, transactions: int = 300) -> list:
    rng = random.Random(seed)
    events: list = [PortfolioEvent(portfolio_id=p, base_currency=b, cost_basis_method=m, open_date=START) for p, b, m in PORTFOLIOS]
    events += [InstrumentEvent(security_id=s, currency=c, name=s, product_type="Equity") for s, c, _ in INSTRUMENTS]
    days = [START + timedelta(days=i) for i in range(DAYS)]
    for day in days:
        level = {k: v * (1 + Decimal(rng.randint(-200, 200)) / 10000) for k, v in FX_BASE.items()}
        currencies = ["USD", "EUR", "GBP", "CHF"]
        for frm in currencies:
            for to in currencies:
                if frm != to:
                    events.append(FxRateEvent(from_currency=frm, to_currency=to, rate_date=day, rate=_cross(frm, to, level)))
        for security, currency, price in INSTRUMENTS:
            close = (price * (1 + Decimal(rng.randint(-300, 300)) / 10000)).quantize(Decimal("0.01"))
            events.append(MarketPriceEvent(security_id=security, price_date=day, price=close, currency=currency))
        events.append(BusinessDateEvent(date=day))

    held: dict[tuple[str, str], Decimal] = {}
    booked: list[TransactionEvent] = []
    per_day: dict[date, int] = {}
    for n in range(transactions):
        day = days[min(DAYS - 1, n * DAYS // transactions)]
        portfolio, _, _ = rng.choice(PORTFOLIOS)
        security, currency, price = rng.choice(INSTRUMENTS)
        price = (price * (1 + Decimal(rng.randint(-500, 500)) / 10000)).quantize(Decimal("0.01"))
        have = held.get((portfolio, security), Decimal(0))
        selling = have > 0 and rng.random() < 0.35
        quantity = Decimal(rng.randint(1, int(have))) if selling else Decimal(rng.randint(5, 120))
        held[(portfolio, security)] = have - quantity if selling else have + quantity
        # trades of a day in the order they were generated, so the holdings above hold in time order
        per_day[day] = per_day.get(day, 0) + 1
        stamp = datetime.combine(day, time(9, 30), tzinfo=UTC) + timedelta(minutes=7 * per_day[day])
        booked.append(
            TransactionEvent(
                transaction_id=f"T{n:05d}", portfolio_id=portfolio, security_id=security, instrument_id=security,
                transaction_type="SELL" if selling else "BUY", transaction_date=stamp, quantity=quantity,
                price=price, gross_amount=quantity * price, trade_fee=Decimal(rng.choice(["0", "1.50", "4.95"])),
                trade_currency=currency, currency=currency,
            )
        )
    # operations reality: a tenth of the trades are booked late, some by days
    late = rng.sample(range(len(booked)), len(booked) // 10)
    arrival = [(i + (rng.randint(5, 60) if i in late else 0), t) for i, t in enumerate(booked)]
    arrival.sort(key=lambda pair: pair[0])
    return events + model_portfolios(rng) + [t for _, t in arrival]


def model_portfolios(rng: random.Random) -> list:
    """MODEL_PORTFOLIOS portfolios in USD, each buying WIDELY_HELD on the first day."""
    events: list = []
    for m in range(MODEL_PORTFOLIOS):
        portfolio = model_portfolio_id(m)
        quantity = Decimal(rng.randint(10, 60))
        events.append(PortfolioEvent(portfolio_id=portfolio, base_currency="USD", open_date=START))
        events.append(TransactionEvent(
            transaction_id=f"{portfolio}-INIT", portfolio_id=portfolio, security_id=WIDELY_HELD, instrument_id=WIDELY_HELD,
            transaction_type="BUY", transaction_date=datetime.combine(START, time(16), tzinfo=UTC),
            quantity=quantity, price=Decimal("195"), gross_amount=quantity * 195, trade_fee=Decimal(0),
            trade_currency="USD", currency="USD",
        ))
    return events


def model_portfolio_id(m: int) -> str:
    return f"MODEL_{m + 1:03d}"


def price_correction(events: list) -> tuple[MarketPriceEvent, Decimal]:
    """The vendor's corrected close of WIDELY_HELD a week before the last business date
    (3% higher), and the close it replaces."""
    day = START + timedelta(days=DAYS - 8)
    old = next(e.price for e in events if isinstance(e, MarketPriceEvent) and e.security_id == WIDELY_HELD and e.price_date == day)
    return MarketPriceEvent(security_id=WIDELY_HELD, price_date=day, price=(old * Decimal("1.03")).quantize(Decimal("0.01")),
                            currency="USD"), old


def late_trade() -> TransactionEvent:
    """A SELL booked three days after its trade date, for the demo's back-dated story."""
    day = START + timedelta(days=DAYS - 4)
    return TransactionEvent(
        transaction_id="LATE-0001", portfolio_id="GLOBAL_GROWTH_USD", security_id="MSFT", instrument_id="MSFT",
        transaction_type="SELL", transaction_date=datetime.combine(day, time(15, 45), tzinfo=UTC),
        quantity=Decimal(20), price=Decimal("425.10"), gross_amount=Decimal("8502.00"), trade_fee=Decimal("4.95"),
        trade_currency="USD", currency="USD",
    )
