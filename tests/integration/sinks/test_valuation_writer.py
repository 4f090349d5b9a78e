"""ResultWriter for the valuation rows: snapshots, valuation jobs, job outcomes, and the
carry-over of snapshots into a new epoch."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import Barrier, HistoryCarryOver, ResultRow
from epochflow.sinks.reads.api import fetch_position_history, fetch_snapshots
from epochflow.sinks.reads.scenario import snapshot, valuation_job
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, carry, hist, state, tx
from tests.integration.sinks.valuation_rows import dump, job, outcome, snap

pytestmark = pytest.mark.integration

D4 = date(2025, 8, 4)


@pytest.fixture
async def writer(clean_db: AsyncEngine) -> AsyncIterator[ResultWriter]:
    writer = ResultWriter(clean_db)
    yield writer
    await writer.close()


class Statements:
    """The table each SQL statement run on the engine targets (INSERT INTO <table> ...)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tables: list[str] = []

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT"):  # not the system-time stamp each write starts with
            self.tables.append(statement.split(None, 3)[2])

    def __enter__(self) -> Statements:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)


async def _snapshots(engine: AsyncEngine, epoch: int, security_id: str = "S1") -> dict[date, Any]:
    return {row.date: row for row in await fetch_snapshots(engine, "P1", security_id, epoch)}


# -- snapshots ----------------------------------------------------------------------------


