"""`epochflow bench versions`: what keeping every version of the result rows costs, in the
same run: storage growth, write time with the versions against without, and the time of
a current read against the same read as at an earlier time.

A book of K keys x D days (a trade, its history row, the key's state and D valued
snapshots per key) is written through the sink's writer into an embedded PostgreSQL,
then revised R times as the engine revises it: each round corrects the price of every
day (every snapshot valued again in the same epoch), and every other round also books a
back-dated trade on every key (a new epoch: its state, history and transaction rows, the
days before it carried over, the days from it valued again). Every round is written
twice over the same data, once with the versions kept and once with the triggers
disabled (the cost of the versions is the difference), on two databases of one server.
Reads: each key's snapshots, now and as at the time before the first revision.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.devstack.postgres import start_postgres
from epochflow.schemas.results import (
    HistoryCarryOver,
    PositionHistoryRow,
    PositionStateRow,
    ResultRow,
    SnapshotRow,
    TransactionRow,
)
from epochflow.sinks import versions
from epochflow.sinks.models import VERSIONED
from epochflow.sinks.reads.api import fetch_snapshots
from epochflow.sinks.reads.query import read_at
from epochflow.sinks.schema import create_engine, migrate
from epochflow.sinks.writer import ResultWriter

START = date(2025, 1, 1)
DAY = timedelta(days=1)
BATCH = 2000  # rows per write, the sink's batch


def _book(keys: int, days: int, round_: int) -> list[ResultRow]:
    """Round 0: the book; round n: every day repriced, and on even rounds a back-dated
    trade on day n that opens epoch n // 2 on every key."""
    rows: list[ResultRow] = []
    epoch = round_ // 2
    back = (round_ % (days - 1)) + 1
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=round_)
    for k in range(keys):
        p, s = f"P{k % 50}", f"S{k}"
        q = Decimal(100 + epoch)
        if round_ == 0 or round_ % 2 == 0:
            tid = f"T{k}-{round_}"
            day = START if round_ == 0 else START + back * DAY
            rows.append(TransactionRow(
                transaction_id=tid, portfolio_id=p, security_id=s, epoch=epoch, transaction_type="BUY",
                transaction_date=datetime.combine(day, datetime.min.time(), UTC), quantity=Decimal(1 if round_ else 100),
                price=Decimal(10), gross_amount=Decimal(10), trade_fee=Decimal(0), trade_currency="USD",
                net_cost=Decimal(10), net_cost_local=Decimal(10), realized_gain_loss=None, realized_gain_loss_local=None,
                transaction_fx_rate=Decimal(1), updated_at=now, version=round_ + 1))
            if round_:
                rows.append(HistoryCarryOver(portfolio_id=p, security_id=s, from_epoch=epoch - 1, to_epoch=epoch,
                                             before_date=day))
            rows.append(PositionHistoryRow(
                portfolio_id=p, security_id=s, epoch=epoch, transaction_id=tid, position_date=day, seq=round_,
                quantity=q, cost_basis=q * 10, cost_basis_local=q * 10, held_since_date=START, version=round_ + 1))
        price = Decimal(11) + Decimal(round_) / 100
        for d in range(days):
            day = START + d * DAY
            rows.append(SnapshotRow(
                portfolio_id=p, security_id=s, date=day, epoch=epoch, quantity=q, cost_basis=q * 10,
                cost_basis_local=q * 10, market_price=price, market_value=price * q, market_value_local=price * q,
                unrealized_gain_loss=(price - 10) * q, unrealized_gain_loss_local=(price - 10) * q, fx_rate=Decimal(1),
                valuation_status="VALUED_CURRENT", price_date=day, job_version=round_ + 1))
        rows.append(PositionStateRow(
            portfolio_id=p, security_id=s, epoch=epoch, version=round_ + 1, status="CURRENT",
            watermark_date=START + (days - 1) * DAY, quantity=q, cost_basis=q * 10, cost_basis_local=q * 10,
            held_since_date=START, first_open_date=START, last_transaction_date=START, updated_at=now))
    return rows


async def _write(writer: ResultWriter, rows: list[ResultRow]) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        await writer.write(rows[i:i + BATCH])
    return time.perf_counter() - started


async def _set_triggers(engine: AsyncEngine, enabled: bool) -> None:
    async with engine.begin() as conn:
        for table in VERSIONED:
            await conn.execute(text(f"ALTER TABLE {table.name} {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER"))


