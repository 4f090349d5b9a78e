"""The benchmarks' workloads: deterministic event sets (ingest, replay, fan-out) and the
live trade stream the fan-out benchmark measures latency on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

from epochflow.client import Pipeline
from epochflow.schemas.events import (
    BusinessDateEvent,
    InstrumentEvent,
    MarketPriceEvent,
    PortfolioEvent,
    TransactionEvent,
)

START = date(2024, 1, 1)
SECURITIES_PER_PORTFOLIO = 10


def _reference(prefix: str, keys: int) -> list:
    """The portfolios (USD, `SECURITIES_PER_PORTFOLIO` keys each) and instruments of `keys` keys."""
    portfolios = max(1, (keys + SECURITIES_PER_PORTFOLIO - 1) // SECURITIES_PER_PORTFOLIO)
    reference: list = [PortfolioEvent(portfolio_id=f"{prefix}P{p}", base_currency="USD") for p in range(portfolios)]
    reference += [InstrumentEvent(security_id=f"S{s}", currency="USD") for s in range(SECURITIES_PER_PORTFOLIO)]
    return reference


def ingest_workload(prefix: str, transactions: int, keys: int) -> tuple[list, list]:
    """Reference events and `transactions` trades over `keys` keys, interleaved across keys
    as a live feed is, each key's trades one day apart (BUYs, every fourth a SELL)."""
    reference = _reference(prefix, keys)
    trades: list = []
    for n in range(transactions):
        key, round_ = n % keys, n // keys
        selling = round_ % 4 == 3
        stamp = datetime.combine(START + timedelta(days=round_), dtime(10), tzinfo=UTC)
        trades.append(
            TransactionEvent(
                transaction_id=f"{prefix}T{n}", portfolio_id=f"{prefix}P{key // SECURITIES_PER_PORTFOLIO}",
                security_id=f"S{key % SECURITIES_PER_PORTFOLIO}", transaction_type="SELL" if selling else "BUY",
                transaction_date=stamp, quantity=Decimal(5 if selling else 10), price=Decimal("101.25"),
                gross_amount=Decimal("506.25") if selling else Decimal("1012.50"), trade_fee=Decimal("1"),
                trade_currency="USD",
            )
        )
    return reference, trades


