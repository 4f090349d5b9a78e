"""Benchmarks (`epochflow bench ...`): figures as ratios against a baseline measured in
the same invocation on the same stack, since these machines are noisy."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from epochflow.cli.pipeline import BARRIER_STAGES, Pipeline
from epochflow.schemas.events import InstrumentEvent, PortfolioEvent, TransactionEvent
from epochflow.sinks import reads
from epochflow.streams.names import topic_name
from epochflow.streams.publish import route

START = date(2024, 1, 1)
SECURITIES_PER_PORTFOLIO = 10


def ingest_workload(prefix: str, transactions: int, keys: int) -> tuple[list, list]:
    """Reference events and `transactions` trades over `keys` keys, interleaved across keys
    as a live feed is, each key's trades one day apart (BUYs, every fourth a SELL)."""
    portfolios = max(1, (keys + SECURITIES_PER_PORTFOLIO - 1) // SECURITIES_PER_PORTFOLIO)
    reference: list = [PortfolioEvent(portfolio_id=f"{prefix}P{p}", base_currency="USD") for p in range(portfolios)]
    reference += [InstrumentEvent(security_id=f"S{s}", currency="USD") for s in range(SECURITIES_PER_PORTFOLIO)]
    trades: list = []
    for n in range(transactions):
        key, round_ = n % keys, n // keys
        selling = round_ % 4 == 3
        stamp = datetime.combine(START + timedelta(days=round_), dtime(10), tzinfo=timezone.utc)
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


async def _timed_publish(pipeline: Pipeline, events: list, topic_short: str | None, stages: dict[str, str]) -> float:
    started = time.monotonic()
    for event in events:
        for routed in route(event, pipeline.settings):
            topic = topic_name(pipeline.settings, topic_short) if topic_short else routed.topic
            await pipeline.producer.send(topic, routed.partition, routed.key, routed.value)
    await pipeline.producer.flush()
    await pipeline.quiesce(600, stages)
    return time.monotonic() - started


async def bench_ingest(transactions: int, keys: int, echo: Callable[[str], None] = print) -> dict:
    from epochflow.cli.stack import EmbeddedStack

    echo(f"bench ingest: {transactions} transactions over {keys} keys, positions + sink on the embedded stack")
    with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
        async with EmbeddedStack(Path(directory), roles=("positions", "sink", "naive")) as stack:
            pipeline = await Pipeline.connect(stack.settings)
            naive_stages = {"naive-transactions": "naive.apply", "reference": "naive.reference"}
            try:
                await pipeline.quiesce(180, {**BARRIER_STAGES, **naive_stages})  # every worker has joined
                figures = {"transactions": transactions, "keys": keys}
                for label, prefix, topic, stages in (
                    ("batched", "B", None, BARRIER_STAGES),
                    ("naive", "N", "naive-transactions", naive_stages),
                ):
                    reference, trades = ingest_workload(prefix, transactions, keys)
                    await pipeline.publish(reference)
                    await pipeline.quiesce(180, {**BARRIER_STAGES, **naive_stages})
                    seconds = await _timed_publish(pipeline, trades, topic, stages)
                    rows = await reads.count_position_history(pipeline.engine, epoch=0)
                    rate = transactions / seconds
                    echo(f"  {label:<8} {seconds:7.2f} s  {rate:9.0f} txn/s   (history rows in PostgreSQL so far: {rows})")
                    figures[f"{label}_seconds"] = round(seconds, 3)
                    figures["txn_per_s" if label == "batched" else "naive_txn_per_s"] = round(rate, 1)
            finally:
                await pipeline.close()
    figures["ratio"] = round(figures["txn_per_s"] / figures["naive_txn_per_s"], 2)
    echo(f"  ratio batched / naive: {figures['ratio']:.2f}x (target >= 2.5)")
    return figures


# ---- bench replay -----------------------------------------------------------------------

def replay_workload(h: int) -> tuple[list, tuple[str, str]]:
    """One key with `h` trades, one a day over `h` days (date ranges match the history
    length), a price every day, business dates up to the last day."""
    from epochflow.schemas.events import BusinessDateEvent, MarketPriceEvent

    portfolio, security = f"RP{h}", "RPL"
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
            transaction_date=datetime.combine(START + timedelta(days=n), dtime(9), tzinfo=timezone.utc),
            quantity=Decimal(3 if selling else 5), price=Decimal(100), gross_amount=Decimal(300 if selling else 500),
            trade_fee=Decimal(0), trade_currency="USD",
        ))
    events.append(BusinessDateEvent(date=START + timedelta(days=h - 1)))
    return events, (portfolio, security)


