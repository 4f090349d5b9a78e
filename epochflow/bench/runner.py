"""The benchmark runs (`epochflow bench ...`): figures as ratios against a baseline measured
in the same invocation on the same stack, since these machines are noisy."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from epochflow.bench.baseline import NAIVE, NAIVE_STAGES, NAIVE_TOPIC, topic_specs, worker_command
from epochflow.bench.floor import decode_seconds, fanout_floor, ingest_floor, overhead, replay_floor
from epochflow.bench.footprint import footprint, footprint_table
from epochflow.bench.profile import Profiler
from epochflow.bench.workloads import (
    FANOUT_SECURITY,
    LIVE_KEYS,
    LiveStream,
    fanout_workload,
    ingest_workload,
    late_trade,
    month_workload,
    replay_workload,
)
from epochflow.client import BARRIER_STAGES, Pipeline
from epochflow.sinks.reads.api import count_valuation_jobs, fanout_progress
from epochflow.sinks.reads.scenario import count_position_history, count_snapshots, fetch_positions
from epochflow.sinks.writer import ResultWriter
from epochflow.streams.names import topic_name
from epochflow.streams.publish import route


async def _timed_publish(pipeline: Pipeline, events: list, topic_short: str | None, stages: dict[str, str]) -> float:
    started = time.monotonic()
    for event in events:
        for routed in route(event, pipeline.settings):
            topic = topic_name(pipeline.settings, topic_short) if topic_short else routed.topic
            await pipeline.producer.send(topic, routed.partition, routed.key, routed.value)
    await pipeline.producer.flush()
    await pipeline.quiesce(600, stages)
    return time.monotonic() - started


FLOOR_PREFIX = "FL"  # the floor's own portfolios: its rows share the engine's database, never its keys
FLOOR_SECURITY = "FLOOR_SEC"


async def _ingest_floor(pipeline: Pipeline, transactions: int, keys: int, engine_s: float,
                        echo: Callable[[str], None]) -> dict:
    """The same trades costed by the domain core in this process, their rows written by the
    sink's writer; and the time to decode them from the JSON the engine receives."""
    reference, trades = ingest_workload(FLOOR_PREFIX, transactions, keys)
    timing = await ingest_floor(ResultWriter(pipeline.engine), reference, trades)
    decode_s = decode_seconds([routed.value for trade in trades for routed in route(trade, pipeline.settings)])
    figures = {
        "floor_s": round(timing.floor_s, 3), "floor_domain_s": round(timing.domain_s, 3),
        "floor_write_s": round(timing.write_s, 3), "overhead": overhead(engine_s, timing.floor_s),
        "floor_us_per_txn": round(timing.floor_s / transactions * 1e6, 1),
        "decode_us_per_txn": round(decode_s / transactions * 1e6, 1),
        "floor_vs_decode": round(timing.floor_s / decode_s, 2) if decode_s > 0 else float("inf"),
    }
    echo(f"  {'floor':<8} {timing.floor_s:7.2f} s  {transactions / timing.floor_s:9.0f} txn/s   (domain core "
         f"{timing.domain_s:.2f} s, PostgreSQL {timing.write_s:.2f} s, {timing.rows} rows)")
    echo(f"  overhead batched / floor: {figures['overhead']:.2f}x (target <= 3)")
    echo(f"  floor per trade {figures['floor_us_per_txn']:.1f} us = {figures['floor_vs_decode']:.2f}x decoding it "
         f"({figures['decode_us_per_txn']:.1f} us; target <= 4)")
    return figures