def month_workload(prefix: str, keys: int, per_key: int) -> tuple[list, list]:
    """Reference events and `per_key` trades on each of `keys` keys, all within one month
    (the trades of a key in time order, many a day when `per_key` is large), interleaved
    across keys as a live feed is."""
    reference = _reference(prefix, keys)
    trades: list = []
    for n in range(per_key):
        stamp = datetime.combine(START + timedelta(days=n * 30 // per_key), dtime(9), tzinfo=UTC) + timedelta(seconds=n)
        for key in range(keys):
            selling = n % 4 == 3
            trades.append(TransactionEvent(
                transaction_id=f"{prefix}T{key}-{n}", portfolio_id=f"{prefix}P{key // SECURITIES_PER_PORTFOLIO}",
                security_id=f"S{key % SECURITIES_PER_PORTFOLIO}", transaction_type="SELL" if selling else "BUY",
                transaction_date=stamp, quantity=Decimal(5 if selling else 10), price=Decimal("101.25"),
                gross_amount=Decimal("506.25") if selling else Decimal("1012.50"), trade_fee=Decimal("1"),
                trade_currency="USD",
            ))
    return reference, trades


def replay_workload(h: int, prefix: str = "RP") -> tuple[list, tuple[str, str]]:
    """One key with `h` trades, one a day over `h` days (date ranges match the history
    length), a price every day, business dates up to the last day. (`prefix`: the
    portfolio's, so two copies of the workload can share a database.)"""
    portfolio, security = f"{prefix}{h}", "RPL"
    events: list = [InstrumentEvent(security_id=security, currency="USD"),
                    PortfolioEvent(portfolio_id=portfolio, base_currency="USD")]
    for d in range(h):
        day = START + timedelta(days=d)
        events.append(MarketPriceEvent(security_id=security, price_date=day, price=Decimal(100 + d % 17), currency="USD"))
    for n in range(h):
        selling = n % 5 == 4
        events.append(TransactionEvent(
            transaction_id=f"{portfolio}-T{n}", portfolio_id=portfolio, security_id=security,
            transaction_type="SELL" if selling else "BUY",
            transaction_date=datetime.combine(START + timedelta(days=n), dtime(9), tzinfo=UTC),
            quantity=Decimal(3 if selling else 5), price=Decimal(100), gross_amount=Decimal(300 if selling else 500),
            trade_fee=Decimal(0), trade_currency="USD",
        ))
    events.append(BusinessDateEvent(date=START + timedelta(days=h - 1)))
    return events, (portfolio, security)


def late_trade(portfolio: str, security: str, h: int, fraction: float) -> TransactionEvent:
    """The back-dated BUY `bench replay` sends at `fraction` of an `h`-day history."""
    return TransactionEvent(
        transaction_id=f"{portfolio}-LATE-{int(fraction * 100)}", portfolio_id=portfolio, security_id=security,
        transaction_type="BUY",
        transaction_date=datetime.combine(START + timedelta(days=int(h * fraction)), dtime(16), tzinfo=UTC),
        quantity=Decimal(1), price=Decimal(100), gross_amount=Decimal(100), trade_fee=Decimal(0), trade_currency="USD",
    )



FANOUT_SECURITY = "FANOUT_SEC"
# The live feed spreads over LIVE_KEYS keys (a portfolio each, LIVE_SECURITIES securities
# between them), the way a day's trading does: 20 trades a second on only 20 keys would
# be one trade per key per second, all day, which measures how one key's history grows
# (see `bench replay` and the README's known limits), not the fan-out's effect on live work.
LIVE_KEYS = 500
LIVE_SECURITIES = 20


def fanout_workload(n: int, days: int, security: str = FANOUT_SECURITY, prefix: str = "F",
                    live: bool = True) -> tuple[list, date]:
    """`n` portfolios each holding `security` from the first of `days` days, a price
    every day, and the last day as the business date (with `live`, the reference data of
    the live stream's keys as well). Returns the events and that date."""
    first = START
    last = first + timedelta(days=days - 1)
    events: list = [InstrumentEvent(security_id=security, currency="USD")]
    if live:
        events += [InstrumentEvent(security_id=f"LIVE{k}", currency="USD") for k in range(LIVE_SECURITIES)]
    events += [PortfolioEvent(portfolio_id=f"{prefix}{p:05d}", base_currency="USD") for p in range(n)]
    if live:
        events += [PortfolioEvent(portfolio_id=f"LIVEP{k}", base_currency="USD") for k in range(LIVE_KEYS)]
    for d in range(days):
        day = first + timedelta(days=d)
        events.append(MarketPriceEvent(security_id=security, price_date=day, price=Decimal(50 + d % 7), currency="USD"))
        if live:
            events += [MarketPriceEvent(security_id=f"LIVE{k}", price_date=day, price=Decimal(20), currency="USD")
                       for k in range(LIVE_SECURITIES)]
    stamp = datetime.combine(first, dtime(10), tzinfo=UTC)
    events += [TransactionEvent(
        transaction_id=f"{prefix}{p:05d}-BUY", portfolio_id=f"{prefix}{p:05d}", security_id=security, transaction_type="BUY",
        transaction_date=stamp, quantity=Decimal(10 + p % 9), price=Decimal(50), gross_amount=Decimal(50 * (10 + p % 9)),
        trade_fee=Decimal(0), trade_currency="USD") for p in range(n)]
    events.append(BusinessDateEvent(date=last))
    return events, last


class LiveStream:
    """Live trades on other securities at a steady rate; each one's latency is the time
    from its publication until its row is in PostgreSQL."""

    def __init__(self, pipeline: Pipeline, rate_per_s: float, day: date) -> None:
        self.pipeline = pipeline
        self.interval = 1.0 / rate_per_s
        self.day = day
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.count = 0

    def _trade(self) -> TransactionEvent:
        """The next trade of the day, later than every one before it (a live feed appends)."""
        k = self.count % LIVE_KEYS
        self.count += 1
        stamp = datetime.combine(self.day, dtime(8), tzinfo=UTC) + timedelta(milliseconds=100 * self.count)
        return TransactionEvent(
            transaction_id=f"LIVE-{self.count:08d}", portfolio_id=f"LIVEP{k}", security_id=f"LIVE{k % LIVE_SECURITIES}",
            transaction_type="BUY", transaction_date=stamp, quantity=Decimal(1), price=Decimal(20),
            gross_amount=Decimal(20), trade_fee=Decimal(0), trade_currency="USD",
        )

    async def run(self, until: Callable[[], bool]) -> list[float]:
        """Publish until `until()` is true, then wait for the stragglers; the latencies."""
        self.latencies = []
        poller = asyncio.ensure_future(self._poll())
        next_at = time.monotonic()
        try:
            while not until():
                trade = self._trade()
                await self.pipeline.publish([trade])
                self.sent[trade.transaction_id] = time.monotonic()
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            deadline = time.monotonic() + 120
            while self.sent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            poller.cancel()
        return list(self.latencies)

    async def _poll(self) -> None:
        from sqlalchemy import select

        from epochflow.sinks.models import transactions

        while True:
            pending = list(self.sent)
            if pending:
                async with self.pipeline.engine.connect() as conn:
                    found = (await conn.execute(
                        select(transactions.c.transaction_id).where(transactions.c.transaction_id.in_(pending))
                    )).scalars().all()
                now = time.monotonic()
                for transaction_id in found:
                    self.latencies.append(now - self.sent.pop(transaction_id))
            await asyncio.sleep(0.01)