async def _wait_current(pipeline: Pipeline, portfolio: str, security: str, epoch: int, days: int, timeout: float) -> float:
    """Seconds until the key is CURRENT in `epoch` at the business date with every snapshot."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = await reads.fetch_positions(pipeline.engine, portfolio, security)
        if state and state[0].epoch >= epoch and state[0].status == "CURRENT" and state[0].watermark_date == pipeline.business_date:
            if await reads.count_snapshots(pipeline.engine, portfolio, security, state[0].epoch) >= days:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{portfolio}|{security} not CURRENT in epoch {epoch} within {timeout}s")


async def bench_replay(histories: tuple[int, ...], echo: Callable[[str], None] = print) -> dict:
    """Per history length H (its own fresh stack): load and value H days, then back-date a
    trade at 10%, 50% and 90% of the history and time until the key is CURRENT again with
    every snapshot of the new epoch in PostgreSQL."""
    from epochflow.cli.stack import EmbeddedStack

    echo(f"bench replay: one key per H = {', '.join(map(str, histories))} (H trades over H days, daily prices); "
         "a back-dated trade at 10%, 50% and 90% of the history")
    table: list[dict] = []
    for h in histories:
        events, (portfolio, security) = replay_workload(h)
        with tempfile.TemporaryDirectory(prefix="epochflow-bench-") as directory:
            async with EmbeddedStack(Path(directory)) as stack:
                pipeline = await Pipeline.connect(stack.settings)
                try:
                    await pipeline.quiesce(180)
                    started = time.monotonic()
                    await pipeline.publish(events)
                    await _wait_current(pipeline, portfolio, security, 0, h, 3600)
                    await pipeline.settle(600)
                    echo(f"  H={h:>6}: loaded and valued {h} days in {time.monotonic() - started:.1f}s")
                    for fraction in (0.1, 0.5, 0.9):
                        state = (await reads.fetch_positions(pipeline.engine, portfolio, security))[0]
                        offset = int(h * fraction)
                        late = TransactionEvent(
                            transaction_id=f"{portfolio}-LATE-{int(fraction * 100)}", portfolio_id=portfolio,
                            security_id=security, transaction_type="BUY",
                            transaction_date=datetime.combine(START + timedelta(days=offset), dtime(16), tzinfo=timezone.utc),
                            quantity=Decimal(1), price=Decimal(100), gross_amount=Decimal(100), trade_fee=Decimal(0),
                            trade_currency="USD",
                        )
                        t0 = time.monotonic()
                        await pipeline.publish([late])
                        await _wait_current(pipeline, portfolio, security, state.epoch + 1, h, 3600)
                        seconds = time.monotonic() - t0
                        table.append({"H": h, "at": f"{int(fraction * 100)}%", "days_revalued": h - offset,
                                      "seconds": round(seconds, 3)})
                        echo(f"  H={h:>6}  back-dated at {int(fraction * 100):>2}%  {h - offset:>6} days revalued  {seconds:8.2f}s")
                        await pipeline.settle(600)
                finally:
                    await pipeline.close()
    largest = max(histories)
    at = {row["at"]: row["seconds"] for row in table if row["H"] == largest}
    ratio = round(at["90%"] / at["10%"], 3)
    echo(f"  ratio 90% / 10% at H={largest}: {ratio} (target <= 0.25: the cost follows the days after the back-dated date)")
    return {"histories": list(histories), "table": table, "ratio_90_vs_10": ratio}
