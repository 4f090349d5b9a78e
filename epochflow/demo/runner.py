"""`epochflow demo` (`make demo`): a month of a small investment manager's data through a
fresh embedded stack (some trades booked late), the resulting book, then a trade that
arrives three days late and the repair it sets off. With `keep_running` the stack then
stays up, its pages printed, until Ctrl-C (or SIGTERM) stops it."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from epochflow.client import Pipeline
from epochflow.demo.data import (
    MODEL_PORTFOLIOS,
    PORTFOLIOS,
    WIDELY_HELD,
    demo_events,
    late_trade,
    model_portfolio_id,
    price_correction,
)
from epochflow.sinks.reads.api import fanout_progress, fetch_reprocessing_jobs, fetch_snapshots
from epochflow.sinks.reads.changes import key_day_changes
from epochflow.sinks.reads.overview import flagged_transactions, positions_overview
from epochflow.sinks.reads.query import read_at
from epochflow.sinks.reads.scenario import fetch_positions, snapshot_current_epoch


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _qty(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def run_demo(echo: Callable[[str], None] = print, keep_running: bool = False) -> int:
    from epochflow.devstack.stack import EmbeddedStack

    events = demo_events()
    transactions = sum(1 for e in events if e.type == "transaction")
    echo(f"epochflow demo: {len(events)} events ({transactions} transactions, 3 portfolios in USD/EUR/GBP and "
         f"{MODEL_PORTFOLIOS} model portfolios holding {WIDELY_HELD}, 6 instruments in 4 currencies, daily prices and "
         f"FX); a tenth of the trades arrive late")
    with tempfile.TemporaryDirectory(prefix="epochflow-demo-") as directory:
        echo("starting the embedded stack (broker, PostgreSQL, positions/scheduler/valuation/fanout/sink/api workers)...")
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
                before_late = await _system_time(pipeline)
                late_key_day = await _late_trade_story(pipeline, echo)
                corrected = await _price_correction_story(pipeline, events, echo)
                await _audit_story(pipeline, stack, before_late, late_key_day, corrected, echo)
                if keep_running:
                    await _serve_until_stopped(stack, echo)
            finally:
                await pipeline.close()
        echo("stack stopped; nothing left running.")
    return 0


def page_urls(stack) -> dict[str, str]:
    """The pages of the running stack's api worker, by what they show."""
    api = next(w for w in stack.workers if w.role == "api")
    host = stack.settings.web_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{host}:{api.web_port}"
    return {
        "dashboard": f"{base}/dashboard/",
        "API docs": f"{base}/docs/",
        "portfolio": f"{base}/portfolios/{PORTFOLIOS[0][0]}/page/",
    }


async def _serve_until_stopped(stack, echo: Callable[[str], None]) -> None:
    """Print where to look, then wait until the command is interrupted: Ctrl-C (SIGTERM,
    SIGHUP) cancels this wait, and the caller's `async with` stops the stack."""
    echo("")
    echo("the stack stays up:")
    for name, url in page_urls(stack).items():
        echo(f"  {name:<10} {url}")
    echo(f"  more data  epochflow ingest --data-dir {stack.data_dir} --wait FILE...  (in another shell)")
    echo("Ctrl-C stops everything.")
    await asyncio.Event().wait()


