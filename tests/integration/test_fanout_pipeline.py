"""Price and FX corrections through the fan-out, end to end on the real embedded stack:
a back-dated price for a security held by 500 portfolios, a back-dated FX rate, and a
SIGKILL of the fan-out worker in the middle of its job. Every key must come back CURRENT in
the same epoch with the corrected values, each key reset exactly once (its reset
generation moves by one), and the jobs must be visible, COMPLETE, in PostgreSQL.

The fan-out is slowed to a known rate so a job lasts long enough to be killed mid-way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.ports import port_open
from epochflow.devstack.stack import EmbeddedStack
from epochflow.schemas.events import FxRateEvent
from epochflow.sinks.reads.api import fetch_reprocessing_jobs, fetch_reprocessing_triggers
from epochflow.sinks.reads.scenario import fetch_positions, snapshot
from epochflow.topology import ROLE_NAMES
from tests.fixtures.stack import log_tail, running_stack, transaction
from tests.fixtures.valuation import Windows, business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

D = Decimal
DAY = timedelta(days=1)
HOLDERS = 500
RATE = 100  # keys per second per fan-out worker: a 500-key job lasts about 5 seconds
SETTLE_S = 180.0
WINDOWS = Windows(date(2026, 3, 2), length=20)


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES, worker_env={"EPOCHFLOW_FANOUT_RATE": str(RATE)}) as running:
        yield running



def quantity(i: int) -> Decimal:
    return D(10 + i % 7)


async def book(pipeline: Pipeline, tag: str, security: str, currency: str, first: date, last: date,
               prices: dict[date, str], rates: dict[date, str] | None = None) -> list[str]:
    """HOLDERS portfolios (USD) each buying `quantity(i)` of `security` on `first`, daily
    prices and rates, business dates up to `last`, valued. Returns the portfolio ids."""
    portfolios = [f"{tag}-P{i:04d}" for i in range(HOLDERS)]
    events: list = [instrument(security, currency)]
    events += [portfolio(p, first - 30 * DAY) for p in portfolios]
    events += [FxRateEvent(from_currency=currency, to_currency="USD", rate_date=d, rate=D(r)) for d, r in (rates or {}).items()]
    events += [price(security, d, v, currency) for d, v in prices.items()]
    events += [transaction(f"{p}-BUY", p, security, "BUY", first, quantity(i), prices[first], currency=currency)
               for i, p in enumerate(portfolios)]
    events += business_dates(first, last)
    await pipeline.publish(events)
    await pipeline.settle(SETTLE_S)
    return portfolios


async def generations(pipeline: Pipeline, security: str) -> dict[str, tuple[int, int, str, date]]:
    rows = await fetch_positions(pipeline.engine, security_id=security)
    return {r.portfolio_id: (r.epoch, r.generation, r.status, r.watermark_date) for r in rows}


async def assert_reset_once(pipeline: Pipeline, security: str, before: dict, last: date) -> None:
    """Every key: same epoch, one reset more than before, CURRENT up to `last`."""
    after = await generations(pipeline, security)
    assert after.keys() == before.keys()
    wrong = {p: (before[p], after[p]) for p in before
             if after[p] != (before[p][0], before[p][1] + 1, "CURRENT", last)}
    assert not wrong, f"{len(wrong)} keys not reset exactly once and CURRENT: {list(wrong.items())[:5]}"


async def market_values(pipeline: Pipeline, portfolios: list[str], security: str, day: date) -> dict[str, Decimal]:
    values = {}
    for p in portfolios:
        row = await snapshot(pipeline.engine, p, security, day, 0)
        assert row is not None, f"no snapshot of {p}|{security} on {day}"
        values[p] = row["market_value"]
    return values


async def assert_jobs_complete(pipeline: Pipeline, subject: str, earliest: date) -> list:
    jobs = await fetch_reprocessing_jobs(pipeline.engine, subject=subject, limit=1000)
    assert jobs, f"no RESET_WATERMARKS job for {subject}"
    assert {(j.job_type, j.status, j.earliest_impacted_date) for j in jobs} == {("RESET_WATERMARKS", "COMPLETE", earliest)}
    assert sum(j.keys_reset for j in jobs) == HOLDERS
    assert all(j.keys_reset == j.keys_total for j in jobs)
    assert not await fetch_reprocessing_triggers(pipeline.engine)
    return jobs


async def test_a_price_correction_revalues_every_holder_in_the_same_epoch(pipeline: Pipeline) -> None:
    w = WINDOWS.take()
    last = w + 4 * DAY
    prices = {d: str(20 + n) for n, d in enumerate(days(w, last))}
    portfolios = await book(pipeline, "PX", "FO_PX", "USD", w, last, prices)
    before = await generations(pipeline, "FO_PX")
    assert {v[2] for v in before.values()} == {"CURRENT"}

    await pipeline.publish([price("FO_PX", w + DAY, "21.50")])  # was 21
    await pipeline.settle(SETTLE_S)

    await assert_reset_once(pipeline, "FO_PX", before, last)
    corrected = await market_values(pipeline, portfolios, "FO_PX", w + DAY)
    assert corrected == {p: quantity(i) * D("21.50") for i, p in enumerate(portfolios)}
    unchanged = await market_values(pipeline, portfolios, "FO_PX", w + 2 * DAY)
    assert unchanged == {p: quantity(i) * D(22) for i, p in enumerate(portfolios)}
    await assert_jobs_complete(pipeline, "price|FO_PX", w + DAY)


async def test_an_fx_correction_revalues_every_key_using_the_pair(pipeline: Pipeline) -> None:
    w = WINDOWS.take()
    last = w + 4 * DAY
    prices = {d: "10" for d in days(w, last)}
    rates = {w: "1.10", w + 2 * DAY: "1.20"}
    portfolios = await book(pipeline, "FX", "FO_FX", "CHF", w, last, prices, rates)
    before = await generations(pipeline, "FO_FX")
    assert await market_values(pipeline, portfolios[:3], "FO_FX", w + DAY) == {
        p: quantity(i) * 10 * D("1.10") for i, p in enumerate(portfolios[:3])}

    await pipeline.publish([FxRateEvent(from_currency="CHF", to_currency="USD", rate_date=w + DAY, rate=D("1.15"))])
    await pipeline.settle(SETTLE_S)

    await assert_reset_once(pipeline, "FO_FX", before, last)
    assert await market_values(pipeline, portfolios, "FO_FX", w + DAY) == {
        p: quantity(i) * 10 * D("1.15") for i, p in enumerate(portfolios)}
    assert await market_values(pipeline, portfolios, "FO_FX", w + 3 * DAY) == {
        p: quantity(i) * 10 * D("1.20") for i, p in enumerate(portfolios)}
    await assert_jobs_complete(pipeline, "fx|CHF|USD", w + DAY)


async def test_a_fanout_worker_killed_mid_job_resumes_without_skipping_or_repeating_keys(
    stack: EmbeddedStack, pipeline: Pipeline
) -> None:
    w = WINDOWS.take()
    last = w + 4 * DAY
    prices = {d: str(30 + n) for n, d in enumerate(days(w, last))}
    portfolios = await book(pipeline, "KX", "FO_KX", "USD", w, last, prices)
    before = await generations(pipeline, "FO_KX")

    await pipeline.publish([price("FO_KX", w + DAY, "31.25")])  # was 31
    deadline = time.monotonic() + 60
    while True:  # kill once a job has reset some keys but not all
        jobs = await fetch_reprocessing_jobs(pipeline.engine, subject="price|FO_KX")
        if any(j.status == "PROCESSING" and 0 < j.keys_reset < j.keys_total for j in jobs):
            break
        assert not any(j.status == "COMPLETE" for j in jobs), f"a job ended before the kill: {jobs}"
        assert time.monotonic() < deadline, f"no job in progress: {jobs}"
        await asyncio.sleep(0.05)
    worker = next(w_.name for w_ in stack.workers if w_.role == "fanout")
    pid = stack.supervisor.kill(worker)
    await asyncio.to_thread(stack.supervisor.wait_for_pid, worker, pid, 30)
    port = next(w_.web_port for w_ in stack.workers if w_.name == worker)
    deadline = time.monotonic() + 60
    while not port_open(port):
        assert time.monotonic() < deadline, f"{worker} not serving again:\n{log_tail(stack, worker)}"
        await asyncio.sleep(0.1)
    await pipeline.settle(SETTLE_S)

    await assert_reset_once(pipeline, "FO_KX", before, last)
    assert await market_values(pipeline, portfolios, "FO_KX", w + DAY) == {
        p: quantity(i) * D("31.25") for i, p in enumerate(portfolios)}
    jobs = await assert_jobs_complete(pipeline, "price|FO_KX", w + DAY)
    resumed = [j for j in jobs if j.attempt_count == 2]
    assert resumed, f"no job was resumed after the kill: {jobs}"
    assert all("resumed after an interruption" in (j.failure_reason or "") for j in resumed)
