"""Wiring of the sink agent with a Faust test agent: the rows of each results message are
decoded and handed to the writer (a fake here: PostgreSQL upserts are tested in
tests/integration/sinks), invalid messages are dead-lettered, the writer is closed when the
agent stops. Runs on the same app as the positions agent tests (one app per process).
"""

from __future__ import annotations

import json
from datetime import date

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from epochflow import metrics
from epochflow.agents.batching import encode_rows
from epochflow.agents.holes import Holes
from epochflow.schemas.results import Barrier, JobOutcome
from epochflow.sinks.writer import Refusal
from tests.fixtures.agents import FakeTopics, eventually
from tests.fixtures.result_rows import carry, hist, state, tx

pytestmark = pytest.mark.asyncio(loop_scope="session")


class FakeWriter:
    """Stands in for ResultWriter: records the batches it is asked to write, and keeps the
    offsets written with them like `sink_offsets` does."""

    instances: list[FakeWriter] = []
    failures: list[BaseException] = []  # raised by the next calls to write(), one each
    poison = "POISON"  # rows of a transaction id containing this are refused by PostgreSQL
    offsets: dict[tuple[str, int], int] = {}  # the stored offsets, shared like the database

    def __init__(self, database) -> None:
        self.database = database
        self.batches: list[list] = []
        self.closed = False
        self.calls: list[str] = []
        self.reads = 0  # of the stored offsets
        FakeWriter.instances.append(self)

    async def write(self, rows, offsets) -> None:
        self.calls.append("write")
        if FakeWriter.failures:
            raise FakeWriter.failures.pop(0)
        if any(self.poison in getattr(row, "transaction_id", "") for row in rows):
            raise _refused()
        self.batches.append(list(rows))
        FakeWriter.offsets.update(offsets)

    async def write_refusing(self, rows, offsets) -> list[Refusal]:
        self.calls.append("write_refusing")
        refused = [Refusal(i, row, "invalid byte sequence", "22021") for i, row in enumerate(rows)
                   if self.poison in getattr(row, "transaction_id", "")]
        self.batches.append([row for i, row in enumerate(rows) if i not in {r.index for r in refused}])
        FakeWriter.offsets.update(offsets)
        return refused

    async def last_offsets(self) -> dict[tuple[str, int], int]:
        self.reads += 1
        return dict(FakeWriter.offsets)

    async def close(self) -> None:
        self.closed = True

    @property
    def rows(self) -> list:
        return [row for batch in self.batches for row in batch]


@pytest.fixture
def sink(agent_app, monkeypatch: pytest.MonkeyPatch):
    from epochflow.agents import sink

    FakeWriter.instances = []
    FakeWriter.failures = []
    FakeWriter.offsets = {}
    monkeypatch.setattr(sink, "ResultWriter", FakeWriter)
    monkeypatch.setattr(sink, "HOLES", Holes())
    seeks: list[dict] = []

    async def seek_back(stage: str, due: dict) -> None:
        if due:
            seeks.append(due)

    monkeypatch.setattr(sink, "seek_back", seek_back)
    sink.seeks = seeks
    return sink


def _refused() -> DBAPIError:
    error = asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')
    wrapped = DBAPIError("INSERT ...", {}, error)
    wrapped.__cause__ = error
    return wrapped


async def test_rows_of_results_messages_are_decoded_and_handed_to_the_writer(sink, fake_topics: FakeTopics) -> None:
    first = [tx("T1"), hist("T1"), state(version=1)]
    second = [carry(0, 1, date(2025, 8, 2)), hist("T1", epoch=1), state(epoch=1, version=2),
              Barrier(token="tok", stage="positions.apply", partition=3),
              JobOutcome(portfolio_id="P1", security_id="S1", valuation_date=date(2025, 8, 1), epoch=1,
                         outcome="COMPLETE")]
    async with sink.write_results.test_context() as agent:
        await agent.put(encode_rows(first), key=b"positions", partition=3)
        await agent.put(encode_rows(second), key=b"positions", partition=3)
        await eventually(lambda: FakeWriter.instances and len(FakeWriter.instances[0].rows) == len(first + second))
        [writer] = FakeWriter.instances
        assert not writer.closed

    # one writer for the agent, on the configured database, closed when the agent stops
    assert writer.database == sink.settings.database_url
    assert writer.closed
    # every row decoded to its model, in message order (the writer decides what to store)
    assert writer.rows == first + second
    assert fake_topics.dead_letter.sent == []


