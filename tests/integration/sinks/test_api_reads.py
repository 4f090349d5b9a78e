"""The reads behind the web API, on states the settled end-to-end test never shows: a key
being rebuilt in a new epoch without its latest snapshot yet, a key waiting for FX, blocked
and failed jobs of current and superseded epochs, an open RESET_WATERMARKS job."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import ReprocessingJobRow
from epochflow.sinks import reads
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, NOW, hist, state, tx
from tests.integration.sinks.valuation_rows import job, snap

pytestmark = pytest.mark.integration

D = Decimal


def key(security_id: str, portfolio_id: str = "P1") -> dict[str, str]:
    return {"portfolio_id": portfolio_id, "security_id": security_id}


def reset_job(security_id: str, status: str = "PENDING") -> ReprocessingJobRow:
    return ReprocessingJobRow(
        job_id=f"price|{security_id}|0|1", job_type="RESET_WATERMARKS", subject=f"price|{security_id}", partition=0,
        security_id=security_id, from_currency=None, to_currency=None, earliest_impacted_date=D1, status=status,
        attempt_count=0, last_attempted_at=None, failure_reason=None, keys_total=3, keys_reset=1, created_at=NOW,
        finished_at=None, version=1, updated_at=NOW,
    )


@pytest.fixture
async def book(clean_db: AsyncEngine) -> AsyncEngine:
    """P1|S1 rebuilt in epoch 1 (only D1 revalued so far), P1|S2 valued to D2 with a job
    blocked on a price, P1|S3 waiting for FX with no history; P2 holds S2 too."""
    writer = ResultWriter(clean_db)
    await writer.write([
        tx("A", **key("S1")), tx("C", **key("S2")), tx("E", transaction_date=datetime(2025, 8, 2, 9, tzinfo=timezone.utc), **key("S2", "P2")),
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


async def test_positions_are_valued_on_one_day_and_say_when_a_key_is_rebuilt(book: AsyncEngine) -> None:
    day, rows = await reads.positions_as_of(book, "P1")
    assert day == D2  # the latest snapshot of any current epoch (S2's); S1's epoch 1 has only D1
    by = {r["security_id"]: r for r in rows}
    assert list(by) == ["S1", "S2", "S3"]
    assert (by["S1"]["reprocessing_status"], by["S1"]["epoch"], by["S1"]["quantity"]) == ("IN_PROGRESS", 1, 120)
    assert by["S1"]["valuation_date"] is None and by["S1"]["market_value"] is None  # not epoch 0's D2 (1500)
    assert (by["S2"]["reprocessing_status"], by["S2"]["valuation_date"], by["S2"]["market_value"]) == ("CURRENT", D2, 110)
    assert by["S3"]["market_value"] is None


async def test_positions_as_of_a_day_take_the_holding_from_the_current_epochs_history(book: AsyncEngine) -> None:
    day, rows = await reads.positions_as_of(book, "P1", D1)
    assert day == D1
    by = {r["security_id"]: r for r in rows}
    assert list(by) == ["S1", "S2"]  # S3 has no history at all
    assert (by["S1"]["quantity"], by["S1"]["market_value"], by["S1"]["valuation_date"]) == (100, 1000, D1)
    assert (by["S2"]["quantity"], by["S2"]["market_value"]) == (10, 100)
    _, later = await reads.positions_as_of(book, "P1", D2)
    assert {r["security_id"]: r["quantity"] for r in later} == {"S1": 120, "S2": 10}  # epoch 1's B2, not epoch 0's B


async def test_portfolio_exists(book: AsyncEngine) -> None:
    assert await reads.portfolio_exists(book, "P1") and await reads.portfolio_exists(book, "P2")
    assert not await reads.portfolio_exists(book, "P9")
    assert not await reads.portfolio_exists(book, "P1' OR '1'='1")


async def test_lineage_of_a_key_being_rebuilt(book: AsyncEngine) -> None:
    found = await reads.key_lineage(book, "P1", "S1")
    assert found is not None
    assert (found["state"]["epoch"], found["state"]["status"]) == (1, "REPROCESSING")
    assert found["epochs_in_history"] == [0, 1]
    assert found["history"] == {"first_date": D1, "latest_date": D2, "rows": 2}
    assert found["snapshots"] == {"first_date": D1, "latest_date": D1, "count": 1}
    assert found["jobs"] == {"earliest_date": D2, "latest_date": D2, "by_status": {"FAILED": 1}, "blocked": 0}
    assert found["open_reset_jobs"] == []
    s2 = await reads.key_lineage(book, "P1", "S2")
    assert s2 is not None and s2["jobs"]["blocked"] == 1 and s2["jobs"]["by_status"] == {"COMPLETE": 1, "PENDING": 1}
    assert [j.security_id for j in s2["open_reset_jobs"]] == ["S2"]
    assert await reads.key_lineage(book, "P1", "S9") is None


async def test_support_overview_of_a_portfolio_with_trouble(book: AsyncEngine) -> None:
    found = await reads.portfolio_support(book, "P1")
    assert found is not None
    assert found["business_date"] == D2
    assert found["keys_by_status"] == {"CURRENT": 2, "REPROCESSING": 1}
    assert [(k["security_id"], k["epoch"]) for k in found["keys_reprocessing"][1]] == [("S1", 1)]
    assert found["keys_reprocessing"][0] == 1
    assert [k["security_id"] for k in found["keys_behind"][1]] == ["S2", "S3"]  # watermark D1, and none
    assert [(k["security_id"], k["waiting_for"]) for k in found["keys_waiting_for_data"][1]] == [("S3", "fx EUR/USD")]
    # current epochs only: epoch 0's FAILED job of S1 is superseded
    assert found["valuation_jobs"] == {"pending": 1, "blocked": 1, "processing": 0, "failed": 1}
    assert [(j.security_id, j.epoch, j.status) for j in found["troubled_jobs"]] == [("S1", 1, "FAILED"), ("S2", 0, "PENDING")]
    assert found["latest_snapshot_date"] == D2
    assert found["latest_transaction_date"] == datetime(2025, 8, 1, 10, tzinfo=timezone.utc)
    assert [j.security_id for j in found["open_reset_jobs"]] == ["S2"]  # not S9: P1 does not hold it
    assert await reads.portfolio_support(book, "P9") is None


async def test_valuation_jobs_by_epoch_and_their_count(book: AsyncEngine) -> None:
    assert [j.epoch for j in await reads.fetch_valuation_jobs(book, "P1", "S1")] == [0, 0, 1]
    assert [j.status for j in await reads.fetch_valuation_jobs(book, "P1", "S1", epoch=1)] == ["FAILED"]
    assert await reads.count_valuation_jobs(book) == 5
    assert await reads.count_valuation_jobs(book, "P1", status="FAILED") == 2
    assert await reads.count_valuation_jobs(book, "P1", "S1", "FAILED", 1) == 1
    assert await reads.count_valuation_jobs(book, "P1", epoch=7) == 0


async def test_history_in_a_date_range(book: AsyncEngine) -> None:
    assert [h.transaction_id for h in await reads.fetch_position_history(book, "P1", "S1", date_from=D2)] == ["B2"]
    assert [h.transaction_id for h in await reads.fetch_position_history(book, "P1", "S1", 0, None, D1)] == ["A"]
    assert await reads.fetch_position_history(book, "P1", "S1", date_from=D2, date_to=D1) == []
