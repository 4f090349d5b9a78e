"""ResultWriter against a real PostgreSQL: idempotent, epoch-aware, ordered, atomic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import Barrier, PositionHistoryRow, ResultRow
from epochflow.sinks.reads.api import fetch_position_history
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.quiescence import barriers_seen
from epochflow.sinks.reads.scenario import (
    count_position_history,
    fetch_positions,
    fetch_transactions,
    history_row,
    transaction,
)
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, carry, hist, state, tx

pytestmark = pytest.mark.integration


@pytest.fixture
async def writer(clean_db: AsyncEngine) -> AsyncIterator[ResultWriter]:
    writer = ResultWriter(clean_db)
    yield writer
    await writer.close()


async def _dump(engine: AsyncEngine, table: str) -> list[dict[str, Any]]:
    """Every row with its xmin: an unchanged xmin proves the row was not rewritten."""
    async with engine.connect() as conn:
        result = await conn.execute(text(f"SELECT xmin::text AS xmin, * FROM {table} ORDER BY 2, 3, 4"))
        return [dict(row) for row in result.mappings()]


async def _history(engine: AsyncEngine, epoch: int) -> dict[str, PositionHistoryRow]:
    rows = await fetch_position_history(engine, "P1", "S1", epoch)
    return {row.transaction_id: row for row in rows}


async def test_same_batch_twice_changes_nothing(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    batch: list[ResultRow] = [
        tx("T1"),
        tx("T2", quantity=Decimal("-5")),
        hist("T1", seq=1),
        hist("T2", seq=2, day=D2),
        carry(0, 1, D2),
        state(version=2),
        Barrier(token="tok", stage="positions.apply", partition=0),
    ]
    await writer.write(batch)
    tables = ("transactions", "position_history", "position_state", "pipeline_barriers")
    before = {table: await _dump(clean_db, table) for table in tables}

    await writer.write(batch)

    assert {table: await _dump(clean_db, table) for table in tables} == before
    assert len(before["position_history"]) == 3  # T1, T2 in epoch 0 and T1 carried into epoch 1


async def test_an_older_epoch_never_overwrites_a_transaction(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write([tx("T1", epoch=2, net_cost=Decimal("10"))])

    await writer.write([tx("T1", epoch=1, net_cost=Decimal("99"))])
    assert (await transaction(clean_db, "T1") or {})["net_cost"] == Decimal("10")

    await writer.write([tx("T1", epoch=2, net_cost=Decimal("11"))])  # same epoch: an amendment
    assert (await transaction(clean_db, "T1") or {})["net_cost"] == Decimal("11")

    await writer.write([tx("T1", epoch=3, net_cost=Decimal("12")), tx("T1", epoch=2, net_cost=Decimal("98"))])
    stored = await transaction(clean_db, "T1") or {}
    assert (stored["epoch"], stored["net_cost"]) == (3, Decimal("12"))


async def test_a_transaction_keeps_the_time_its_version_was_emitted(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    """The stored row is the last one sent, `updated_at` included, however the batches of a
    replay fall: an intermediate version written on the way or not, a version that returns
    to earlier figures (A, B, A again) included."""
    t1, t2, t3 = (datetime(2025, 8, 1, hour, tzinfo=UTC) for hour in (18, 19, 20))
    a1, b2, a3 = (tx("T1", net_cost=Decimal("10"), updated_at=t1), tx("T1", net_cost=Decimal("11"), updated_at=t2),
                  tx("T1", net_cost=Decimal("10"), updated_at=t3))
    endings = []
    for batches in ([[a1, b2, a3]], [[a1], [b2, a3]], [[a1, b2], [a3]], [[a1], [b2], [a3]]):
        async with clean_db.begin() as conn:
            await conn.execute(text("DELETE FROM transactions"))
        for batch in batches:
            await writer.write(batch)
        [row] = await _dump(clean_db, "transactions")
        endings.append({k: v for k, v in row.items() if k != "xmin"})
    assert all(ending == endings[0] for ending in endings), endings
    assert (endings[0]["net_cost"], endings[0]["updated_at"]) == (Decimal("10"), t3)

    # the same batch again (a redelivery) does not even touch the row
    before = await _dump(clean_db, "transactions")
    await writer.write([a3])
    assert await _dump(clean_db, "transactions") == before


async def test_a_transaction_sent_without_its_time_is_stamped_when_written(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write([tx("T1", updated_at=None)])
    assert (await _dump(clean_db, "transactions"))[0]["updated_at"] is not None


async def test_position_state_follows_epoch_then_version(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    async def stored() -> tuple[int, int, str]:
        row = await position(clean_db, "P1", "S1") or {}
        return row["epoch"], row["version"], row["status"]

    await writer.write([state(epoch=1, version=5, status="A")])
    await writer.write([state(epoch=1, version=4, status="older version")])
    assert await stored() == (1, 5, "A")
    await writer.write([state(epoch=0, version=99, status="older epoch")])
    assert await stored() == (1, 5, "A")
    await writer.write([state(epoch=1, version=5, status="same version")])
    assert await stored() == (1, 5, "same version")
    await writer.write([state(epoch=2, version=0, status="new epoch")])
    assert await stored() == (2, 0, "new epoch")

    # within one batch, out of order: the highest (epoch, version) wins, the last of equals
    await writer.write(
        [
            state(epoch=2, version=7, status="B"),
            state(epoch=2, version=9, status="C"),
            state(epoch=2, version=8, status="D"),
            state(epoch=2, version=9, status="E"),
        ]
    )
    assert await stored() == (2, 9, "E")


async def test_history_rows_are_upserted_per_epoch(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    await writer.write(
        [hist("T1", epoch=0, quantity=Decimal("1")), hist("T1", epoch=1, quantity=Decimal("2"))]
    )
    await writer.write([hist("T1", epoch=0, quantity=Decimal("3"))])
    assert (await _history(clean_db, 0))["T1"].quantity == Decimal("3")
    assert (await _history(clean_db, 1))["T1"].quantity == Decimal("2")


async def test_carry_over_copies_only_rows_before_the_date(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write(
        [
            hist("T1", day=D1, seq=1),
            hist("T2", day=D2, seq=2, quantity=Decimal("150")),
            hist("T3", day=D3, seq=3),
            hist("OTHER", day=D1).model_copy(update={"security_id": "S2"}),
        ]
    )
    await writer.write([carry(0, 1, D3)])

    copied = await _history(clean_db, 1)
    assert set(copied) == {"T1", "T2"}
    assert copied["T2"] == hist("T2", epoch=1, day=D2, seq=2, quantity=Decimal("150"))
    assert await count_position_history(clean_db, "P1", "S2") == 1

    # a row the new epoch recomputed is not clobbered by carrying over again
    await writer.write([hist("T2", epoch=1, day=D2, seq=2, quantity=Decimal("7"))])
    before = await _dump(clean_db, "position_history")
    await writer.write([carry(0, 1, D3)])
    assert await _dump(clean_db, "position_history") == before
    assert (await _history(clean_db, 1))["T2"].quantity == Decimal("7")


async def test_carry_over_sees_the_rows_before_it_in_the_batch(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write(
        [
            hist("T1", epoch=0, day=D1, seq=1),
            hist("T2", epoch=0, day=D2, seq=2),
            carry(0, 1, D3),
            hist("LATE", epoch=0, day=D1, seq=0),  # after the carry-over: not copied
            hist("T3", epoch=1, day=D3, seq=3),
            carry(1, 2, D2),  # chained: reads what the first carry-over just wrote
        ]
    )
    assert set(await _history(clean_db, 1)) == {"T1", "T2", "T3"}
    assert set(await _history(clean_db, 2)) == {"T1"}
    assert set(await _history(clean_db, 0)) == {"T1", "T2", "LATE"}


async def test_a_row_for_the_new_epoch_wins_over_the_carried_copy(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write([hist("T1", epoch=0, quantity=Decimal("1"))])
    # before or after the carry-over in the batch, the explicit row is what remains
    await writer.write([hist("T1", epoch=1, quantity=Decimal("2")), carry(0, 1, D3)])
    assert (await _history(clean_db, 1))["T1"].quantity == Decimal("2")
    await writer.write([carry(0, 2, D3), hist("T1", epoch=2, quantity=Decimal("3"))])
    assert (await _history(clean_db, 2))["T1"].quantity == Decimal("3")


@pytest.mark.parametrize(
    "value",
    ["1389.9", "0.00", "-0.000001", "100", "123456789012345678901234567890.123456789012345678901"],
)
async def test_decimals_round_trip_exactly(writer: ResultWriter, clean_db: AsyncEngine, value: str) -> None:
    amount = Decimal(value)
    await writer.write(
        [
            tx("T1", net_cost=amount, transaction_fx_rate=amount),
            hist("T1", cost_basis=amount),
            state(quantity=amount),
        ]
    )
    stored_tx = await transaction(clean_db, "T1") or {}
    stored_state = await position(clean_db, "P1", "S1") or {}
    stored_hist = await history_row(clean_db, "P1", "S1", 0, "T1") or {}
    for stored in (
        stored_tx["net_cost"],
        stored_tx["transaction_fx_rate"],
        stored_hist["cost_basis"],
        stored_state["quantity"],
    ):
        assert stored == amount
        assert str(stored) == value  # the scale survives too


@pytest.mark.parametrize(("value", "stored_as"), [("1E+2", "100"), ("1E-7", "1E-7"), ("-0", "0"), ("2.50E+3", "2500")])
async def test_decimals_with_an_exponent_are_stored_at_their_value(
    writer: ResultWriter, clean_db: AsyncEngine, value: str, stored_as: str
) -> None:
    amount = Decimal(value)
    await writer.write([tx("T1", net_cost=amount, realized_gain_loss=None), hist("T1", cost_basis=amount)])
    stored_tx = await transaction(clean_db, "T1") or {}
    stored_hist = await history_row(clean_db, "P1", "S1", 0, "T1") or {}
    assert stored_tx["net_cost"] == stored_hist["cost_basis"] == amount
    assert str(stored_tx["net_cost"]) == stored_as
    assert stored_tx["realized_gain_loss"] is None


async def test_a_large_batch_is_one_transaction_with_one_statement_per_kind(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    n = 5000
    batch: list[ResultRow] = []
    for i in range(n):
        security = f"S{i % 50}"
        batch.append(tx(f"T{i}").model_copy(update={"security_id": security}))
        batch.append(hist(f"T{i}", seq=i).model_copy(update={"security_id": security}))
        batch.append(state(version=i).model_copy(update={"security_id": security}))
    batch.append(Barrier(token="big", stage="positions.apply", partition=3))

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(clean_db.sync_engine, "before_cursor_execute", record)
    try:
        await writer.write(batch)
    finally:
        event.remove(clean_db.sync_engine, "before_cursor_execute", record)

    assert "epochflow_system_time()" in statements[0]  # the write's system time (sinks.versions)
    tables = [statement.split(None, 3)[2] for statement in statements[1:]]
    assert tables == ["transactions", "position_history", "position_state", "pipeline_barriers"]
    async with clean_db.connect() as conn:
        xids = await conn.execute(
            text(
                "SELECT xmin::text FROM transactions UNION SELECT xmin::text FROM position_history"
                " UNION SELECT xmin::text FROM position_state UNION SELECT xmin::text FROM pipeline_barriers"
            )
        )
        assert len(xids.all()) == 1
    assert len(await fetch_transactions(clean_db)) == n
    assert await count_position_history(clean_db) == n
    positions = await fetch_positions(clean_db)
    assert len(positions) == 50
    assert {p.version for p in positions} == set(range(n - 50, n))  # the last state per key


async def test_a_failing_batch_writes_nothing(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    # PostgreSQL text cannot hold NUL: the last statement of the batch fails
    with pytest.raises(DBAPIError):
        await writer.write([tx("T1"), hist("T1"), Barrier(token="t\x00", stage="s", partition=0)])
    assert await fetch_transactions(clean_db) == []
    assert await count_position_history(clean_db) == 0


async def test_the_last_offset_of_each_partition_is_stored_with_the_batch(writer: ResultWriter) -> None:
    await writer.write([tx("T1")], {("results", 0): 7, ("results", 2): 3})
    await writer.write([], {("results", 2): 4})  # a batch of nothing to store (job outcomes only)
    assert await writer.last_offsets() == {("results", 0): 7, ("results", 2): 4}
    # set, not raised: after a replay from earlier (or a recreated broker) it follows what is written now
    await writer.write([tx("T1")], {("results", 0): 1})
    assert await writer.last_offsets() == {("results", 0): 1, ("results", 2): 4}


async def test_a_batch_that_fails_stores_no_offset_and_one_written_without_refused_rows_does(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    refused = [tx("T1"), Barrier(token="t\x00", stage="s", partition=0)]
    with pytest.raises(DBAPIError):
        await writer.write(refused, {("results", 1): 5})
    assert await writer.last_offsets() == {}
    [refusal] = await writer.write_refusing(refused, {("results", 1): 5})
    assert refusal.index == 1
    assert await writer.last_offsets() == {("results", 1): 5}
    assert [t.transaction_id for t in await fetch_transactions(clean_db)] == ["T1"]


async def test_barriers_are_recorded_once(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    await writer.write([Barrier(token="tok", stage="positions.apply", partition=p) for p in (0, 1, 1)])
    await writer.write([Barrier(token="tok", stage="positions.reference", partition=0)])
    await writer.write([Barrier(token="other", stage="positions.apply", partition=2)])
    assert await barriers_seen(clean_db, "tok") == {
        ("positions.apply", 0),
        ("positions.apply", 1),
        ("positions.reference", 0),
    }


async def test_an_empty_batch_is_a_no_op(writer: ResultWriter) -> None:
    await writer.write([])


async def test_a_writer_from_a_url_owns_its_engine(postgres_url: str, clean_db: AsyncEngine) -> None:
    writer = ResultWriter(postgres_url)
    try:
        await writer.write([tx("T1", transaction_date=datetime(2025, 8, 1, 10) + timedelta(hours=1))])
    finally:
        await writer.close()
    stored = await transaction(clean_db, "T1") or {}
    # a naive timestamp is stored as UTC
    assert stored["transaction_date"] == datetime(2025, 8, 1, 11, tzinfo=UTC)


async def test_a_replay_never_takes_a_row_back_to_an_earlier_step(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    """Rows carry the step (the key's state version) or the job version that sent them:
    written again in any grouping, the earlier ones never replace the later ones, not even
    for a moment (no version of the row is kept for them either)."""
    from tests.integration.sinks.valuation_rows import snap

    sent = [
        [tx("T1", version=1, net_cost=Decimal("10")), hist("T1", version=1, quantity=Decimal("100")),
         snap(D1, job_version=1, market_price=Decimal("9.5"))],
        [tx("T1", version=3, net_cost=Decimal("12")), hist("T1", version=3, quantity=Decimal("90")),
         snap(D1, job_version=4, market_price=Decimal("9.75"))],
    ]
    for batch in sent:
        await writer.write(batch)
    tables = ("transactions", "position_history", "daily_position_snapshots")
    final = {table: await _dump(clean_db, table) for table in tables}
    versions_before = {table: await _dump(clean_db, f"{table}_versions") for table in tables}
    for replay in ([*sent[0], *sent[1]], sent[0], sent[1]):
        await writer.write(replay)
        assert {table: await _dump(clean_db, table) for table in tables} == final
    assert {table: await _dump(clean_db, f"{table}_versions") for table in tables} == versions_before
    assert final["daily_position_snapshots"][0]["market_price"] == Decimal("9.75")
    assert (final["transactions"][0]["net_cost"], final["position_history"][0]["quantity"]) == (12, 90)


async def test_a_carried_over_snapshot_gives_way_to_the_new_epoch_s_first_answer(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    from tests.integration.sinks.valuation_rows import snap

    await writer.write([snap(D1, job_version=7, quantity=Decimal("1")), carry(0, 1, D2)])
    await writer.write([snap(D1, epoch=1, job_version=0, quantity=Decimal("2"))])  # the new epoch's jobs start again
    rows = {row["epoch"]: row for row in await _dump(clean_db, "daily_position_snapshots")}
    assert (rows[0]["quantity"], rows[1]["quantity"], rows[1]["job_version"]) == (1, 2, 0)
