"""The row lookups of the scenario runner and the tests (`epochflow/sinks/reads/scenario.py`,
and `query.position`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.reads import api
from epochflow.sinks.reads import scenario as reads
from epochflow.sinks.reads.query import position
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, carry, hist, state, tx
from tests.integration.sinks.books import D4

pytestmark = pytest.mark.integration


async def test_reads_return_what_was_written(clean_db: AsyncEngine) -> None:
    late = datetime(2025, 8, 3, tzinfo=UTC)
    early = datetime(2025, 8, 1, tzinfo=UTC)
    await ResultWriter(clean_db).write(
        [
            tx("B", transaction_date=late),
            tx("A", transaction_date=late),
            tx("C", transaction_date=early),
            tx("X").model_copy(update={"portfolio_id": "P2"}),
            hist("A", epoch=0, seq=1),
            hist("B", epoch=0, seq=2, day=D2),
            carry(0, 1, D2),
            state(epoch=1, version=3, status="REPROCESSING"),
            state().model_copy(update={"portfolio_id": "P2"}),
        ]
    )

    assert [t.transaction_id for t in await reads.fetch_transactions(clean_db, "P1")] == ["C", "A", "B"]
    assert [t.transaction_id for t in await reads.fetch_transactions(clean_db)] == ["C", "A", "B", "X"]
    assert await reads.fetch_transactions(clean_db, "P1", "nope") == []

    positions = await reads.fetch_positions(clean_db)
    assert [(p.portfolio_id, p.status) for p in positions] == [("P1", "REPROCESSING"), ("P2", "CURRENT")]
    assert await reads.fetch_positions(clean_db, "P2") == [state().model_copy(update={"portfolio_id": "P2"})]

    # no epoch: the key's current epoch (1), where only A was carried over
    assert [h.transaction_id for h in await api.fetch_position_history(clean_db, "P1", "S1")] == ["A"]
    assert [h.transaction_id for h in await api.fetch_position_history(clean_db, "P1", "S1", 0)] == [
        "A",
        "B",
    ]
    assert await api.fetch_position_history(clean_db, "P9", "S1") == []

    assert await reads.count_position_history(clean_db) == 3
    assert await reads.count_position_history(clean_db, "P1", "S1", 0) == 2
    assert await reads.history_count(clean_db, "P1", "S1", 1) == {
        "portfolio_id": "P1",
        "security_id": "S1",
        "epoch": 1,
        "count": 1,
    }
    assert (await reads.history_row(clean_db, "P1", "S1", 0, "B") or {})["position_date"] == D2
    assert await reads.history_row(clean_db, "P1", "S1", 1, "B") is None
    assert (await position(clean_db, "P1", "S1") or {})["version"] == 3
    assert await position(clean_db, "P1", "S9") is None
    assert await reads.transaction(clean_db, "nope") is None


async def test_a_snapshot_of_a_given_or_the_current_epoch(snapshot_book: AsyncEngine) -> None:
    clean_db = snapshot_book
    assert (await reads.snapshot(clean_db, "P1", "S1", D2, 0) or {})["quantity"] == Decimal("2")
    assert (await reads.snapshot(clean_db, "P1", "S1", D2, 1) or {})["quantity"] == Decimal("20")
    assert await reads.snapshot(clean_db, "P1", "S1", D4, 1) is None
    assert await reads.snapshot(clean_db, "P1", "S1", D2, 2) is None

    # the current epoch is position_state's (1), not the highest snapshot epoch (2)
    current = await reads.snapshot_current_epoch(clean_db, "P1", "S1", D1) or {}
    assert (current["epoch"], current["quantity"]) == (1, Decimal("10"))
    assert await reads.snapshot_current_epoch(clean_db, "P1", "S1", D4) is None
    assert await reads.snapshot_current_epoch(clean_db, "P2", "S1", D1) is None  # P2 has no state


async def test_a_valuation_job_and_the_earliest_job_date(clean_db: AsyncEngine, job_book: list) -> None:
    stored = await reads.valuation_job(clean_db, "P1", "S1", D4, 1) or {}
    assert (stored["status"], stored["attempt_count"], stored["failure_reason"], stored["version"]) == (
        "PENDING",
        2,
        "no price for S1",
        3,
    )
    assert await reads.valuation_job(clean_db, "P1", "S1", D4, 0) is None

    assert await reads.earliest_job_date(clean_db, "P1", "S1") == D2  # any epoch
    assert await reads.earliest_job_date(clean_db, "P2", "S1") == D1
    assert await reads.earliest_job_date(clean_db, "P9", "S1") is None
