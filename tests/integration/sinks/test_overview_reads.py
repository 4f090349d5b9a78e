"""The overviews (`epochflow/sinks/reads/overview.py`): every key's position with its
valuation for the demo, and what support looks at first for a portfolio."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.reads import overview as reads
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D2, D3, state, tx
from tests.integration.sinks.books import key
from tests.integration.sinks.valuation_rows import snap

pytestmark = pytest.mark.integration


async def test_the_overview_shows_the_business_dates_valuation(clean_db: AsyncEngine) -> None:
    await ResultWriter(clean_db).write(
        [
            tx("T1", realized_gain_loss=Decimal("5"), realized_gain_loss_local=Decimal("4")),
            state(epoch=1, version=2),
            snap(D2, epoch=1, market_value=Decimal("1500"), valuation_status="VALUED_STALE"),
            snap(D3, epoch=0, market_value=Decimal("999")),  # an old epoch: never shown
            state(**key("S1", "P2")),
        ]
    )
    p1, p2 = await reads.positions_overview(clean_db, D2)
    assert (p1["market_value"], p1["valuation_status"], p1["snapshot_date"]) == (Decimal("1500"), "VALUED_STALE", D2)
    assert (p1["realized_gain_loss"], p1["realized_gain_loss_local"], p1["quantity"]) == (5, 4, 100)
    assert (p2["market_value"], p2["valuation_status"], p2["realized_gain_loss"]) == (None, None, None)

    p1, _ = await reads.positions_overview(clean_db, D3)  # no snapshot of that day yet
    assert (p1["market_value"], p1["valuation_status"]) == (None, None)
    p1, _ = await reads.positions_overview(clean_db)  # the latest day
    assert p1["snapshot_date"] == D2


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
    assert found["latest_transaction_date"] == datetime(2025, 8, 1, 10, tzinfo=UTC)
    assert [j.security_id for j in found["open_reset_jobs"]] == ["S2"]  # not S9: P1 does not hold it
    assert await reads.portfolio_support(book, "P9") is None