async def test_snapshot_batch_twice_changes_nothing(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    batch: list[ResultRow] = [
        snap(D1),
        snap(D2, market_price=Decimal("15")),
        snap(D2, epoch=1),
        snap(D1).model_copy(update={"security_id": "S2"}),
        job(D1, version=1),
        hist("T1"),
        carry(0, 1, D2),
    ]
    await writer.write(batch)
    before = {t: await dump(clean_db, t) for t in ("daily_position_snapshots", "portfolio_valuation_jobs")}
    assert len(before["daily_position_snapshots"]) == 5  # 4 written + D1 carried into epoch 1

    await writer.write(batch)
    await writer.write(batch[:3])

    assert {t: await dump(clean_db, t) for t in before} == before


async def test_a_snapshot_of_the_same_epoch_and_date_overwrites(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write([snap(D1, valuation_status="UNVALUED", market_price=None, market_value=None)])
    first = await dump(clean_db, "daily_position_snapshots")

    await writer.write([snap(D1, market_price=Decimal("14.30"))])
    (row,) = await dump(clean_db, "daily_position_snapshots")
    assert (row["valuation_status"], row["market_price"]) == ("VALUED_CURRENT", Decimal("14.30"))
    assert row["updated_at"] > first[0]["updated_at"]

    # another epoch is another row; within a batch the last row of a (key, date, epoch) wins
    await writer.write(
        [snap(D1, epoch=1, quantity=Decimal("1")), snap(D1, epoch=1, quantity=Decimal("2")), snap(D1, epoch=1, quantity=Decimal("3"))]
    )
    assert (await _snapshots(clean_db, 1))[D1].quantity == Decimal("3")
    assert (await _snapshots(clean_db, 0))[D1].market_price == Decimal("14.30")


@pytest.mark.parametrize(
    "value",
    ["1389.9", "0.00", "-0.000001", "100", "1E-12", "123456789012345678901234567890.123456789012345678901"],
)
async def test_snapshot_decimals_round_trip_exactly(
    writer: ResultWriter, clean_db: AsyncEngine, value: str
) -> None:
    amount = Decimal(value)
    money = (
        "quantity",
        "cost_basis",
        "cost_basis_local",
        "market_price",
        "market_value",
        "market_value_local",
        "unrealized_gain_loss",
        "unrealized_gain_loss_local",
        "fx_rate",
    )
    await writer.write([snap(D1, **{name: amount for name in money})])

    stored = await snapshot(clean_db, "P1", "S1", D1, 0) or {}
    (model,) = await fetch_snapshots(clean_db, "P1", "S1", 0)
    for name in money:
        assert stored[name] == amount
        assert str(stored[name]) == str(amount)  # the scale survives too
        assert getattr(model, name) == amount and str(getattr(model, name)) == str(amount)


# -- valuation jobs -----------------------------------------------------------------------


async def test_an_older_job_version_never_overwrites(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    async def stored() -> tuple[int, str, int, str | None]:
        row = await valuation_job(clean_db, "P1", "S1", D1, 0) or {}
        return row["version"], row["status"], row["attempt_count"], row["failure_reason"]

    await writer.write([job(version=0)])
    await writer.write([job(version=2, status="PENDING", attempt_count=1, failure_reason="no price")])
    await writer.write([job(version=1, status="PROCESSING")])  # arrives late: ignored
    assert await stored() == (2, "PENDING", 1, "no price")

    await writer.write([job(version=2, status="PENDING", attempt_count=1, failure_reason="no price for S1")])
    assert await stored() == (2, "PENDING", 1, "no price for S1")  # an equal version overwrites

    # within one batch, out of order: the highest version wins, the last of equals
    await writer.write(
        [
            job(version=5, status="COMPLETE", attempt_count=1),
            job(version=3, status="PROCESSING", attempt_count=1),
            job(version=4, status="PENDING", attempt_count=2, failure_reason="x"),
            job(version=5, status="COMPLETE", attempt_count=2),
        ]
    )
    assert await stored() == (5, "COMPLETE", 2, None)

    # a whole batch of older versions changes nothing, not even the row's xmin
    before = await dump(clean_db, "portfolio_valuation_jobs")
    await writer.write([job(version=4, status="PROCESSING"), job(version=0)])
    assert await dump(clean_db, "portfolio_valuation_jobs") == before

    # epochs are separate jobs: a lower version in another epoch is a new row
    await writer.write([job(epoch=1, version=0)])
    assert (await valuation_job(clean_db, "P1", "S1", D1, 1) or {})["version"] == 0
    assert await stored() == (5, "COMPLETE", 2, None)


async def test_job_rows_re_sent_change_nothing(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    batch: list[ResultRow] = [job(D1, version=1, status="PROCESSING"), job(D2, version=0), job(D3, version=3)]
    await writer.write(batch)
    before = await dump(clean_db, "portfolio_valuation_jobs")
    await writer.write(batch)
    await writer.write(list(reversed(batch)))
    assert await dump(clean_db, "portfolio_valuation_jobs") == before


async def test_job_outcomes_are_not_written(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    with Statements(clean_db) as statements:
        await writer.write([outcome(D1), outcome(D2, outcome="BLOCKED", reason="no price", waiting_on="price|S1")])
    assert statements.tables == []  # not even a transaction was opened

    with Statements(clean_db) as statements:
        await writer.write([outcome(D1), snap(D1), outcome(D2), job(D1, version=1)])
    assert statements.tables == ["daily_position_snapshots", "portfolio_valuation_jobs"]
    assert len(await dump(clean_db, "daily_position_snapshots")) == 1
    assert len(await dump(clean_db, "portfolio_valuation_jobs")) == 1


async def test_an_unknown_row_is_refused(writer: ResultWriter) -> None:
    with pytest.raises(TypeError, match="not a result row"):
        await writer.write([object()])  # type: ignore[list-item]


# -- carry-over of snapshots --------------------------------------------------------------


async def test_carry_over_copies_snapshots_before_the_date_only(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write(
        [
            snap(D1, quantity=Decimal("100")),
            snap(D2, quantity=Decimal("150"), valuation_status="VALUED_STALE", price_date=D1),
            snap(D3),
            snap(D4),
            snap(D1).model_copy(update={"security_id": "S2"}),
            snap(D1, epoch=5),  # another epoch of the same key
        ]
    )
    await writer.write([carry(0, 1, D3)])

    copied = await _snapshots(clean_db, 1)
    assert set(copied) == {D1, D2}
    assert copied[D2] == snap(D2, epoch=1, quantity=Decimal("150"), valuation_status="VALUED_STALE", price_date=D1)
    assert set(await _snapshots(clean_db, 0, "S2")) == {D1}
    assert await _snapshots(clean_db, 1, "S2") == {}

    # idempotent: carrying over again rewrites nothing
    before = await dump(clean_db, "daily_position_snapshots")
    await writer.write([carry(0, 1, D3)])
    assert await dump(clean_db, "daily_position_snapshots") == before


async def test_carry_over_does_not_clobber_recomputed_snapshots(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write([snap(D1, quantity=Decimal("1")), snap(D2, quantity=Decimal("1"))])
    # the new epoch recomputed D2 before the carry-over arrived, or in the same batch
    await writer.write([snap(D2, epoch=1, quantity=Decimal("2"))])
    before = await dump(clean_db, "daily_position_snapshots")
    await writer.write([carry(0, 1, D3)])
    after = await dump(clean_db, "daily_position_snapshots")
    assert [r for r in after if r["epoch"] == 1 and r["date"] == D2] == [
        r for r in before if r["epoch"] == 1 and r["date"] == D2
    ]
    assert {d: s.quantity for d, s in (await _snapshots(clean_db, 1)).items()} == {D1: 1, D2: 2}

    # before or after the carry-over in the batch, the explicit row is what remains
    await writer.write([snap(D1, epoch=2, quantity=Decimal("3")), carry(0, 2, D3)])
    await writer.write([carry(0, 3, D3), snap(D1, epoch=3, quantity=Decimal("4"))])
    assert {d: s.quantity for d, s in (await _snapshots(clean_db, 2)).items()} == {D1: 3, D2: 1}
    assert {d: s.quantity for d, s in (await _snapshots(clean_db, 3)).items()} == {D1: 4, D2: 1}


async def test_carry_over_sees_the_snapshots_before_it_in_the_batch(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    await writer.write(
        [
            snap(D1, epoch=0),
            hist("T1", epoch=0, day=D1, seq=1),
            snap(D2, epoch=0),
            carry(0, 1, D3),
            snap(D1, epoch=0, quantity=Decimal("999")),  # after the carry-over: not copied
            snap(D3, epoch=0),  # nor this one
            snap(D3, epoch=1, quantity=Decimal("7")),
            carry(1, 2, D4),  # chained: reads what the first carry-over just wrote
        ]
    )
    assert {d: s.quantity for d, s in (await _snapshots(clean_db, 1)).items()} == {D1: 100, D2: 100, D3: 7}
    assert {d: s.quantity for d, s in (await _snapshots(clean_db, 2)).items()} == {D1: 100, D2: 100, D3: 7}
    assert (await _snapshots(clean_db, 0))[D1].quantity == Decimal("999")
    assert [h.transaction_id for h in await fetch_position_history(clean_db, "P1", "S1", 2)] == ["T1"]


@pytest.mark.parametrize("first", [0, 1])
async def test_the_first_of_two_carry_overs_into_one_epoch_wins(
    writer: ResultWriter, clean_db: AsyncEngine, first: int
) -> None:
    second = 1 - first
    await writer.write(
        [
            snap(D1, epoch=0, quantity=Decimal("10")),
            snap(D1, epoch=1, quantity=Decimal("11")),
            hist("T1", epoch=0, quantity=Decimal("10")),
            hist("T1", epoch=1, quantity=Decimal("11")),
            carry(first, 2, D2),
            carry(second, 2, D2),
        ]
    )
    assert (await _snapshots(clean_db, 2))[D1].quantity == Decimal(10 + first)
    assert (await fetch_position_history(clean_db, "P1", "S1", 2))[0].quantity == Decimal(10 + first)


async def test_carry_overs_of_many_keys_take_the_same_statements_as_one(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    def batch(keys: int) -> list[ResultRow]:
        rows: list[ResultRow] = []
        for i in range(keys):
            key = {"security_id": f"S{i}"}
            rows += [
                tx(f"T{i}").model_copy(update=key),
                hist(f"T{i}", day=D1).model_copy(update=key),
                snap(D1).model_copy(update=key),
                snap(D2).model_copy(update=key),
                carry(0, 1, D2).model_copy(update=key),
                hist(f"T{i}", epoch=1, day=D1, quantity=Decimal("5")).model_copy(update=key),
                snap(D2, epoch=1, quantity=Decimal("5")).model_copy(update=key),
                state(epoch=1, version=2).model_copy(update=key),
                job(D2, epoch=1, version=0).model_copy(update=key),
                outcome(D1).model_copy(update=key),
            ]
        return rows

    with Statements(clean_db) as one:
        await writer.write(batch(1))
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE transactions, position_history, position_state, daily_position_snapshots,"
                " portfolio_valuation_jobs"
            )
        )
    with Statements(clean_db) as many:
        await writer.write(batch(400))

    assert one.tables == many.tables == [
        "transactions",
        "position_history",  # round 0: rows
        "daily_position_snapshots",
        "position_history",  # round 1: every key's carry-over, one copy per table
        "daily_position_snapshots",
        "position_state",
        "portfolio_valuation_jobs",
    ]
    async with clean_db.connect() as conn:
        xids = await conn.execute(
            text(
                "SELECT xmin::text FROM daily_position_snapshots UNION SELECT xmin::text FROM portfolio_valuation_jobs"
                " UNION SELECT xmin::text FROM position_history UNION SELECT xmin::text FROM position_state"
            )
        )
        assert len(xids.all()) == 1  # one transaction
    snapshots = await _snapshots(clean_db, 1, "S399")
    assert {d: s.quantity for d, s in snapshots.items()} == {D1: 100, D2: 5}
    assert len(await dump(clean_db, "daily_position_snapshots")) == 400 * 4


async def test_a_chain_of_epoch_bumps_adds_one_round_per_bump(
    writer: ResultWriter, clean_db: AsyncEngine
) -> None:
    rows: list[ResultRow] = [snap(D1), carry(0, 1, D2), snap(D2, epoch=1), carry(1, 2, D3), snap(D3, epoch=2)]
    with Statements(clean_db) as statements:
        await writer.write(rows)
    assert statements.tables == ["daily_position_snapshots"] + ["position_history", "daily_position_snapshots"] * 2
    assert set(await _snapshots(clean_db, 2)) == {D1, D2, D3}


def _random_batch(rng: random.Random) -> list[ResultRow]:
    days = [D1, D2, D3, D4]
    rows: list[ResultRow] = []
    for _ in range(rng.randint(1, 25)):
        security = rng.choice(["S1", "S2"])
        epoch = rng.randint(0, 3)
        pick = rng.random()
        if pick < 0.25:
            src = rng.randint(0, 3)
            dst = rng.choice([e for e in range(4) if e != src])
            rows.append(
                HistoryCarryOver(
                    portfolio_id="P1", security_id=security, from_epoch=src, to_epoch=dst, before_date=rng.choice(days)
                )
            )
        elif pick < 0.6:
            rows.append(snap(rng.choice(days), epoch, security_id=security, quantity=Decimal(rng.randint(1, 9))))
        else:
            n = rng.randint(1, 3)
            rows.append(
                hist(f"T{n}", epoch, day=days[n], seq=n, security_id=security, quantity=Decimal(rng.randint(1, 9)))
            )
    return rows


@pytest.mark.parametrize("seed", range(12))
async def test_a_batch_ends_as_its_rows_written_one_by_one(
    writer: ResultWriter, clean_db: AsyncEngine, seed: int
) -> None:
    rng = random.Random(seed)
    seeded = _random_batch(rng)  # what earlier batches left
    batch = _random_batch(rng) + _random_batch(rng)

    async def result() -> dict[str, list[dict[str, Any]]]:
        out = {}
        for table in ("position_history", "daily_position_snapshots"):
            rows = await dump(clean_db, table, with_xmin=False)
            out[table] = [{k: v for k, v in row.items() if k != "updated_at"} for row in rows]
        return out

    async def reset() -> None:
        async with clean_db.begin() as conn:
            await conn.execute(text("TRUNCATE position_history, daily_position_snapshots"))
        await writer.write(seeded)

    await reset()
    await writer.write(batch)
    batched = await result()

    await reset()
    for row in batch:
        await writer.write([row])
    assert await result() == batched


async def test_a_failing_batch_writes_no_snapshot_or_job(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    with pytest.raises(DBAPIError):
        await writer.write([snap(D1), carry(0, 1, D2), job(D1), Barrier(token="t\x00", stage="s", partition=0)])
    assert await dump(clean_db, "daily_position_snapshots") == []
    assert await dump(clean_db, "portfolio_valuation_jobs") == []


async def test_job_timestamps_are_stored_as_given(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    at = datetime(2025, 8, 5, 9, 30, tzinfo=UTC) + timedelta(microseconds=7)
    await writer.write([job(version=1, updated_at=at)])
    assert (await valuation_job(clean_db, "P1", "S1", D1, 0) or {})["updated_at"] == at