async def _read_ms(engine: AsyncEngine, keys: int, as_at: datetime | None, api: bool = True) -> float:
    """Median milliseconds of reading one key's snapshots: through `read_at` as the API
    does (`api`), or straight off the table as reads did before versions were kept."""
    times = []
    for k in range(keys):
        started = time.perf_counter()
        if api:
            async with read_at(lambda: engine, as_at):
                await fetch_snapshots(engine, f"P{k % 50}", f"S{k}")
        else:
            await fetch_snapshots(engine, f"P{k % 50}", f"S{k}")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def _run(url_versions: str, url_plain: str, keys: int, days: int, rounds: int,
               echo: Callable[[str], None]) -> dict:
    kept, plain = create_engine(url_versions), create_engine(url_plain)
    try:
        await _set_triggers(plain, False)
        writers = ResultWriter(kept), ResultWriter(plain)
        with_s = without_s = 0.0
        before_revisions: datetime | None = None
        for round_ in range(rounds + 1):
            rows = _book(keys, days, round_)
            with_s += await _write(writers[0], rows)
            without_s += await _write(writers[1], rows)
            if round_ == 0:
                async with read_at(lambda: kept) as reading:
                    await fetch_snapshots(kept, "P0", "S0")
                before_revisions = reading.at
            echo(f"  round {round_}/{rounds}: {len(rows):,} rows written with and without versions")
        sizes = await versions.storage(kept)
        plain_ms = await _read_ms(kept, keys, None, api=False)
        current_ms = await _read_ms(kept, keys, None)
        as_at_ms = await _read_ms(kept, keys, before_revisions)
    finally:
        await kept.dispose()
        await plain.dispose()
    rows_now = sum(size["rows"] for size in sizes.values())
    versions_total = sum(size["versions"] for size in sizes.values())
    table_bytes = sum(size["bytes"] for size in sizes.values())
    versions_bytes = sum(size["versions_bytes"] for size in sizes.values())
    figures = {
        "keys": keys, "days": days, "rounds": rounds,
        "current_rows": rows_now, "versions": versions_total,
        "current_bytes": table_bytes, "versions_bytes": versions_bytes,
        "bytes_per_version": round(versions_bytes / max(versions_total, 1), 1),
        "versions_over_current_bytes": round(versions_bytes / max(table_bytes, 1), 2),
        "write_s": round(with_s, 2), "write_without_versions_s": round(without_s, 2),
        "write_overhead": round(with_s / max(without_s, 1e-9), 2),
        "read_unversioned_ms": round(plain_ms, 2), "read_current_ms": round(current_ms, 2),
        "read_as_at_ms": round(as_at_ms, 2), "current_over_unversioned": round(current_ms / max(plain_ms, 1e-9), 2),
        "as_at_over_current": round(as_at_ms / max(current_ms, 1e-9), 2),
        "per_table": sizes,
    }
    echo(f"versions bench: {keys} keys x {days} days, {rounds} revisions")
    echo(f"  {'table':<26} {'rows':>9} {'MB':>8} {'versions':>9} {'MB':>8}")
    for name, size in sizes.items():
        echo(f"  {name:<26} {size['rows']:>9,} {size['bytes'] / 1e6:>8.2f} {size['versions']:>9,} "
             f"{size['versions_bytes'] / 1e6:>8.2f}")
    echo(f"  versions: {versions_total:,} ({figures['bytes_per_version']} bytes each), "
         f"{figures['versions_over_current_bytes']}x the current tables' bytes")
    echo(f"  writes: {with_s:.2f} s with versions, {without_s:.2f} s without: overhead {figures['write_overhead']}")
    echo(f"  a key's snapshots: {plain_ms:.2f} ms off the table, {current_ms:.2f} ms as the API reads now "
         f"(with its system time: {figures['current_over_unversioned']}x), {as_at_ms:.2f} ms as at before the "
         f"revisions ({figures['as_at_over_current']}x the current read)")
    return figures


def run(keys: int, days: int, rounds: int, echo: Callable[[str], None] = print) -> dict:
    base = Path(tempfile.mkdtemp(prefix="epochflow-bench-versions-"))
    handle = start_postgres(base / "pgdata")
    try:
        plain_url = handle.url.rsplit("/", 1)[0] + "/epochflow_plain"
        asyncio.run(_create_database(handle.url, "epochflow_plain"))
        migrate(handle.url)
        migrate(plain_url)
        return asyncio.run(_run(handle.url, plain_url, keys, days, rounds, echo))
    finally:
        handle.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _create_database(url: str, name: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        await engine.dispose()
