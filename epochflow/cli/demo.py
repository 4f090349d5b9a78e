"""`epochflow demo` (`make demo`): a month of a small investment manager's data through a
fresh embedded stack (some trades booked late), the resulting book, then a trade that
arrives three days late and the repair it sets off."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from epochflow.cli.demo_data import demo_events, late_trade
from epochflow.cli.pipeline import Pipeline
from epochflow.sinks import reads


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _qty(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def run_demo(echo: Callable[[str], None] = print) -> int:
    from epochflow.cli.stack import EmbeddedStack

    events = demo_events()
    transactions = sum(1 for e in events if e.type == "transaction")
    echo(f"epochflow demo: {len(events)} events ({transactions} transactions, 3 portfolios in USD/EUR/GBP, "
         f"6 instruments in 4 currencies, daily prices and FX); a tenth of the trades arrive late")
    with tempfile.TemporaryDirectory(prefix="epochflow-demo-") as directory:
        echo("starting the embedded stack (broker, PostgreSQL, positions/scheduler/valuation/sink workers)...")
        started = time.monotonic()
        async with EmbeddedStack(Path(directory)) as stack:
            echo(f"  up in {time.monotonic() - started:.1f}s: kafka {stack.kafka_url}")
            pipeline = await Pipeline.connect(stack.settings)
            try:
                await pipeline.quiesce(180)  # every worker has joined its group
                t0 = time.monotonic()
                await pipeline.publish(events)
                await pipeline.settle(600)
                echo(f"  costed, valued and in PostgreSQL in {time.monotonic() - t0:.1f}s")
                await _print_book(pipeline, echo)
                await _late_trade_story(pipeline, echo)
            finally:
                await pipeline.close()
        echo("stack stopped; nothing left running.")
    return 0


async def _print_book(pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    rows = await reads.positions_overview(pipeline.engine, pipeline.business_date)
    header = (f"{'portfolio':<20}{'security':<9}{'quantity':>9}{'cost (base)':>15}{'market value':>15}"
              f"{'unrealized':>13}{'realized':>12}  {'status':<16}held since")
    echo("")
    echo(f"the book on {pipeline.business_date} (base currency of each portfolio)")
    echo(header)
    echo("-" * len(header))
    current = None
    for row in rows:
        portfolio = row["portfolio_id"] if row["portfolio_id"] != current else ""
        current = row["portfolio_id"]
        echo(
            f"{portfolio:<20}{row['security_id']:<9}{_qty(row['quantity']):>9}{_money(row['cost_basis']):>15}"
            f"{_money(row['market_value']):>15}{_money(row['unrealized_gain_loss']):>13}"
            f"{_money(row['realized_gain_loss']):>12}  {row['valuation_status'] or '-':<16}{row['held_since_date'] or '-'}"
        )
    flagged = await reads.flagged_transactions(pipeline.engine)
    echo(f"{len(rows)} positions; transactions still flagged (oversold or waiting for FX): {len(flagged)}")


async def _late_trade_story(pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    trade = late_trade()
    p, s = trade.portfolio_id, trade.security_id
    before = (await reads.fetch_positions(pipeline.engine, p, s))[0]
    old = {r.date: r for r in await reads.fetch_snapshots(pipeline.engine, p, s, epoch=before.epoch)}
    echo("")
    echo(f"a SELL of {_qty(trade.quantity)} {s} in {p} dated {trade.transaction_date.date()} is booked now, "
         f"three days late (business date {pipeline.business_date})")
    echo(f"  before: epoch {before.epoch}, {before.status}, watermark {before.watermark_date}, "
         f"quantity {_qty(before.quantity)}, cost {_money(before.cost_basis)}")
    await pipeline.publish([trade])
    seen = before
    deadline = time.monotonic() + 60
    while seen.epoch == before.epoch and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        seen = (await reads.fetch_positions(pipeline.engine, p, s))[0]
    echo(f"  moments later: epoch {seen.epoch}, {seen.status}, watermark {seen.watermark_date} "
         "(the history is replayed under the new epoch and the days from the trade date revalued)")
    await pipeline.settle(300)
    after = (await reads.fetch_positions(pipeline.engine, p, s))[0]
    echo(f"  settled: epoch {after.epoch}, {after.status}, watermark {after.watermark_date}, "
         f"quantity {_qty(after.quantity)}, cost {_money(after.cost_basis)}")
    new = await reads.fetch_snapshots(pipeline.engine, p, s, epoch=after.epoch)
    echo(f"  {'date':<12}{'qty before':>11}{'MV before':>15}{'qty after':>11}{'MV after':>15}  status")
    for row in new[-6:]:
        was = old.get(row.date)
        echo(f"  {row.date.isoformat():<12}{_qty(was.quantity) if was else '-':>11}{_money(was.market_value) if was else '-':>15}"
             f"{_qty(row.quantity):>11}{_money(row.market_value):>15}  {row.valuation_status}")
    echo(f"  epoch {after.epoch} holds {len(new)} snapshots, every day from the first trade "
         f"(days before the late trade carried over, the rest recomputed)")
