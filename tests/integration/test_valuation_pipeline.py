"""Positions, scheduler, valuation and sink end to end on the real embedded stack (broker,
PostgreSQL and one worker process per role): back-dated transactions and epochs, same-day
transactions, a missing price and its late arrival, and position-aware scheduling, all
read back from PostgreSQL after `Pipeline.settle`.

One stack serves the module. Business dates are global to it, so every test takes a
window of days later than any test before it (`Windows`) and works on keys of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.sinks.reads import scenario as scenario_reads
from epochflow.sinks.reads.api import fetch_position_history, fetch_snapshots, fetch_valuation_jobs
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.scenario import count_position_history, earliest_job_date, snapshot, valuation_job
from epochflow.topology import ROLE_NAMES
from tests.fixtures.stack import running_stack, transaction
from tests.fixtures.valuation import (
    Windows,
    business_dates,
    days,
    expected_snap,
    instrument,
    portfolio,
    price,
    snap,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

D = Decimal
DAY = timedelta(days=1)
SETTLE_S = 90.0
WINDOWS = Windows(date(2026, 1, 5), length=40)


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES) as running:
        yield running



@pytest.fixture
def w() -> date:
    """The first day of this test's window."""
    return WINDOWS.take()


async def state_of(pipeline: Pipeline, portfolio_id: str, security_id: str) -> dict:
    state = await position(pipeline.engine, portfolio_id, security_id)
    assert state is not None, f"no position_state for {portfolio_id}|{security_id}"
    return state


async def snaps(pipeline: Pipeline, portfolio_id: str, security_id: str, epoch: int | None = None) -> list[tuple]:
    return [snap(r) for r in await fetch_snapshots(pipeline.engine, portfolio_id, security_id, epoch=epoch)]


async def jobs_of(pipeline: Pipeline, portfolio_id: str, security_id: str, epoch: int | None = None) -> list:
    rows = await fetch_valuation_jobs(pipeline.engine, portfolio_id, security_id, limit=10_000)
    return [j for j in rows if epoch is None or j.epoch == epoch]


def assert_current(state: dict, epoch: int, business_date: date) -> None:
    got = (state["epoch"], state["status"], state["watermark_date"])
    assert got == (epoch, "CURRENT", business_date), f"(epoch, status, watermark) = {got}"


# ---- a. a back-dated SELL after valuation: epoch 0 -> 1, complete epoch-1 history --------