async def bench_ingest(transactions: int, keys: int, echo: Callable[[str], None] = print, profile: bool = False) -> dict:
    from epochflow.devstack.stack import EmbeddedStack

    echo(f"bench ingest: {transactions} transactions over {keys} keys, positions + sink on the embedded stack")
    with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
        async with EmbeddedStack(Path(directory), roles=("positions", "sink", NAIVE.name), command=worker_command,
                                 topics=topic_specs) as stack:
            pipeline = await Pipeline.connect(stack.settings)
            profiler = Profiler(stack, profile)
            try:
                await pipeline.quiesce(180, {**BARRIER_STAGES, **NAIVE_STAGES})  # every worker has joined
                figures: dict = {"transactions": transactions, "keys": keys}
                for label, prefix, topic, stages in (
                    ("batched", "B", None, BARRIER_STAGES),
                    ("naive", "N", NAIVE_TOPIC, NAIVE_STAGES),
                ):
                    reference, trades = ingest_workload(prefix, transactions, keys)
                    await pipeline.publish(reference)
                    await pipeline.quiesce(180, {**BARRIER_STAGES, **NAIVE_STAGES})
                    if label == "batched":
                        await profiler.start()
                    seconds = await _timed_publish(pipeline, trades, topic, stages)
                    if label == "batched" and profiler.enabled:
                        figures["profile"] = await profiler.stop(echo, "the batched run")
                    rows = await count_position_history(pipeline.engine, epoch=0)
                    rate = transactions / seconds
                    echo(f"  {label:<8} {seconds:7.2f} s  {rate:9.0f} txn/s   (history rows in PostgreSQL so far: {rows})")
                    figures[f"{label}_seconds"] = round(seconds, 3)
                    figures["txn_per_s" if label == "batched" else "naive_txn_per_s"] = round(rate, 1)
                figures["engine_s"] = figures["batched_seconds"]
                figures.update(await _ingest_floor(pipeline, transactions, keys, figures["engine_s"], echo))
            finally:
                await pipeline.close()
    figures["ratio"] = round(figures["txn_per_s"] / figures["naive_txn_per_s"], 2)
    echo(f"  ratio batched / naive: {figures['ratio']:.2f}x (target >= 2.5)")
    return figures


HOT_KEY_TRADES = 5000  # one key's trades in one month
SPREAD_TRADES = 50  # each key's, in the baseline of the same total


