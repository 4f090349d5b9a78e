"""Scale-out on one machine: two positions workers and two valuation workers share the
partitions (as `epochflow up --workers positions=2 --workers valuation=2` runs them); one
of each is SIGKILLed mid-stream and restarted by the supervisor. Every transaction must be
in PostgreSQL exactly once, every key's history, position and daily snapshots exactly
what the published trades and prices make them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.ports import port_open
from epochflow.devstack.stack import EmbeddedStack
from epochflow.sinks.reads.api import fetch_position_history, fetch_snapshots
from epochflow.sinks.reads.scenario import fetch_positions, fetch_transactions
from epochflow.topology import ROLE_NAMES
from tests.fixtures.stack import log_tail, running_stack, transaction
from tests.fixtures.valuation import business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

D = Decimal
DAY = timedelta(days=1)
FIRST = date(2026, 5, 4)
LAST = FIRST + 9 * DAY
PORTFOLIOS = [f"SO-P{i}" for i in range(8)]
SECURITIES = [f"SO-S{i}" for i in range(4)]
ROUNDS = 10  # one BUY per key and round, the round's day (round 7 books a back-dated trade per key)


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES, workers_per_role={"positions": 2, "valuation": 2}) as running:
        yield running


def quantity(p: int, s: int, r: int) -> Decimal:
    return D(1 + (p + 2 * s + 3 * r) % 5)


def price_of(s: int, day: date) -> Decimal:
    return D(10 + s) + D((day - FIRST).days) / 4


def trades_of_round(r: int) -> list:
    trades = []
    for p, portfolio_id in enumerate(PORTFOLIOS):
        for s, security_id in enumerate(SECURITIES):
            on = FIRST + r * DAY if r < 8 else FIRST + (r - 6) * DAY  # rounds 8, 9: back-dated to days 2, 3
            trades.append(transaction(f"{portfolio_id}-{security_id}-R{r}", portfolio_id, security_id, "BUY", on,
                                      quantity(p, s, r), price_of(s, on), hour=10 + r))
    return trades


def events_processed(port: int, stage: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=5).read().decode()
    found = re.search(rf'epochflow_events_total{{stage="{re.escape(stage)}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def live_state(port: int, portfolio_id: str, security_id: str) -> dict:
    url = f"http://127.0.0.1:{port}/live/positions/{portfolio_id}/{security_id}/"
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


async def kill_and_wait(stack: EmbeddedStack, name: str) -> None:
    pid = stack.supervisor.kill(name)
    await asyncio.to_thread(stack.supervisor.wait_for_pid, name, pid, 30)
    port = next(w.web_port for w in stack.workers if w.name == name)
    deadline = time.monotonic() + 60
    while not port_open(port):
        assert time.monotonic() < deadline, f"{name} not serving again:\n{log_tail(stack, name)}"
        await asyncio.sleep(0.1)


async def test_two_workers_per_role_with_one_killed_lose_and_double_nothing(stack: EmbeddedStack) -> None:
    positions = [w for w in stack.workers if w.role == "positions"]
    valuation = [w for w in stack.workers if w.role == "valuation"]
    assert len(positions) == 2 and len(valuation) == 2

    pipeline = await Pipeline.connect(stack.settings)
    try:
        await pipeline.publish([instrument(s) for s in SECURITIES] + [portfolio(p, FIRST) for p in PORTFOLIOS]
                               + [price(s, d, price_of(i, d)) for i, s in enumerate(SECURITIES) for d in days(FIRST, LAST)])
        for r in range(4):
            await pipeline.publish(trades_of_round(r) + business_dates(FIRST + r * DAY, FIRST + r * DAY))
        await pipeline.settle(180)
        for worker in positions:  # both workers own partitions and did work
            assert events_processed(worker.web_port, "positions.apply") > 0, f"{worker.name} processed nothing"
        for worker in valuation:
            assert events_processed(worker.web_port, "valuation.value") > 0, f"{worker.name} valued nothing"

        for r in range(4, ROUNDS):
            await pipeline.publish(trades_of_round(r) + business_dates(FIRST + min(r, 9) * DAY, FIRST + min(r, 9) * DAY))
            if r == 5:
                await kill_and_wait(stack, positions[0].name)
            if r == 6:
                await kill_and_wait(stack, valuation[1].name)
        await pipeline.publish(business_dates(LAST, LAST))
        await pipeline.settle(240)

        published = {t.transaction_id for r in range(ROUNDS) for t in trades_of_round(r)}
        stored = [t for t in await fetch_transactions(pipeline.engine) if t.portfolio_id in PORTFOLIOS]
        assert sorted(t.transaction_id for t in stored) == sorted(published)

        for _p, portfolio_id in enumerate(PORTFOLIOS):
            for s, security_id in enumerate(SECURITIES):
                trades = sorted((t for r in range(ROUNDS) for t in trades_of_round(r) if t.portfolio_id == portfolio_id
                                 and t.security_id == security_id), key=lambda t: (t.transaction_date, t.transaction_id))
                [state] = await fetch_positions(pipeline.engine, portfolio_id, security_id)
                assert (state.status, state.watermark_date) == ("CURRENT", LAST), state
                assert state.quantity == sum(t.quantity for t in trades)
                assert state.cost_basis == sum(t.gross_amount for t in trades)
                history = await fetch_position_history(pipeline.engine, portfolio_id, security_id, epoch=state.epoch)
                assert [h.transaction_id for h in history] == [t.transaction_id for t in trades]
                snapshots = await fetch_snapshots(pipeline.engine, portfolio_id, security_id, epoch=state.epoch)
                assert [x.date for x in snapshots] == days(FIRST, LAST)
                for snapshot in snapshots:
                    held = sum(t.quantity for t in trades if t.transaction_date.date() <= snapshot.date)
                    assert (snapshot.quantity, snapshot.market_value) == (held, held * price_of(s, snapshot.date)), snapshot
        # the live view answers on either positions worker, from the worker that owns the key
        for portfolio_id, security_id in ((PORTFOLIOS[0], SECURITIES[0]), (PORTFOLIOS[3], SECURITIES[2]),
                                          (PORTFOLIOS[7], SECURITIES[3])):
            [state] = await fetch_positions(pipeline.engine, portfolio_id, security_id)
            owners = set()
            for worker in positions:
                live = live_state(worker.web_port, portfolio_id, security_id)
                assert (live["epoch"], live["status"], live["watermark_date"], D(live["quantity"])) == (
                    state.epoch, state.status, state.watermark_date.isoformat(), state.quantity)
                owners.add(live["served_by"])
            assert len(owners) == 1, owners
        for name in (positions[0].name, valuation[1].name):
            assert stack.supervisor.status(name).restarts == 1, f"{name} crashed by itself:\n{log_tail(stack, name)}"
    finally:
        await pipeline.close()