async def test_backdated_sell_opens_epoch_1_with_complete_snapshots(pipeline: Pipeline, w: date) -> None:
    """BUY 100@200 (d0), BUY 50@220 (d3); prices 200, 210, 215, none on d3, 230, 225;
    valued to d5 in epoch 0. Then SELL 40@215 dated d2 arrives: FIFO cogs 8000, realized
    600; epoch 1 keeps d0 and d1 as they were and recomputes d2..d5."""
    p, s = "VP_BACK", "VS_BACK"
    d = days(w, w + 5 * DAY)
    prices = {d[0]: 200, d[1]: 210, d[2]: 215, d[4]: 230, d[5]: 225}
    await pipeline.publish([
        portfolio(p, w - 30 * DAY), instrument(s),
        *(price(s, day, value) for day, value in prices.items()),
        transaction("VB_BUY_0", p, s, "BUY", d[0], 100, 200),
        transaction("VB_BUY_3", p, s, "BUY", d[3], 50, 220),
        *business_dates(d[0], d[5]),
    ])
    await pipeline.settle(SETTLE_S)

    assert_current(await state_of(pipeline, p, s), 0, d[5])
    epoch0 = await snaps(pipeline, p, s, epoch=0)
    assert epoch0 == [
        expected_snap(d[0], 100, 20000, 200, "VALUED_CURRENT"),
        expected_snap(d[1], 100, 20000, 210, "VALUED_CURRENT"),
        expected_snap(d[2], 100, 20000, 215, "VALUED_CURRENT"),
        expected_snap(d[3], 150, 31000, 215, "VALUED_STALE"),
        expected_snap(d[4], 150, 31000, 230, "VALUED_CURRENT"),
        expected_snap(d[5], 150, 31000, 225, "VALUED_CURRENT"),
    ]

    await pipeline.publish([transaction("VB_SELL_2", p, s, "SELL", d[2], 40, 215, hour=11)])
    await pipeline.settle(SETTLE_S)

    state = await state_of(pipeline, p, s)
    assert_current(state, 1, d[5])
    assert (state["quantity"], state["cost_basis"], state["cost_basis_local"]) == (110, 23000, 23000)
    sell = await scenario_reads.transaction(pipeline.engine, "VB_SELL_2")
    assert (sell["epoch"], sell["net_cost"], sell["net_cost_local"], sell["realized_gain_loss"],
            sell["realized_gain_loss_local"]) == (1, -8000, -8000, 600, 600)

    epoch1 = await snaps(pipeline, p, s)  # the current epoch's
    assert epoch1 == [
        expected_snap(d[0], 100, 20000, 200, "VALUED_CURRENT"),
        expected_snap(d[1], 100, 20000, 210, "VALUED_CURRENT"),
        expected_snap(d[2], 60, 12000, 215, "VALUED_CURRENT"),
        expected_snap(d[3], 110, 23000, 215, "VALUED_STALE"),
        expected_snap(d[4], 110, 23000, 230, "VALUED_CURRENT"),
        expected_snap(d[5], 110, 23000, 225, "VALUED_CURRENT"),
    ]
    # days before the trade are epoch 0's, carried over; from the trade on, recomputed
    assert epoch1[:2] == epoch0[:2]
    assert all(new != old for new, old in zip(epoch1[2:], epoch0[2:]))
    assert await count_position_history(pipeline.engine, p, s, epoch=1) == 3

    # every epoch-1 job ended, none before the reset day: carried days are not revalued
    jobs = await jobs_of(pipeline, p, s, epoch=1)
    assert {j.valuation_date for j in jobs} == set(d[2:])
    assert {j.status for j in jobs} == {"COMPLETE"}


# ---- b. two back-dated transactions in a row: epoch 0 -> 1 -> 2 ---------------------------


