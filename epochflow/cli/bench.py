"""Benchmarks (`epochflow bench ...`): figures as ratios against a baseline measured in
the same invocation on the same stack, since these machines are noisy."""

from __future__ import annotations

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
