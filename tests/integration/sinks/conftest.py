"""Books of rows the read tests of several audiences share (`epochflow.sinks.reads`);
their helpers are in `books.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import ResultRow
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, hist, state, tx
from tests.integration.sinks.books import D4, D, key, reset_job
from tests.integration.sinks.valuation_rows import job, snap


@pytest.fixture
async def book(clean_db: AsyncEngine) -> AsyncEngine:
    """P1|S1 rebuilt in epoch 1 (only D1 revalued so far), P1|S2 valued to D2 with a job
    blocked on a price, P1|S3 waiting for FX with no history; P2 holds S2 too."""
    writer = ResultWriter(clean_db)
    await writer.write([
        tx("A", **key("S1")), tx("C", **key("S2")), tx("E", transaction_date=datetime(2025, 8, 2, 9, tzinfo=UTC), **key("S2", "P2")),
        hist("A", epoch=0, seq=1, quantity=D(100)), hist("B", epoch=0, seq=2, day=D2, quantity=D(150)),
        snap(D1, epoch=0, market_value=D(1000)), snap(D2, epoch=0, market_value=D(1500)),
        job(D1, epoch=0, status="COMPLETE"), job(D2, epoch=0, status="FAILED", failure_reason="superseded"),
        state(epoch=0, version=1, watermark_date=D2),
        hist("C", seq=1, quantity=D(10), **key("S2")),
        snap(D1, market_value=D(100), **key("S2")), snap(D2, market_value=D(110), **key("S2")),
        job(D1, status="COMPLETE", **key("S2")),
        job(D2, status="PENDING", attempt_count=2, failure_reason="no price of S2 on 2025-08-02", **key("S2")),
        state(version=1, watermark_date=D1, **key("S2")),
        state(version=1, watermark_date=None, waiting_for="fx EUR/USD", **key("S3")),
        hist("E", seq=1, day=D2, quantity=D(7), **key("S2", "P2")),
        state(version=1, watermark_date=D2, **key("S2", "P2")),
        reset_job("S2"), reset_job("S9"),
    ])
    await writer.write([
        hist("A", epoch=1, seq=1, quantity=D(100)), hist("B2", epoch=1, seq=2, day=D2, quantity=D(120)),
        snap(D1, epoch=1, market_value=D(1000)),
        job(D2, epoch=1, status="FAILED", attempt_count=5, failure_reason="boom"),
        state(epoch=1, version=2, status="REPROCESSING", watermark_date=D1, quantity=D(120)),
    ])
    return clean_db


@pytest.fixture
async def snapshot_book(clean_db: AsyncEngine) -> AsyncEngine:
    """P1|S1 snapshotted in epochs 0, 1 (its current one, by position_state) and 2; P2|S1
    snapshotted on D1 with no state."""
    await ResultWriter(clean_db).write(
        [
            snap(D1, epoch=0, quantity=Decimal("1")),
            snap(D2, epoch=0, quantity=Decimal("2")),
            snap(D1, epoch=1, quantity=Decimal("10")),
            snap(D3, epoch=1, quantity=Decimal("30")),
            snap(D2, epoch=1, quantity=Decimal("20")),
            snap(D1, epoch=2, quantity=Decimal("100")),  # a newer epoch than the state's
            snap(D1, **key("S1", "P2")),
            state(epoch=1, version=4),
        ]
    )
    return clean_db


@pytest.fixture
async def job_book(clean_db: AsyncEngine) -> list[ResultRow]:
    """Valuation jobs of P1|S1 in epochs 0 and 1 (one blocked on a price), of P2|S1 and
    P1|S0; the rows as written."""
    rows: list[ResultRow] = [
        job(D3, epoch=0, version=2, status="COMPLETE"),
        job(D2, epoch=1, version=1, status="PROCESSING"),
        job(D2, epoch=0, version=0, status="PENDING"),
        job(D4, epoch=1, version=3, status="PENDING", attempt_count=2, failure_reason="no price for S1"),
        job(D1, version=0, **key("S1", "P2")),
        job(D1, version=0, **key("S0")),
    ]
    await ResultWriter(clean_db).write(rows)
    return rows