async def test_two_backdated_transactions_in_a_row_end_like_the_in_order_key(pipeline: Pipeline, w: date) -> None:
    """Key A is valued in epoch 0 with BUY d0, BUY d4, SELL d6; then a SELL dated d5 and a
    BUY dated d2 are published together: the SELL resets the watermark to d4 (epoch 1), the
    BUY is before that, so it bumps again while epoch 1 is still being rebuilt (epoch 2).
    Key B got the same five trades in date order before any valuation (epoch 0). Both end
    with the same position, transactions and snapshot for every day."""
    pa, pb, s = "VP_TWICE_A", "VP_TWICE_B", "VS_TWICE"
    last = w + 9 * DAY
    trades = {  # suffix -> (kind, day, quantity, price)
        "BUY_0": ("BUY", w, 100, 10),
        "BUY_2": ("BUY", w + 2 * DAY, 20, 12),
        "BUY_4": ("BUY", w + 4 * DAY, 100, 20),
        "SELL_5": ("SELL", w + 5 * DAY, 30, 25),
        "SELL_6": ("SELL", w + 6 * DAY, 50, 30),
    }

    def txn(p: str, suffix: str):
        kind, day, quantity, unit = trades[suffix]
        return transaction(f"{p}_{suffix}", p, s, kind, day, quantity, unit)

    # both keys' trades before any business date of this window: no valuation yet
    in_order = sorted(trades, key=lambda k: trades[k][1])
    await pipeline.publish([
        portfolio(pa, w - 30 * DAY), portfolio(pb, w - 30 * DAY), instrument(s),
        *(txn(pa, k) for k in ("BUY_0", "BUY_4", "SELL_6")),
        *(txn(pb, k) for k in in_order),
    ])
    await pipeline.quiesce(SETTLE_S)
    await pipeline.publish([
        *(price(s, day, 10 + n) for n, day in enumerate(days(w, last)) if n % 4 != 3),
        *business_dates(w, last),
    ])
    await pipeline.settle(SETTLE_S)
    assert_current(await state_of(pipeline, pa, s), 0, last)
    assert_current(await state_of(pipeline, pb, s), 0, last)

    await pipeline.publish([txn(pa, "SELL_5"), txn(pa, "BUY_2")])
    await pipeline.settle(SETTLE_S)

    a, b = await state_of(pipeline, pa, s), await state_of(pipeline, pb, s)
    assert_current(a, 2, last)
    # epoch 1 was opened and written in full on the way: BUY_0 and BUY_4 carried over,
    # SELL_5 and SELL_6 replayed
    assert await count_position_history(pipeline.engine, pa, s, epoch=1) == 4
    assert_current(b, 0, last)
    # FIFO: lots 100@10, 20@12, 100@20; SELL 30 and SELL 50 both take from the first lot
    assert (a["quantity"], a["cost_basis"], a["cost_basis_local"]) == (140, 2440, 2440)
    for name in ("quantity", "cost_basis", "cost_basis_local", "held_since_date", "first_open_date",
                 "last_transaction_date"):
        assert a[name] == b[name], name

    money = ("net_cost", "net_cost_local", "realized_gain_loss", "realized_gain_loss_local")
    for suffix in trades:
        ta = await scenario_reads.transaction(pipeline.engine, f"{pa}_{suffix}")
        tb = await scenario_reads.transaction(pipeline.engine, f"{pb}_{suffix}")
        assert [ta[m] for m in money] == [tb[m] for m in money], suffix
    sells = [await scenario_reads.transaction(pipeline.engine, f"{pa}_{k}") for k in ("SELL_5", "SELL_6")]
    assert [t["realized_gain_loss"] for t in sells] == [D(450), D(1000)]

    history_a = await fetch_position_history(pipeline.engine, pa, s)
    history_b = await fetch_position_history(pipeline.engine, pb, s)
    assert len(history_a) == len(trades) == await count_position_history(pipeline.engine, pa, s, epoch=2)
    assert [(r.position_date, r.quantity, r.cost_basis) for r in history_a] == [
        (r.position_date, r.quantity, r.cost_basis) for r in history_b]

    snaps_a, snaps_b = await snaps(pipeline, pa, s), await snaps(pipeline, pb, s)
    assert [row[0] for row in snaps_a] == days(w, last)
    assert snaps_a == snaps_b
    assert {j.status for j in await jobs_of(pipeline, pa, s, epoch=2)} == {"COMPLETE"}


# ---- c. a transaction on the valued business date: same epoch, that day recomputed -------


async def test_same_day_transaction_keeps_the_epoch_and_recomputes_the_day(pipeline: Pipeline, w: date) -> None:
    p, s = "VP_SAME", "VS_SAME"
    d = days(w, w + 2 * DAY)
    await pipeline.publish([
        portfolio(p, w - 30 * DAY), instrument(s),
        price(s, d[0], 100), price(s, d[1], 102), price(s, d[2], 104),
        transaction("VS_BUY_0", p, s, "BUY", d[0], 10, 100),
        *business_dates(d[0], d[2]),
    ])
    await pipeline.settle(SETTLE_S)
    assert_current(await state_of(pipeline, p, s), 0, d[2])
    before = await snaps(pipeline, p, s, epoch=0)
    assert before[-1] == expected_snap(d[2], 10, 1000, 104, "VALUED_CURRENT")

    await pipeline.publish([transaction("VS_BUY_2", p, s, "BUY", d[2], 5, 105, hour=15)])
    await pipeline.settle(SETTLE_S)

    state = await state_of(pipeline, p, s)
    assert_current(state, 0, d[2])
    assert (state["quantity"], state["cost_basis"]) == (15, 1525)
    after = await snaps(pipeline, p, s)
    assert after == [*before[:2], expected_snap(d[2], 15, 1525, 104, "VALUED_CURRENT")]
    assert await count_position_history(pipeline.engine, p, s, epoch=0) == 2
    assert await count_position_history(pipeline.engine, p, s, epoch=1) == 0
    job = await valuation_job(pipeline.engine, p, s, d[2], 0)
    assert job is not None and job["status"] == "COMPLETE"