async def test_an_undecodable_results_message_is_dead_lettered_and_the_others_are_written(
    sink, fake_topics: FakeTopics
) -> None:
    good = [tx("T9"), state(version=9)]
    async with sink.write_results.test_context() as agent:
        await agent.put(b"[{\"kind\": \"position_state\", \"epoch\": 0}]", key=b"positions", partition=1)
        await agent.put(b"not json", key=b"positions", partition=1)
        await agent.put(encode_rows(good), key=b"positions", partition=1)
        await eventually(lambda: len(fake_topics.dead_letter.sent) == 2
                         and FakeWriter.instances and FakeWriter.instances[0].rows)

    letters = [json.loads(m["value"]) for m in fake_topics.dead_letter.sent]
    assert [d["stage"] for d in letters] == ["sink.write", "sink.write"]
    assert "portfolio_id" in letters[0]["reason"], letters[0]["reason"]  # names a missing field
    assert "json" in letters[1]["reason"].lower(), letters[1]["reason"]
    assert [m["partition"] for m in fake_topics.dead_letter.sent] == [0, 0]
    assert FakeWriter.instances[0].rows == good


async def test_a_row_postgresql_refuses_is_dead_lettered_and_the_rest_of_its_batch_written(
    sink, fake_topics: FakeTopics
) -> None:
    dead_before = metrics.DEAD_LETTERS.labels("sink.write")._value.get()
    batch = [tx("T1"), tx("POISON-1"), state(version=1)]
    async with sink.write_results.test_context() as agent:
        await agent.put(encode_rows(batch), key=b"positions", partition=2)
        await agent.put(encode_rows([tx("T2")]), key=b"positions", partition=2)
        await eventually(lambda: FakeWriter.instances and tx("T2") in FakeWriter.instances[0].rows
                         and fake_topics.dead_letter.sent)

    [writer] = FakeWriter.instances
    assert writer.calls[:2] == ["write", "write_refusing"]  # once refused, the batch is isolated
    assert writer.rows == [tx("T1"), state(version=1), tx("T2")]
    [message] = fake_topics.dead_letter.sent
    letter = json.loads(message["value"])
    assert message["partition"] == 0
    assert (letter["stage"], letter["reason"], letter["sqlstate"]) == ("sink.write", "invalid byte sequence", "22021")
    assert letter["row"]["transaction_id"] == "POISON-1" and letter["row"]["kind"] == "transaction"
    assert json.loads(letter["raw"]) == letter["row"]
    assert letter["partition"] == 2 and letter["offset"] is not None
    assert metrics.DEAD_LETTERS.labels("sink.write")._value.get() == dead_before + 1


async def test_a_lost_connection_is_retried_with_the_whole_batch(sink, fake_topics: FakeTopics) -> None:
    retries_before = metrics.SINK_RETRIES._value.get()
    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    FakeWriter.failures = [lost, OSError(111, "Connection refused")]
    batch = [tx("T3"), state(version=3)]
    async with sink.write_results.test_context() as agent:
        await agent.put(encode_rows(batch), key=b"positions", partition=0)
        await eventually(lambda: FakeWriter.instances and FakeWriter.instances[0].rows == batch)

    assert FakeWriter.instances[0].calls == ["write", "write", "write"]
    assert metrics.SINK_RETRIES._value.get() == retries_before + 2
    assert fake_topics.dead_letter.sent == []


