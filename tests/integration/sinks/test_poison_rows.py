"""A row PostgreSQL refuses never stalls the sink: it goes to the dead-letter topic with
PostgreSQL's reason, the rest of its batch and everything after it reach PostgreSQL.

First the writer alone (`write_refusing` against the session's PostgreSQL), then the sink
role on the real embedded stack, fed straight on the results topic (ingest refuses such
ids before they reach a topic; a row can still get there from a bug or an old producer).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.agents.batching import encode_rows
from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.schemas.results import Barrier
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.quiescence import barriers_seen
from epochflow.sinks.reads.scenario import count_position_history, fetch_transactions
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import hist, state, tx
from tests.fixtures.stack import read_dead_letters, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NUL_ID = "P_NUL\x00X"
TOO_LARGE = Decimal("9e999999")


@pytest.fixture
async def writer(clean_db: AsyncEngine) -> AsyncIterator[ResultWriter]:
    writer = ResultWriter(clean_db)
    yield writer
    await writer.close()


async def _ids(engine: AsyncEngine) -> dict[str, Decimal]:
    return {row.transaction_id: row.net_cost for row in await fetch_transactions(engine)}


async def test_the_writer_leaves_out_only_the_refused_rows(writer: ResultWriter, clean_db: AsyncEngine) -> None:
    batch = [
        tx("A", net_cost=Decimal("10")),
        tx(NUL_ID),
        hist("A"),
        tx("C", quantity=TOO_LARGE),
        state(version=1),
        tx("A", net_cost=Decimal("11")),  # an amendment later in the batch still wins
        Barrier(token="tok", stage="sink-test", partition=0),
    ]
    with pytest.raises(Exception):  # noqa: B017 (whichever driver error: the batch as a whole is still all or nothing)
        await writer.write(batch)
    assert await _ids(clean_db) == {}

    refusals = await writer.write_refusing(batch)

    assert [(r.index, r.row) for r in refusals] == [(1, batch[1]), (3, batch[3])]
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in refusals[0].reason
    assert "value overflows numeric format" in refusals[1].reason
    assert [r.sqlstate for r in refusals] == ["22021", "22003"]  # PostgreSQL's own codes
    assert await _ids(clean_db) == {"A": Decimal("11")}
    assert await count_position_history(clean_db) == 1
    assert (await position(clean_db, "P1", "S1") or {})["version"] == 1
    assert await barriers_seen(clean_db, "tok") == {("sink-test", 0)}

    # and again (a redelivered batch): nothing changes, the same rows are refused
    assert [r.index for r in await writer.write_refusing(batch)] == [1, 3]
    assert await _ids(clean_db) == {"A": Decimal("11")}


# -- the sink role on the embedded stack ---------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(("sink",)) as running:
        yield running


async def _barrier_written(pipeline: Pipeline, token: str, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await barriers_seen(pipeline.engine, token):
        assert asyncio.get_running_loop().time() < deadline, "the sink never wrote what followed the poison rows"
        await asyncio.sleep(0.1)


async def test_a_poison_row_is_dead_lettered_and_its_batch_and_what_follows_are_written(
    pipeline: Pipeline,
) -> None:
    marker = uuid.uuid4().hex[:8]
    nul_id, big_id = f"{marker}-{NUL_ID}", f"{marker}-BIG"
    first = [
        tx(f"{marker}-A"),
        tx(nul_id),
        tx(big_id, quantity=TOO_LARGE),
        tx(f"{marker}-B"),
        Barrier(token=f"{marker}-1", stage="sink-test", partition=0),
    ]
    after = [tx(f"{marker}-AFTER"), Barrier(token=f"{marker}-2", stage="sink-test", partition=0)]
    await pipeline.send_raw("results", 0, b"positions", encode_rows(first))
    await pipeline.send_raw("results", 1, b"positions", encode_rows(after))

    await _barrier_written(pipeline, f"{marker}-1")
    await _barrier_written(pipeline, f"{marker}-2")

    stored = {i for i in await _ids(pipeline.engine) if i.startswith(marker)}
    assert stored == {f"{marker}-A", f"{marker}-B", f"{marker}-AFTER"}

    letters = {doc["row"]["transaction_id"]: doc for doc in await read_dead_letters(pipeline, 2, marker)}
    assert set(letters) == {nul_id, big_id}
    for doc in letters.values():
        assert doc["stage"] == "sink.write"
        assert doc["topic"] == f"{pipeline.settings.topic_prefix}.results"
        assert doc["partition"] == 0
        assert doc["row"]["kind"] == "transaction"
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in letters[nul_id]["reason"]
    assert "value overflows numeric format" in letters[big_id]["reason"]
    assert Decimal(letters[big_id]["row"]["quantity"]) == TOO_LARGE