# ---- d. a missing price blocks its day; its arrival retries the job at once ----------------


async def test_missing_price_blocks_the_day_until_the_price_arrives(pipeline: Pipeline, w: date) -> None:
    """The scheduler's retry backoff (60 s by default) is longer than the wait for the
    second settle: the job can only be COMPLETE because the price's arrival retried it."""
    p, s = "VP_NOPRICE", "VS_NOPRICE"
    await pipeline.publish([
        portfolio(p, w - 30 * DAY), instrument(s),
        transaction("VN_BUY_0", p, s, "BUY", w, 10, 50),
        *business_dates(w, w),
    ])
    await pipeline.settle(SETTLE_S)

    job = await valuation_job(pipeline.engine, p, s, w, 0)
    assert job is not None, "no valuation job for the day"
    assert job["status"] == "PENDING", f"{job}"
    assert job["failure_reason"], f"{job}"
    assert job["attempt_count"] >= 1, f"{job}"
    blocked = await snapshot(pipeline.engine, p, s, w, 0)
    assert blocked is None or blocked["valuation_status"] not in ("VALUED_CURRENT", "VALUED_STALE"), blocked
    watermark = (await state_of(pipeline, p, s))["watermark_date"]
    assert watermark is None or watermark < w, f"watermark {watermark} past a day that is not valued"

    started = time.monotonic()
    await pipeline.publish([price(s, w, 55)])
    await pipeline.settle(SETTLE_S)
    waited = time.monotonic() - started

    job = await valuation_job(pipeline.engine, p, s, w, 0)
    assert job["status"] == "COMPLETE", f"{job}"
    assert job["failure_reason"] is None, f"{job}"
    assert snap(await snapshot(pipeline.engine, p, s, w, 0)) == expected_snap(w, 10, 500, 55, "VALUED_CURRENT")
    assert_current(await state_of(pipeline, p, s), 0, w)
    assert waited < 60, f"the job waited for its backoff ({waited:.0f}s), not for the price"
    # two attempts: the blocked one and the one the price's arrival triggered
    assert job["attempt_count"] >= 2, f"{job}"


# ---- e. position-aware scheduling: nothing before the first transaction date ---------------


async def test_no_valuation_before_the_first_open_date(pipeline: Pipeline, w: date) -> None:
    """Business dates d0..d4 and prices from d1 exist (and the portfolio opened a month
    earlier), but the first transaction is on d3: jobs and snapshots only for d3 and d4."""
    p, s = "VP_FIRST", "VS_FIRST"
    d = days(w, w + 4 * DAY)
    await pipeline.publish([
        portfolio(p, w - 30 * DAY), instrument(s),
        price(s, d[1], 97), price(s, d[3], 100), price(s, d[4], 101),
        *business_dates(d[0], d[2]),
    ])
    await pipeline.settle(SETTLE_S)
    await pipeline.publish([transaction("VF_BUY_3", p, s, "BUY", d[3], 10, 100), *business_dates(d[3], d[4])])
    await pipeline.settle(SETTLE_S)

    state = await state_of(pipeline, p, s)
    assert_current(state, 0, d[4])
    assert state["first_open_date"] == d[3]
    assert await earliest_job_date(pipeline.engine, p, s) == d[3]
    jobs = await jobs_of(pipeline, p, s)
    assert [(j.valuation_date, j.epoch, j.status) for j in jobs] == [(d[3], 0, "COMPLETE"), (d[4], 0, "COMPLETE")]
    assert await snaps(pipeline, p, s) == [
        expected_snap(d[3], 10, 1000, 100, "VALUED_CURRENT"),
        expected_snap(d[4], 10, 1000, 101, "VALUED_CURRENT"),
    ]