async def bench_hot_key(echo: Callable[[str], None] = print, profile: bool = False) -> dict:
    """The cost per trade of one key taking 5,000 trades in one month, against the same
    5,000 trades spread over 100 keys taking 50 each, through positions and sink."""
    from epochflow.devstack.stack import EmbeddedStack

    echo(f"bench ingest --hot-key: {HOT_KEY_TRADES} trades in one month on one key, against "
         f"{HOT_KEY_TRADES // SPREAD_TRADES} keys x {SPREAD_TRADES}, positions + sink on the embedded stack")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
        async with EmbeddedStack(Path(directory), roles=("positions", "sink")) as stack:
            pipeline = await Pipeline.connect(stack.settings)
            profiler = Profiler(stack, profile)
            try:
                await pipeline.quiesce(180, BARRIER_STAGES)
                for label, prefix, keys, per_key in (("spread", "HS", HOT_KEY_TRADES // SPREAD_TRADES, SPREAD_TRADES),
                                                      ("hot", "HH", 1, HOT_KEY_TRADES)):
                    reference, trades = month_workload(prefix, keys, per_key)
                    await pipeline.publish(reference)
                    await pipeline.quiesce(180, BARRIER_STAGES)
                    if label == "hot":
                        await profiler.start()
                    seconds = await _timed_publish(pipeline, trades, None, BARRIER_STAGES)
                    if label == "hot" and profiler.enabled:
                        figures["profile"] = await profiler.stop(echo, "the hot key")
                    us = seconds / len(trades) * 1e6
                    figures[f"{label}_seconds"] = round(seconds, 3)
                    figures[f"{label}_us_per_txn"] = round(us, 1)
                    echo(f"  {label:<7} {keys:>4} keys x {per_key:>5} trades: {seconds:7.2f} s  {us:8.1f} us a trade")
            finally:
                await pipeline.close()
    figures["hot_vs_spread"] = round(figures["hot_us_per_txn"] / figures["spread_us_per_txn"], 2)
    echo(f"  cost per trade, hot / spread: {figures['hot_vs_spread']:.2f}x (target <= 1.5)")
    return figures


# ---- bench replay -----------------------------------------------------------------------

async def _wait_current(pipeline: Pipeline, portfolio: str, security: str, epoch: int, days: int, timeout: float) -> float:
    """Seconds until the key is CURRENT in `epoch` at the business date with every snapshot."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = await fetch_positions(pipeline.engine, portfolio, security)
        if state and state[0].epoch >= epoch and state[0].status == "CURRENT" and state[0].watermark_date == pipeline.business_date:
            if await count_snapshots(pipeline.engine, portfolio, security, state[0].epoch) >= days:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{portfolio}|{security} not CURRENT in epoch {epoch} within {timeout}s")


REPLAY_AT = (0.1, 0.5, 0.9)


async def bench_replay(histories: tuple[int, ...], echo: Callable[[str], None] = print, profile: bool = False) -> dict:
    """Per history length H (its own fresh stack): load and value H days, then back-date a
    trade at 10%, 50% and 90% of the history and time until the key is CURRENT again with
    every snapshot of the new epoch in PostgreSQL. Then the same on a key of its own
    through the floor (epochflow.bench.floor)."""
    from epochflow.devstack.stack import EmbeddedStack

    echo(f"bench replay: one key per H = {', '.join(map(str, histories))} (H trades over H days, daily prices); "
         "a back-dated trade at 10%, 50% and 90% of the history")
    table: list[dict] = []
    profiles: list[dict] = []
    for h in histories:
        events, (portfolio, security) = replay_workload(h)
        with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
            async with EmbeddedStack(Path(directory)) as stack:
                pipeline = await Pipeline.connect(stack.settings)
                profiler = Profiler(stack, profile)
                try:
                    await pipeline.quiesce(180)
                    started = time.monotonic()
                    await pipeline.publish(events)
                    await _wait_current(pipeline, portfolio, security, 0, h, 3600)
                    await pipeline.settle(600)
                    echo(f"  H={h:>6}: loaded and valued {h} days in {time.monotonic() - started:.1f}s")
                    await profiler.start()
                    rows: list[dict] = []
                    for fraction in REPLAY_AT:
                        state = (await fetch_positions(pipeline.engine, portfolio, security))[0]
                        offset = int(h * fraction)
                        late = late_trade(portfolio, security, h, fraction)
                        t0 = time.monotonic()
                        await pipeline.publish([late])
                        await _wait_current(pipeline, portfolio, security, state.epoch + 1, h, 3600)
                        seconds = time.monotonic() - t0
                        rows.append({"H": h, "at": f"{int(fraction * 100)}%", "days_revalued": h - offset,
                                     "seconds": round(seconds, 3)})
                        echo(f"  H={h:>6}  back-dated at {int(fraction * 100):>2}%  {h - offset:>6} days revalued  {seconds:8.2f}s")
                        await pipeline.settle(600)
                    if profiler.enabled:
                        profiles.append({"H": h, "budget": await profiler.stop(echo, f"H={h}, the three back-dated trades")})
                    await _replay_floor(pipeline, h, rows, echo)
                    table += rows
                finally:
                    await pipeline.close()
    largest = max(histories)
    at = {row["at"]: row for row in table if row["H"] == largest}
    ratio = round(at["90%"]["seconds"] / at["10%"]["seconds"], 3)
    echo(f"  ratio 90% / 10% at H={largest}: {ratio} (target <= 0.25: the cost follows the days after the back-dated date)")
    first = at["10%"]
    echo(f"  overhead engine / floor at H={largest}, 10%: {first['overhead']:.2f}x (target <= 10)")
    figures = {"histories": list(histories), "table": table, "ratio_90_vs_10": ratio, "engine_s": first["seconds"],
               "floor_s": first["floor_s"], "overhead": first["overhead"]}
    if profile:
        figures["profile"] = profiles
    return figures


async def _replay_floor(pipeline: Pipeline, h: int, rows: list[dict], echo: Callable[[str], None]) -> None:
    """The floor of each of `rows` (one per back-dated trade, in REPLAY_AT order), on a key
    of the same history of its own; adds `floor_s` and `overhead` to each row."""
    events, key = replay_workload(h, prefix=FLOOR_PREFIX)
    timings = await replay_floor(ResultWriter(pipeline.engine), events, key,
                                 [late_trade(*key, h, fraction) for fraction in REPLAY_AT])
    for row, timing in zip(rows, timings, strict=True):
        row["floor_s"] = round(timing.floor_s, 3)
        row["overhead"] = overhead(row["seconds"], timing.floor_s)
        echo(f"  H={h:>6}  back-dated at {row['at']:>3}  floor {timing.floor_s:8.2f}s (domain core {timing.domain_s:.2f}s, "
             f"PostgreSQL {timing.write_s:.2f}s): overhead {row['overhead']:.2f}x")


# ---- bench fanout -----------------------------------------------------------------------

async def _settle_showing_progress(pipeline: Pipeline, expected_jobs: int, echo: Callable[[str], None],
                                   timeout: float = 3600, every_s: float = 10.0) -> None:
    """Settle the pipeline; meanwhile, every `every_s`, how many of the expected valuation
    jobs are COMPLETE, with a rate and an estimate of the time left."""
    async def report() -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(every_s)
            done = await count_valuation_jobs(pipeline.engine, status="COMPLETE")
            elapsed = time.monotonic() - started
            rate = done / elapsed
            left = f", about {(expected_jobs - done) / rate:.0f}s left" if rate > 0 and done < expected_jobs else ""
            echo(f"    {elapsed:6.0f}s  days valued {done:,}/{expected_jobs:,} ({rate:,.0f}/s{left})")

    reporter = asyncio.ensure_future(report())
    try:
        await pipeline.settle(timeout)
    finally:
        reporter.cancel()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


async def _fanout_current(pipeline: Pipeline, generation_before: int) -> int:
    """Keys CURRENT again (up to the business date) after their reset: a scan of the small
    position_state table, cheap enough to poll often."""
    from sqlalchemy import and_, func, select

    from epochflow.sinks.models import position_state as s

    async with pipeline.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(s).where(and_(
            s.c.security_id == FANOUT_SECURITY, s.c.status == "CURRENT", s.c.generation > generation_before,
            s.c.watermark_date == pipeline.business_date)))).scalar_one())


async def _fanout_revalued(pipeline: Pipeline, corrected: date, price: Decimal) -> int:
    """Keys whose corrected day has its new snapshot: a scan of the (large) snapshots table,
    so it is asked only every few seconds and at the end, or the measurement itself would
    load the machine it measures."""
    from sqlalchemy import and_, func, select

    from epochflow.sinks.models import daily_position_snapshots as d

    async with pipeline.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(d).where(and_(
            d.c.security_id == FANOUT_SECURITY, d.c.date == corrected, d.c.market_price == price)))).scalar_one())


async def bench_fanout(sizes: tuple[int, ...], days: int, live_rate: float, idle_s: float,
                       echo: Callable[[str], None] = print, worker_env: dict[str, str] | None = None,
                       profile: bool = False) -> dict:
    """Per N (its own fresh stack): N portfolios hold one security for `days` days; a
    corrected price `days - 10` days back is fanned out to all of them. Times the fan-out
    until every key is CURRENT with its revalued snapshots in PostgreSQL, and the latency
    of live trades on other securities during it against the same stream with no fan-out.
    Then the same correction of another security held the same way, through the floor."""
    from epochflow.devstack.stack import EmbeddedStack
    from epochflow.schemas.events import MarketPriceEvent

    back = days - 10
    echo(f"bench fanout: N = {', '.join(map(str, sizes))} portfolios holding one security for {days} days; "
         f"a price corrected {back} days back; live trades at {live_rate:g}/s on {LIVE_KEYS} other keys")
    runs: list[dict] = []
    for n in sizes:
        events, last = fanout_workload(n, days)
        with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
            async with EmbeddedStack(Path(directory), worker_env=worker_env) as stack:
                pipeline = await Pipeline.connect(stack.settings)
                profiler = Profiler(stack, profile)
                budget = None
                try:
                    await pipeline.quiesce(180)
                    started = time.monotonic()
                    await pipeline.publish(events)
                    await _settle_showing_progress(pipeline, n * days, echo)
                    echo(f"  N={n:>6}: loaded and valued {n} keys x {days} days in {time.monotonic() - started:.1f}s")
                    live = LiveStream(pipeline, live_rate, last)
                    idle_until = time.monotonic() + idle_s
                    idle = await live.run(lambda until=idle_until: time.monotonic() >= until)
                    await pipeline.settle(600)

                    corrected = last - timedelta(days=back)
                    new_price = Decimal("1234.5")
                    generation_before = max(r.generation for r in await fetch_positions(pipeline.engine, security_id=FANOUT_SECURITY))
                    done = asyncio.Event()
                    await profiler.start()
                    t0 = time.monotonic()
                    await pipeline.publish([MarketPriceEvent(security_id=FANOUT_SECURITY, price_date=corrected,
                                                             price=new_price, currency="USD")])
                    during_task = asyncio.ensure_future(live.run(done.is_set))
                    shown = 0.0
                    while True:
                        current = await _fanout_current(pipeline, generation_before)
                        if current >= n and await _fanout_revalued(pipeline, corrected, new_price) >= n:
                            break
                        if time.monotonic() - shown >= 2:
                            revalued = await _fanout_revalued(pipeline, corrected, new_price)
                            progress = await fanout_progress(pipeline.engine)
                            echo(f"    {time.monotonic() - t0:6.1f}s  keys reset {progress['keys_reset']}/{progress['keys_total']} "
                                 f"(open jobs)  revalued {revalued}/{n}  CURRENT again {current}/{n}")
                            shown = time.monotonic()
                        if time.monotonic() - t0 > 3600:
                            raise TimeoutError(f"fan-out of N={n} not done within an hour")
                        await asyncio.sleep(0.1)
                    seconds = time.monotonic() - t0
                    done.set()
                    during = await during_task
                    held = footprint(stack.describe(), n + LIVE_KEYS)
                    if profiler.enabled:
                        budget = await profiler.stop(echo, f"N={n}, the fan-out (and the live trades during it)")
                    await pipeline.settle(600)  # the engine's tail must not share the machine with the floor
                    floor_events, _ = fanout_workload(n, days, security=FLOOR_SECURITY, prefix=FLOOR_PREFIX, live=False)
                    floor = await fanout_floor(ResultWriter(pipeline.engine), floor_events, FLOOR_SECURITY, MarketPriceEvent(
                        security_id=FLOOR_SECURITY, price_date=corrected, price=new_price, currency="USD"))
                finally:
                    await pipeline.close()
        revaluations = n * (back + 1)
        run = {
            "portfolios": n, "days": days, "days_revalued": back + 1,
            "seconds_to_current": round(seconds, 3), "revaluations_per_s": round(revaluations / seconds, 1),
            "live_samples_idle": len(idle), "live_samples_fanout": len(during),
            "live_p50_idle_ms": round(percentile(idle, 0.5) * 1000, 1),
            "live_p99_idle_ms": round(percentile(idle, 0.99) * 1000, 1),
            "live_p50_fanout_ms": round(percentile(during, 0.5) * 1000, 1),
            "live_p99_fanout_ms": round(percentile(during, 0.99) * 1000, 1),
        }
        run["live_p99_ratio"] = round(run["live_p99_fanout_ms"] / run["live_p99_idle_ms"], 2)
        run.update(engine_s=run["seconds_to_current"], floor_s=round(floor.floor_s, 3),
                   floor_domain_s=round(floor.domain_s, 3), floor_write_s=round(floor.write_s, 3),
                   overhead=overhead(seconds, floor.floor_s))
        run["footprint"] = held
        if budget is not None:
            run["profile"] = budget
        runs.append(run)
        echo(f"  N={n:>6}: CURRENT again in {seconds:.1f}s, {run['revaluations_per_s']:.0f} revaluations/s; live p50/p99 "
             f"idle {run['live_p50_idle_ms']:.0f}/{run['live_p99_idle_ms']:.0f} ms, during the fan-out "
             f"{run['live_p50_fanout_ms']:.0f}/{run['live_p99_fanout_ms']:.0f} ms: p99 ratio {run['live_p99_ratio']:.2f} (target <= 2)")
        echo(f"  N={n:>6}: floor {floor.floor_s:.2f}s (domain core {floor.domain_s:.2f}s, PostgreSQL {floor.write_s:.2f}s): "
             f"overhead {run['overhead']:.2f}x (target <= 20)")
        echo(f"  N={n:>6}: what each worker holds at the end of the fan-out ({n + LIVE_KEYS} keys):")
        for line in footprint_table(held):
            echo(line)
    largest = runs[-1]
    return {**largest, "runs": runs}
