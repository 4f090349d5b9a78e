"""`epochflow bench timeseries`: what a back-dated trade costs the portfolio series kept as
deltas, against recomputing the portfolio's series from scratch, in the same run.

A portfolio of K keys x D days of valued snapshots (and a deposit and a buy per key) is
loaded into the timeseries role's series step (`SeriesBook` over in-memory stores, the
stores the role keeps in RocksDB). Then one key gets a back-dated trade on day 10: its
epoch is bumped (the days before are kept, the rest retracted), its D - 10 rebuilt
snapshots and the trade's cash flow arrive, and the changed rows are taken. That is timed
against summing the whole portfolio's series again from every key's current-epoch
snapshots and cash flows (`series_of`). The broker and PostgreSQL are left out on
purpose: both runs would pay them alike for their rows, and the incremental run sends
the rows of one key (and the portfolio's days), the recomputation all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from epochflow.domain.cashflows import cashflow_of
from epochflow.domain.timeseries import DayValue, SeriesBook, series_of


class _Memory:
    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


START = date(2025, 1, 1)
DAY = timedelta(days=1)
BACK = 10  # the back-dated trade's day


def _value(key: int, day: int, quantity: int) -> DayValue:
    price = Decimal(100 + (key + day) % 17)
    return DayValue(Decimal(quantity), Decimal(quantity * 100), price * quantity, price * quantity, True)


def _rate(currency: str, day: date) -> Decimal:
    return Decimal(1)


def run(keys: int, days: int, echo: Callable[[str], None] = print) -> dict:
    if days <= BACK:
        raise ValueError(f"days must be more than {BACK}")
    book = SeriesBook(_Memory(), _Memory(), _Memory(), _Memory())
    flows = []
    started = time.perf_counter()
    for k in range(keys):
        for kind, tid in (("DEPOSIT", f"D{k}"), ("BUY", f"B{k}")):
            flow = cashflow_of(tid, "P", f"S{k}", kind, START, Decimal(1000), Decimal(0), "USD", 0, 0)
            assert flow is not None
            flows.append(flow)
            book.on_cashflow(flow)
        for d in range(days):
            book.on_snapshot("P", f"S{k}", START + d * DAY, 0, d, _value(k, d, 10))
    book.points(lambda p: _rate)
    loaded = time.perf_counter() - started
    echo(f"loaded {keys} keys x {days} days in {loaded:.1f}s")

    started = time.perf_counter()
    book.on_carry("P", "S0", 0, 1, START + BACK * DAY)
    late = cashflow_of("LATE", "P", "S0", "BUY", START + BACK * DAY, Decimal(490), Decimal(0), "USD", 1, days)
    assert late is not None
    book.on_cashflow(late)
    for d in range(BACK, days):
        book.on_snapshot("P", "S0", START + d * DAY, 1, days + d, _value(0, d, 20))
    positions, portfolios = book.points(lambda p: _rate)
    incremental = time.perf_counter() - started

    started = time.perf_counter()
    values = [(f"S{k}", START + d * DAY, _value(k, d, 20 if k == 0 and d >= BACK else 10))
              for k in range(keys) for d in range(days)]
    scratch = series_of("P", values, [*flows, late], _rate)
    recomputed = time.perf_counter() - started

    kept = {p.day: p for p in portfolios}
    assert all(kept[day] == point for day, point in scratch.items() if day in kept), "the two runs disagree"
    ratio = recomputed / incremental if incremental else float("inf")
    echo(f"back-dated trade, kept as deltas: {incremental * 1000:.1f} ms "
         f"({len(positions)} position rows, {len(portfolios)} portfolio rows)")
    echo(f"portfolio series recomputed from scratch: {recomputed * 1000:.1f} ms ({keys * days} snapshots)")
    echo(f"ratio: {ratio:.0f}x")
    return {"keys": keys, "days": days, "incremental_s": incremental, "from_scratch_s": recomputed, "ratio": ratio,
            "position_rows": len(positions), "portfolio_rows": len(portfolios)}
