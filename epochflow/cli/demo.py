"""`epochflow demo` (`make demo`): a month of a small investment manager's data through a
fresh embedded stack, some trades booked late, then the resulting book."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from epochflow.cli.demo_data import demo_events
from epochflow.cli.pipeline import Pipeline
from epochflow.sinks import reads


def _money(value: Decimal | None) -> str:
    return "waiting" if value is None else f"{value:,.2f}"


def _qty(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def run_demo(echo: Callable[[str], None] = print) -> int:
    from epochflow.cli.stack import EmbeddedStack

    events = demo_events()
    transactions = sum(1 for e in events if e.type == "transaction")
    echo(f"epochflow demo: {len(events)} events ({transactions} transactions, 3 portfolios in USD/EUR/GBP, "
         f"6 instruments in 4 currencies, daily FX); a tenth of the trades arrive late")
    with tempfile.TemporaryDirectory(prefix="epochflow-demo-") as directory:
        echo("starting the embedded stack (broker, PostgreSQL, workers)...")
        started = time.monotonic()
        async with EmbeddedStack(Path(directory)) as stack:
            echo(f"  up in {time.monotonic() - started:.1f}s: kafka {stack.kafka_url}")
            pipeline = await Pipeline.connect(stack.settings)
            try:
                await pipeline.quiesce(180)  # the workers have joined their groups
                t0 = time.monotonic()
                await pipeline.publish(events)
                await pipeline.quiesce(180)
                echo(f"  {len(events)} events processed and in PostgreSQL in {time.monotonic() - t0:.1f}s")
                await _print_book(pipeline, echo)
            finally:
                await pipeline.close()
        echo("stack stopped; nothing left running.")
    return 0


async def _print_book(pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    rows = await reads.positions_overview(pipeline.engine)
    header = f"{'portfolio':<20}{'security':<9}{'quantity':>10}{'cost (local)':>16}{'cost (base)':>16}{'realized (base)':>17}  held since"
    echo("")
    echo(header)
    echo("-" * len(header))
    current = None
    for row in rows:
        portfolio = row["portfolio_id"] if row["portfolio_id"] != current else ""
        current = row["portfolio_id"]
        echo(
            f"{portfolio:<20}{row['security_id']:<9}{_qty(row['quantity']):>10}{_money(row['cost_basis_local']):>16}"
            f"{_money(row['cost_basis']):>16}{_money(row['realized_gain_loss']):>17}  {row['held_since_date'] or '-'}"
        )
    flagged = await reads.flagged_transactions(pipeline.engine)
    echo("")
    echo(f"{len(rows)} positions; transactions still flagged (e.g. a SELL before its BUY arrived): {len(flagged)}")
