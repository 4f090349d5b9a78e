"""Cash flows, position and portfolio time series end to end on the real embedded stack
(broker, PostgreSQL, one worker per role, the timeseries role included): a small book
valued over five days, then a back-dated trade (a new epoch), then a corrected price of a
past day (same epoch, revalued days). After each, the portfolio series in PostgreSQL
equals the one summed from scratch over each key's current-epoch snapshots and the cash
flows, and the read API serves it with `reprocessing_status`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.domain.cashflows import cashflow_of
from epochflow.domain.timeseries import day_value, series_of
from epochflow.sinks.models import cashflows, daily_position_snapshots, portfolio_timeseries, position_state
from epochflow.sinks.reads.query import mappings
from epochflow.sinks.reads.series import portfolio_point, position_point
from epochflow.topology import ROLE_NAMES
from tests.fixtures.stack import running_stack, transaction
from tests.fixtures.valuation import business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

D = Decimal
DAY = timedelta(days=1)
SETTLE_S = 120.0
W = date(2026, 4, 6)
LAST = W + 4 * DAY
P, CASH, STK = "TSP", "TS_CASH", "TS_STK"


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES) as running:
        yield running


async def from_scratch(pipeline: Pipeline) -> dict[date, tuple]:
    """The portfolio's series summed over each key's current-epoch snapshots in PostgreSQL."""
    s, d = position_state.c, daily_position_snapshots.c
    snaps = await mappings(pipeline.engine, select(daily_position_snapshots).join(
        position_state, (s.portfolio_id == d.portfolio_id) & (s.security_id == d.security_id) & (s.epoch == d.epoch)
    ).where(d.portfolio_id == P))
    values = [(r["security_id"], r["date"], day_value(r["quantity"], r["cost_basis_local"], r["market_value_local"],
                                                       r["market_value"], r["valuation_status"])) for r in snaps]
    flows = [cashflow_of(r["transaction_id"], P, r["security_id"], r["transaction_type"], r["cashflow_date"],
                         -r["amount"] if r["amount"] < 0 else r["amount"], D(0), r["currency"])
             for r in await mappings(pipeline.engine, select(cashflows).where(cashflows.c.portfolio_id == P))]
    series = series_of(P, values, [f for f in flows if f is not None], lambda currency, day: D(1))
    return {day: _figures(p.__dict__ if hasattr(p, "__dict__") else _asdict(p)) for day, p in series.items()}


def _asdict(point) -> dict:
    return {name: getattr(point, name) for name in point.__slots__}


def _figures(row: dict) -> tuple:
    return (row["bod_market_value"], row["eod_market_value"], row["bod_cashflow"], row["eod_cashflow"], row["fees"],
            row["daily_return"], row["valuation_status"], row["keys_unvalued"])


async def stored(pipeline: Pipeline) -> dict[date, tuple]:
    t = portfolio_timeseries.c
    rows = await mappings(pipeline.engine, select(portfolio_timeseries).where(t.portfolio_id == P, t.present))
    return {row["date"]: _figures(dict(row)) for row in rows}


async def _book(stack: EmbeddedStack) -> dict[str, Any]:
    """Publish the book in three steps; what PostgreSQL and the API held after each."""
    seen: dict[str, Any] = {}
    pipeline = await Pipeline.connect(stack.settings)
    try:
        prices = {d: D(50 + n) for n, d in enumerate(days(W, LAST))}
        await pipeline.publish([
            portfolio(P, W - 30 * DAY), instrument(CASH), instrument(STK),
            *(price(STK, d, v) for d, v in prices.items()), *(price(CASH, d, 1) for d in days(W, LAST)),
            transaction("TS_DEP", P, CASH, "DEPOSIT", W, 10_000, 1, hour=9),
            transaction("TS_BUY", P, STK, "BUY", W, 100, 50, fee=10),
            transaction("TS_SETTLE", P, CASH, "SELL", W, 5010, 1),
            transaction("TS_FEE", P, CASH, "FEE", W + 2 * DAY, 1, 15, hour=12),
            *business_dates(W, LAST),
        ])
        await pipeline.settle(SETTLE_S)
        seen["first"] = (await stored(pipeline), await from_scratch(pipeline))
        seen["stk_w1"] = await position_point(pipeline.engine, P, STK, W + DAY)
        # booked late: STK opens epoch 1 from W + 1
        await pipeline.publish([transaction("TS_LATE", P, STK, "BUY", W + DAY, 10, 49, hour=15)])
        await pipeline.settle(SETTLE_S)
        seen["backdated"] = (await stored(pipeline), await from_scratch(pipeline))
        seen["stk_w1_late"] = await position_point(pipeline.engine, P, STK, W + DAY)
        # a corrected price of W + 2: same epoch, revalued
        await pipeline.publish([price(STK, W + 2 * DAY, "60")])
        await pipeline.settle(SETTLE_S)
        seen["corrected"] = (await stored(pipeline), await from_scratch(pipeline))
        seen["day2"] = await portfolio_point(pipeline.engine, P, W + 2 * DAY)
    finally:
        await pipeline.close()
    return seen


@pytest.fixture(scope="module")
def book(stack: EmbeddedStack) -> dict[str, Any]:
    return asyncio.run(_book(stack))


def test_the_series_follows_every_correction(book: dict[str, Any]) -> None:
    for step in ("first", "backdated", "corrected"):
        kept, summed = book[step]
        assert set(kept) == set(days(W, LAST)), step
        assert kept == summed, step
    first, _ = book["first"]
    # the worked example's first day: 10,000 deposited at the beginning of the day
    assert first[W][:6] == (0, 4990 + 5000, 10_000, 0, 0, D("-0.001"))
    assert first[W + 2 * DAY][3:5] == (-15, 15)
    assert book["stk_w1"]["epoch"] == 0 and book["stk_w1_late"]["epoch"] == 1
    assert (book["stk_w1_late"]["quantity"], book["stk_w1_late"]["cost"]) == (110, D(5500) / 110)
    backdated, _ = book["backdated"]
    assert backdated[W] == first[W]  # the day before the trade is kept as it was
    assert backdated[W + DAY][1] == first[W + DAY][1] + 10 * 51
    corrected, _ = book["corrected"]
    assert corrected[W + 2 * DAY][1] == 4975 + 110 * 60
    assert corrected[W + 3 * DAY][0] == corrected[W + 2 * DAY][1]  # the next day's beginning follows
    assert book["day2"]["valuation_status"] == "COMPLETE"


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_reads(stack: EmbeddedStack, book: dict[str, Any]) -> None:
    port = next(w.web_port for w in stack.workers if w.role == "api")
    status, series = get(port, f"/portfolios/{P}/timeseries/?from={W + DAY}&to={LAST}")
    assert status == 200 and series["reprocessing_status"] == "CURRENT"
    kept, _ = book["corrected"]
    assert [row["date"] for row in series["rows"]] == [str(d) for d in days(W + DAY, LAST)]
    assert [D(row["eod_market_value"]) for row in series["rows"]] == [kept[d][1] for d in days(W + DAY, LAST)]

    status, performance = get(port, f"/portfolios/{P}/performance/?from={W + DAY}&to={LAST}")
    assert status == 200 and performance["days"] == 4 and performance["null_days"] == []
    growth = D(1)
    for d in days(W + DAY, LAST):
        growth *= 1 + kept[d][5]
    assert abs(D(performance["time_weighted_return"]) - (growth - 1)) < D("1E-9")
    assert D(series["rows"][-1]["cumulative_return"]) == D(performance["time_weighted_return"])

    status, position = get(port, f"/positions/{P}/{STK}/timeseries/")
    assert status == 200 and position["epoch"] == 1 and len(position["rows"]) == 5
    status, flows = get(port, f"/portfolios/{P}/cashflows/?from={W}&to={W}")
    assert status == 200
    assert {row["transaction_id"]: row["amount"] for row in flows["rows"]} == {
        "TS_DEP": "10000", "TS_BUY": "-5010", "TS_SETTLE": "5010"}
    assert get(port, "/portfolios/NOPE/timeseries/")[0] == 404
    assert get(port, f"/portfolios/{P}/performance/?from={LAST}&to={W}")[0] == 400


def test_the_page_on_the_real_stack(stack: EmbeddedStack, book: dict[str, Any], tmp_path) -> None:
    from tests.fixtures.browser import BrowserUnavailable, dump_dom, find_chromium, read_png, screenshot

    try:
        chromium = find_chromium(install=True)
    except BrowserUnavailable as error:
        pytest.skip(f"no headless Chromium on this machine: {error}")
    port = next(w.web_port for w in stack.workers if w.role == "api")
    url = f"http://127.0.0.1:{port}/portfolios/{P}/page/"
    dom = dump_dom(url, chromium=chromium, budget_ms=5000)
    assert dom.count('data-points="5"') == 2 and f"Portfolio {P}" in dom and "5 days, CURRENT" in dom
    shot = read_png(screenshot(url, tmp_path / "portfolio.png", chromium=chromium, budget_ms=5000, window=(1100, 800)))
    assert len(shot.colors(step=4)) > 3  # more than a blank page
