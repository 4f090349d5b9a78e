"""Reads as at a system time (`sinks.versions`, `reads.query.read_at`): a read asked for
again "as at" the time it gave answers exactly what it answered then, whatever the sink
wrote since (a new epoch, a revaluation of the same day, an amendment)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks import versions
from epochflow.sinks.models import VERSIONED
from epochflow.sinks.reads import api as reads
from epochflow.sinks.reads.query import read_at
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, carry, hist, state, tx
from tests.integration.sinks.valuation_rows import snap

pytestmark = pytest.mark.integration
D = Decimal


async def _everything(engine: AsyncEngine) -> tuple:
    """Every read of the key and its portfolio that takes as_at."""
    return (
        await reads.positions_as_of(engine, "P1"),
        await reads.positions_as_of(engine, "P1", D1),
        await reads.fetch_snapshots(engine, "P1", "S1"),
        await reads.fetch_position_history(engine, "P1", "S1"),
    )


async def test_a_read_as_at_its_time_answers_what_it_answered(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    await writer.write([tx("A"), hist("A", quantity=D(100)), snap(D1, market_value=D(1425)), snap(D2),
                        state(version=1, watermark_date=D2)])
    async with read_at(lambda: clean_db) as reading:
        before = await _everything(clean_db)
    first = reading.at
    # a price correction revalues D2 in the same epoch, then a back-dated trade opens epoch 1
    await writer.write([snap(D2, market_price=D("15"), market_value=D(1500))])
    async with read_at(lambda: clean_db) as reading:
        corrected = await _everything(clean_db)
    second = reading.at
    await writer.write([
        tx("Z", epoch=1, quantity=D(5)), carry(0, 1, D1), hist("Z", epoch=1, seq=1, quantity=D(105)),
        snap(D1, epoch=1, quantity=D(105)), state(epoch=1, version=2, status="REPROCESSING", quantity=D(105),
                                                  epoch_trigger="Z", epoch_rebuilt_from=D1),
    ])
    now = await _everything(clean_db)
    assert corrected != before and now != corrected
    async with read_at(lambda: clean_db, first) as reading:
        assert await _everything(clean_db) == before
    assert reading.at == first
    async with read_at(lambda: clean_db, second):
        assert await _everything(clean_db) == corrected


async def test_a_row_written_twice_by_one_write_has_one_version(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    # the carry-over copies D1 into epoch 1, then the batch's own D1 of epoch 1 replaces it
    await writer.write([snap(D1), state()])
    await writer.write([carry(0, 1, D2), snap(D1, epoch=1, quantity=D(7))])
    async with clean_db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT epoch, quantity, system_to IS NULL FROM daily_position_snapshots_versions ORDER BY version_id"
        ))).all()
    assert rows == [(0, 100, True), (1, 7, True)]


async def test_an_unchanged_row_written_again_keeps_its_version(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    batch = [tx("A"), hist("A"), snap(D1), state()]
    await writer.write(batch)
    await writer.write(batch)
    sizes = await versions.storage(clean_db)
    assert {name: size["versions"] for name, size in sizes.items() if size["versions"]} == {
        "transactions": 1, "position_history": 1, "position_state": 1, "daily_position_snapshots": 1,
    }


async def test_a_time_after_the_read_is_refused(clean_db: AsyncEngine) -> None:
    async with read_at(lambda: clean_db) as reading:
        await reads.portfolio_exists(clean_db, "P1")
    assert reading.at is not None
    with pytest.raises(versions.AsAtInFuture):
        async with read_at(lambda: clean_db, reading.at + timedelta(hours=1)):
            await reads.portfolio_exists(clean_db, "P1")


async def test_a_read_waits_for_a_write_in_flight_and_sees_all_of_it(clean_db: AsyncEngine) -> None:
    """The write is stamped before the read starts but commits after: the read must not
    give a time at which the write's versions are current without showing them."""
    writer = ResultWriter(clean_db)
    await writer.write([snap(D1), state()])
    async with clean_db.connect() as conn:
        async with conn.begin():
            await versions.stamp_write(conn)
            await conn.execute(text("UPDATE daily_position_snapshots SET quantity = 9"))
            reading = asyncio.create_task(_read_snapshots(clean_db))
            await asyncio.sleep(0.3)
            assert not reading.done()  # held off until the write commits
    at, quantities = await reading
    assert quantities == [9]
    async with read_at(lambda: clean_db, at):
        assert [s.quantity for s in await reads.fetch_snapshots(clean_db, "P1", "S1")] == [9]


async def _read_snapshots(engine: AsyncEngine) -> tuple:
    async with read_at(lambda: engine) as reading:
        quantities = [s.quantity for s in await reads.fetch_snapshots(engine, "P1", "S1")]
    return reading.at, quantities


async def test_retention_drops_only_versions_superseded_long_enough_ago(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    await writer.write([snap(D1), state()])
    await writer.write([snap(D1, quantity=D(2))])
    assert await versions.prune(clean_db, timedelta(hours=1)) == 0
    assert await versions.prune(clean_db, timedelta(0)) == 1
    sizes = await versions.storage(clean_db)
    assert sizes["daily_position_snapshots"]["versions"] == 1  # the current one stays


async def test_every_as_at_view_has_its_table_s_columns_and_types(clean_db: AsyncEngine) -> None:
    """A read runs the same SQL against a table and against its as_at view (the prepared
    statement is planned again for the other search_path): the rows must have one type."""
    query = text(
        "SELECT table_schema, table_name, column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema IN ('as_at', current_schema()) "
        "AND table_name = ANY(:names) ORDER BY table_name, table_schema, ordinal_position"
    )
    names = [table.name for table in VERSIONED]
    async with clean_db.connect() as conn:
        rows = (await conn.execute(query, {"names": names})).all()
    by_schema: dict[str, dict[str, list]] = {}
    for schema, table, *column in rows:
        by_schema.setdefault("as_at" if schema == "as_at" else "tables", {}).setdefault(table, []).append(column)
    assert set(by_schema["as_at"]) == set(names)
    assert by_schema["as_at"] == by_schema["tables"]


async def test_a_write_outside_the_sink_takes_the_lock_and_a_system_time(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    await writer.write([snap(D1), state()])
    async with clean_db.connect() as conn:
        async with conn.begin():
            await conn.execute(text("UPDATE daily_position_snapshots SET quantity = 8"))  # no stamp_write first
            reading = asyncio.create_task(_read_snapshots(clean_db))
            await asyncio.sleep(0.3)
            assert not reading.done()  # the trigger took the lock
    at, quantities = await reading
    assert quantities == [8]
    async with read_at(lambda: clean_db, at):
        assert [s.quantity for s in await reads.fetch_snapshots(clean_db, "P1", "S1")] == [8]
