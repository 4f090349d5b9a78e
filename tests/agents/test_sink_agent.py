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
from epochflow.schemas.results import Barrier, JobOutcome
from epochflow.sinks.writer import Refusal
from tests.fixtures.agents import FakeTopics, eventually
from tests.fixtures.result_rows import carry, hist, state, tx

pytestmark = pytest.mark.asyncio(loop_scope="session")


class FakeWriter:
    """Stands in for ResultWriter: records the batches it is asked to write."""

    instances: list[FakeWriter] = []
    failures: list[BaseException] = []  # raised by the next calls to write(), one each
    poison = "POISON"  # rows of a transaction id containing this are refused by PostgreSQL

    def __init__(self, database) -> None:
        self.database = database
        self.batches: list[list] = []
        self.closed = False
        self.calls: list[str] = []
        FakeWriter.instances.append(self)

    async def write(self, rows) -> None:
        self.calls.append("write")
        if FakeWriter.failures:
            raise FakeWriter.failures.pop(0)
        if any(self.poison in getattr(row, "transaction_id", "") for row in rows):
            raise _refused()
        self.batches.append(list(rows))

    async def write_refusing(self, rows) -> list[Refusal]:
        self.calls.append("write_refusing")
        refused = [Refusal(i, row, "invalid byte sequence", "22021") for i, row in enumerate(rows)
                   if self.poison in getattr(row, "transaction_id", "")]
        self.batches.append([row for i, row in enumerate(rows) if i not in {r.index for r in refused}])
        return refused

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
    monkeypatch.setattr(sink, "ResultWriter", FakeWriter)
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
