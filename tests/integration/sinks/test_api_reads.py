"""The reads behind the web API (`epochflow/sinks/reads/api.py`), on states the settled end-to-end test never shows: a key
being rebuilt in a new epoch without its latest snapshot yet, a key waiting for FX, blocked
and failed jobs of current and superseded epochs, an open RESET_WATERMARKS job."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import ResultRow
from epochflow.sinks.reads import api as reads
from tests.fixtures.result_rows import D1, D2, D3
from tests.integration.sinks.books import D4, key
from tests.integration.sinks.valuation_rows import snap

pytestmark = pytest.mark.integration


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


async def test_snapshots_of_the_current_or_a_given_epoch_in_a_date_range(snapshot_book: AsyncEngine) -> None:
    clean_db = snapshot_book
    assert [(s.date, s.quantity) for s in await reads.fetch_snapshots(clean_db, "P1", "S1")] == [
        (D1, 10),
        (D2, 20),
        (D3, 30),
    ]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", epoch=0)] == [D1, D2]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", date_from=D2)] == [D2, D3]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", date_to=D2)] == [D1, D2]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", 1, D2, D2)] == [D2]
    assert await reads.fetch_snapshots(clean_db, "P2", "S1") == []  # no state: no current epoch
    assert await reads.fetch_snapshots(clean_db, "P2", "S1", epoch=0) == [snap(D1, **key("S1", "P2"))]



async def test_valuation_jobs_filtered_and_paged(clean_db: AsyncEngine, job_book: list[ResultRow]) -> None:
    rows = job_book
    everything = await reads.fetch_valuation_jobs(clean_db)
    assert [(j.portfolio_id, j.security_id, j.valuation_date, j.epoch) for j in everything] == [
        ("P1", "S0", D1, 0),
        ("P1", "S1", D2, 0),
        ("P1", "S1", D2, 1),
        ("P1", "S1", D3, 0),
        ("P1", "S1", D4, 1),
        ("P2", "S1", D1, 0),
    ]
    assert everything[4] == rows[3]
    assert [j.valuation_date for j in await reads.fetch_valuation_jobs(clean_db, "P1", "S1")] == [D2, D2, D3, D4]
    assert [j.portfolio_id for j in await reads.fetch_valuation_jobs(clean_db, security_id="S1", status="PENDING")] == [
        "P1",
        "P1",
        "P2",
    ]
    assert await reads.fetch_valuation_jobs(clean_db, "P1", status="PROCESSING") == [rows[1]]
    page = await reads.fetch_valuation_jobs(clean_db, limit=2, offset=1)
    assert page == everything[1:3]
    assert await reads.fetch_valuation_jobs(clean_db, limit=0) == []
    with pytest.raises(ValueError):
        await reads.fetch_valuation_jobs(clean_db, offset=-1)

