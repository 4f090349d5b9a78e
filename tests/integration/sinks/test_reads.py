"""The read helpers over the sink's tables."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks import reads
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D2, carry, hist, state, tx

pytestmark = pytest.mark.integration


async def test_reads_return_what_was_written(clean_db: AsyncEngine) -> None:
    late = datetime(2025, 8, 3, tzinfo=timezone.utc)
    early = datetime(2025, 8, 1, tzinfo=timezone.utc)
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
    assert [h.transaction_id for h in await reads.fetch_position_history(clean_db, "P1", "S1")] == ["A"]
    assert [h.transaction_id for h in await reads.fetch_position_history(clean_db, "P1", "S1", 0)] == [
        "A",
        "B",
    ]
    assert await reads.fetch_position_history(clean_db, "P9", "S1") == []

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
    assert (await reads.position(clean_db, "P1", "S1") or {})["version"] == 3
    assert await reads.position(clean_db, "P1", "S9") is None
    assert await reads.transaction(clean_db, "nope") is None