async def _put(agent, value: bytes, partition: int, offset: int, key: bytes = b"positions") -> None:
    """A results message at `offset` of `partition` (a test agent numbers its messages
    across partitions)."""
    agent.sent_offset = offset
    await agent.put(value, key=key, partition=partition)


async def test_each_batch_is_written_with_the_last_offset_of_each_partition(sink, fake_topics: FakeTopics) -> None:
    outcome = JobOutcome(portfolio_id="P1", security_id="S1", valuation_date=date(2025, 8, 1), epoch=0,
                         outcome="COMPLETE")
    async with sink.write_results.test_context() as agent:
        topic = agent.original_channel.get_topic_name()
        await _put(agent, encode_rows([tx("T1")]), partition=1, offset=0)
        await _put(agent, encode_rows([tx("T2")]), partition=2, offset=0)
        await _put(agent, b"not json", partition=2, offset=1)  # dead-lettered: still written past
        await _put(agent, encode_rows([outcome]), partition=1, offset=1, key=b"valuation")
        await eventually(lambda: FakeWriter.offsets == {(topic, 1): 1, (topic, 2): 1})
        reads = FakeWriter.instances[0].reads
        await _put(agent, encode_rows([tx("T3")]), partition=1, offset=2)  # continues what was written
        await eventually(lambda: FakeWriter.offsets[(topic, 1)] == 2)

    assert FakeWriter.instances[0].rows == [tx("T1"), tx("T2"), outcome, tx("T3")]
    assert sink.seeks == []
    # the stored offsets are read for partitions the agent does not know yet, not for every batch
    assert reads >= 1 and FakeWriter.instances[0].reads == reads


async def test_a_message_the_consumer_never_handed_over_is_read_again_before_the_ones_after_it(
    sink, fake_topics: FakeTopics
) -> None:
    holes_before = metrics.INPUT_HOLES.labels("sink.write")._value.get()
    async with sink.write_results.test_context() as agent:
        topic = agent.original_channel.get_topic_name()
        FakeWriter.offsets = {(topic, 0): 4}  # written up to offset 4 before a restart
        # the consumer hands over 6 and 7: offset 5 never came
        await _put(agent, encode_rows([tx("T6")]), partition=0, offset=6)
        await _put(agent, encode_rows([tx("T7")]), partition=0, offset=7)
        await eventually(lambda: sink.seeks)
        assert FakeWriter.instances[0].rows == []  # nothing after the hole is written before it
        assert sink.seeks == [{(topic, 0): 5}]
        assert FakeWriter.offsets == {(topic, 0): 4}

        for number in (5, 6, 7):  # the consumer, sent back, hands over 5, 6 and 7
            await _put(agent, encode_rows([tx(f"T{number}")]), partition=0, offset=number)
        await eventually(lambda: FakeWriter.offsets == {(topic, 0): 7})

    assert FakeWriter.instances[0].rows == [tx("T5"), tx("T6"), tx("T7")]
    assert metrics.INPUT_HOLES.labels("sink.write")._value.get() == holes_before + 1


async def test_messages_at_or_before_the_last_written_are_written_again(sink, fake_topics: FakeTopics) -> None:
    """A repeat after a restart, a replay from the first offset, a broker recreated under a
    kept database: none of them is a hole, and none is skipped."""
    async with sink.write_results.test_context() as agent:
        topic = agent.original_channel.get_topic_name()
        FakeWriter.offsets = {(topic, 0): 900}
        await _put(agent, encode_rows([tx("T0")]), partition=0, offset=0)
        await _put(agent, encode_rows([tx("T1")]), partition=0, offset=1)
        await eventually(lambda: FakeWriter.offsets == {(topic, 0): 1})

    assert FakeWriter.instances[0].rows == [tx("T0"), tx("T1")]
    assert sink.seeks == []