async def _print_book(pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    rows = [r for r in await positions_overview(pipeline.engine, pipeline.business_date)
            if not r["portfolio_id"].startswith("MODEL_")]
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
    flagged = await flagged_transactions(pipeline.engine)
    echo(f"{len(rows)} positions (and {MODEL_PORTFOLIOS} model portfolios holding {WIDELY_HELD}); "
         f"transactions still flagged (oversold or waiting for FX): {len(flagged)}")


async def _late_trade_story(pipeline: Pipeline, echo: Callable[[str], None]) -> tuple[str, str, date]:
    trade = late_trade()
    p, s = trade.portfolio_id, trade.security_id
    before = (await fetch_positions(pipeline.engine, p, s))[0]
    old = {r.date: r for r in await fetch_snapshots(pipeline.engine, p, s, epoch=before.epoch)}
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
        seen = (await fetch_positions(pipeline.engine, p, s))[0]
    echo(f"  moments later: epoch {seen.epoch}, {seen.status}, watermark {seen.watermark_date} "
         "(the history is replayed under the new epoch and the days from the trade date revalued)")
    await pipeline.settle(300)
    after = (await fetch_positions(pipeline.engine, p, s))[0]
    echo(f"  settled: epoch {after.epoch}, {after.status}, watermark {after.watermark_date}, "
         f"quantity {_qty(after.quantity)}, cost {_money(after.cost_basis)}")
    new = await fetch_snapshots(pipeline.engine, p, s, epoch=after.epoch)
    echo(f"  {'date':<12}{'qty before':>11}{'MV before':>15}{'qty after':>11}{'MV after':>15}  status")
    for row in new[-6:]:
        was = old.get(row.date)
        echo(f"  {row.date.isoformat():<12}{_qty(was.quantity) if was else '-':>11}{_money(was.market_value) if was else '-':>15}"
             f"{_qty(row.quantity):>11}{_money(row.market_value):>15}  {row.valuation_status}")
    echo(f"  epoch {after.epoch} holds {len(new)} snapshots, every day from the first trade "
         f"(days before the late trade carried over, the rest recomputed)")
    return p, s, new[-1].date


async def _price_correction_story(pipeline: Pipeline, events: list, echo: Callable[[str], None]) -> tuple[str, str, date]:
    correction, old_price = price_correction(events)
    day, security = correction.price_date, correction.security_id
    holders = [r for r in await fetch_positions(pipeline.engine, security_id=security)]
    before = {r.portfolio_id: await snapshot_current_epoch(pipeline.engine, r.portfolio_id, security, day) for r in holders}
    echo("")
    echo(f"the price vendor corrects {security}'s close of {day} (a week back) from {old_price} to {correction.price}; "
         f"{len(holders)} portfolios hold {security}")
    await pipeline.publish([correction])
    started = time.monotonic()
    shown = ""
    while time.monotonic() - started < 300:
        progress = await fanout_progress(pipeline.engine)
        states = await fetch_positions(pipeline.engine, security_id=security)
        reprocessing = sum(1 for r in states if r.status == "REPROCESSING")
        jobs = progress["pending"] + progress["processing"]
        line = (f"  {time.monotonic() - started:5.1f}s  RESET_WATERMARKS jobs open {jobs}, done {progress['complete']}; "
                f"keys reset {progress['keys_reset']}/{progress['keys_total']} (open jobs); {reprocessing} keys REPROCESSING")
        if line.split("s ", 1)[1] != shown:
            echo(line)
            shown = line.split("s ", 1)[1]
        if progress["complete"] and not jobs and not reprocessing:
            break
        await asyncio.sleep(0.25)
    await pipeline.settle(300)
    echo(f"  settled in {time.monotonic() - started:.1f}s; the jobs, as operators see them in reprocessing_jobs:")
    for job in sorted(await fetch_reprocessing_jobs(pipeline.engine, security_id=security), key=lambda j: j.job_id):
        echo(f"    {job.job_id:<22} {job.status:<9} from {job.earliest_impacted_date}  keys {job.keys_reset}/{job.keys_total}"
             f"  attempts {job.attempt_count}")
    echo(f"  {'portfolio':<20}{'MV ' + day.isoformat() + ' before':>24}{'after':>14}{'epoch':>7}  status")
    shown_portfolios = [r.portfolio_id for r in holders if not r.portfolio_id.startswith("MODEL_")]
    shown_portfolios += [model_portfolio_id(m) for m in (0, 1, MODEL_PORTFOLIOS - 1)]
    total_before = total_after = Decimal(0)
    for row in holders:
        after = await snapshot_current_epoch(pipeline.engine, row.portfolio_id, security, day)
        was = before.get(row.portfolio_id)
        total_before += (was or {}).get("market_value") or 0
        total_after += (after or {}).get("market_value") or 0
        if row.portfolio_id in shown_portfolios:
            state = (await fetch_positions(pipeline.engine, row.portfolio_id, security))[0]
            echo(f"  {row.portfolio_id:<20}{_money(was['market_value'] if was else None):>24}"
                 f"{_money(after['market_value'] if after else None):>14}{state.epoch:>7}  {state.status}")
    echo(f"  all {len(holders)} holders: {security} on {day} was worth {_money(total_before)}, now {_money(total_after)}"
         " (revalued in place: same epochs, the days from the correction valued again)")
    return shown_portfolios[0], security, day


async def _system_time(pipeline: Pipeline) -> datetime:
    """The system time of a read made now (what `as_at` takes to read it again)."""
    async with read_at(lambda: pipeline.engine) as reading:
        await fetch_positions(pipeline.engine)
    assert reading.at is not None
    return reading.at


async def _audit_story(pipeline: Pipeline, stack, before_late: datetime, late: tuple[str, str, date],
                       corrected: tuple[str, str, date], echo: Callable[[str], None]) -> None:
    """What an auditor asks next: what did we show before, and why is it different now."""
    p, s, day = late
    async with read_at(lambda: pipeline.engine, before_late):
        then = {r.date: r for r in await fetch_snapshots(pipeline.engine, p, s)}
    now = {r.date: r for r in await fetch_snapshots(pipeline.engine, p, s)}
    was, is_ = then.get(day), now.get(day)
    echo("")
    echo(f"an auditor asks what we reported for {p} / {s} on {day} before the late trade, and why it changed")
    echo(f"  as at {before_late.isoformat()}: quantity {_qty(was.quantity) if was else '-'}, market value "
         f"{_money(was.market_value) if was else '-'} (epoch {was.epoch if was else '-'})")
    echo(f"  now: quantity {_qty(is_.quantity) if is_ else '-'}, market value {_money(is_.market_value) if is_ else '-'} "
         f"(epoch {is_.epoch if is_ else '-'})")
    api = page_urls(stack)["dashboard"].removesuffix("/dashboard/")
    for portfolio, security, on in (late, corrected):
        echo(f"  why {portfolio} / {security} on {on} changed (GET {api}/positions/{quote(portfolio, safe='')}/"
             f"{quote(security, safe='')}/changes/?date={on}):")
        for change in await key_day_changes(pipeline.engine, portfolio, security, on) or []:
            moved = ", ".join(f"{name} {_shown(before)} -> {_shown(after)}"
                              for name, (before, after) in change.differences.items()
                              if name in ("quantity", "market_price", "market_value"))
            echo(f"    {change.system_time.isoformat()}  epoch {change.epoch}  {change.cause.kind}: "
                 f"{change.cause.description}" + (f"  [{moved}]" if moved else ""))
    echo(f"  (any read takes ?as_at=<time>: e.g. GET {api}/positions/{quote(p, safe='')}/{quote(s, safe='')}/snapshots/"
         f"?as_at={quote(before_late.isoformat(), safe='')})")


def _shown(value) -> str:
    if value is None:
        return "-"
    return _qty(value) if isinstance(value, Decimal) else str(value)
