"""The Faust side of the redo journal: a step's writes reach the local store at once, and
its changelog records and messages go to the producer as one record batch per
topic-partition; "delivered" means every batch is acknowledged by the broker, this step's
and the journal deletes the step before handed over, and only then is a changelog's
offset recorded as persisted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from epochflow.agents import step_io
from epochflow.agents.step_io import FaustStepIO
from epochflow.tables.journal import Output, Write

pytestmark = pytest.mark.asyncio


class _Event:
    """One of a batch's events, as the step IO sets it current for the table writes."""

    message = SimpleNamespace(partition=0, topic="transactions", offset=0)


class _Batch:
    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: Any) -> object | None:
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.room = len(self.records)

    def record_count(self) -> int:
        return len(self.records)


class _Client:
    """aiokafka's batch API; each batch's acknowledgement is set by the test (`ack`)."""

    _max_request_size = 1000

    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.batches: list[tuple[str, int, list, asyncio.Future]] = []
        self.next_offset: dict[tuple[str, int], int] = {}

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.batches.append((topic, partition, batch.records, future))
        return future

    def ack(self, error: Exception | None = None, only_next: bool = False) -> None:
        """Acknowledge (or fail) the batches not acknowledged yet, in order; `only_next`: the
        first of them alone."""
        for topic, partition, records, future in self.batches:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                first = self.next_offset.get((topic, partition), 100)
                self.next_offset[(topic, partition)] = first + len(records)
                future.set_result(SimpleNamespace(offset=first))
            if only_next:
                return


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> _Client:
    fake = _Client()
    monkeypatch.setattr(step_io, "batch_client", lambda producer: fake)
    step_io.IN_FLIGHT.clear()
    yield fake
    step_io.IN_FLIGHT.clear()


@pytest.fixture
def persisted(agent_app, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """The offsets the journal table's store records as persisted: (topic, partition, offset)."""
    from epochflow.tables.declare import journal_table

    recorded: list[tuple[str, int, int]] = []
    monkeypatch.setattr(type(journal_table().data), "set_persisted_offset",
                        lambda store, tp, offset: recorded.append((tp.topic, tp.partition, offset)))
    return recorded


def _io(app: Any) -> FaustStepIO:
    from epochflow.tables.declare import journal_table

    return FaustStepIO(app.tables, journal_table(), {0: _Event()}, _Topic, producer=None)


def _changelog() -> str:
    from epochflow.tables.declare import journal_table

    return journal_table().changelog_topic.get_topic_name()


async def _not_before(io: FaustStepIO, client: _Client) -> None:
    delivered = asyncio.ensure_future(io.delivered())
    await asyncio.sleep(0.2)
    assert not delivered.done(), "delivered before the broker acknowledged the batches"
    client.ack()
    await asyncio.wait_for(delivered, 1.0)


async def test_a_journal_record_is_delivered_only_once_the_broker_has_it(agent_app, client, persisted) -> None:
    io = _io(agent_app)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    assert io.get_journal(0, b"head|p0") == b'{"chunks": 0}'  # in the local store at once
    await _not_before(io, client)
    [(topic, partition, records, _)] = client.batches
    assert (topic, partition, records) == (_changelog(), 0, [(b"head|p0", b'{"chunks": 0}')])
    assert persisted == [(_changelog(), 0, 100)]


async def test_writes_and_messages_go_as_one_batch_per_topic_partition_in_order(agent_app, client, persisted) -> None:
    io = _io(agent_app)
    io.apply(0, Write("step_journal", b"applied|transactions|p0", b"7"))
    io.send(Output("results", 3, b"positions", b"[1]"))
    io.apply(0, Write("step_journal", b"applied|transactions|p0", None))
    # nothing to delete here, but the broker may still have it (a redo after a restart that
    # kept the local state): the delete is sent
    io.apply(0, Write("step_journal", b"never|written", None))
    io.send(Output("results", 3, b"positions", b"[2]"))
    await _not_before(io, client)
    sent = {(topic, partition): records for topic, partition, records, _ in client.batches}
    assert sent == {
        (_changelog(), 0): [(b"applied|transactions|p0", b"7"), (b"applied|transactions|p0", None),
                            (b"never|written", None)],
        ("results", 3): [(b"positions", b"[1]"), (b"positions", b"[2]")],
    }
    assert persisted == [(_changelog(), 0, 102)]  # the changelog's last record; messages have no store


async def test_a_log_larger_than_a_batch_goes_in_several_all_awaited(agent_app, client, persisted) -> None:
    client.room = 2
    io = _io(agent_app)
    for n in range(5):
        io.put_journal(0, b"chunk|%d" % n, b"x")
    delivered = asyncio.ensure_future(io.delivered())
    for _ in range(2):  # the first batches acknowledged, the last not yet
        await asyncio.sleep(0.05)
        client.ack(only_next=True)
        await asyncio.sleep(0.05)
        assert not delivered.done(), "delivered before every batch was acknowledged"
    client.ack()
    await asyncio.wait_for(delivered, 1.0)
    assert [len(records) for _, _, records, _ in client.batches] == [2, 2, 1]
    assert [record for _, _, records, _ in client.batches for record in records] == [
        (b"chunk|%d" % n, b"x") for n in range(5)]
    assert persisted == [(_changelog(), 0, 101), (_changelog(), 0, 103), (_changelog(), 0, 104)]


async def test_what_a_step_hands_over_at_its_end_is_awaited_by_the_next_step(agent_app, client, persisted) -> None:
    first = _io(agent_app)
    first.put_journal(0, b"head|p0", b"h")
    await _not_before(first, client)
    first.put_journal(0, b"head|p0", None)  # the journal's delete, at the step's end
    await first.dispatch()
    assert len(client.batches) == 2 and not client.batches[1][3].done()

    second = _io(agent_app)  # the next step: nothing of its own yet
    await _not_before(second, client)
    assert persisted[-1] == (_changelog(), 0, 101)


async def test_a_step_cancelled_while_waiting_leaves_the_sends_to_complete(agent_app, client) -> None:
    """A worker stopping cancels its step; the producer still completes the sends, so they
    must not be cancelled with it."""
    io = _io(agent_app)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    delivered = asyncio.ensure_future(io.delivered())
    await asyncio.sleep(0.05)
    delivered.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivered
    assert not client.batches[0][3].cancelled()
    client.ack()


async def test_a_failed_send_fails_the_step_and_records_no_offset(agent_app, client, persisted) -> None:
    io = _io(agent_app)
    io.put_journal(0, b"head|p0", b'{"chunks": 0}')
    await io.dispatch()
    client.ack(RuntimeError("broker said no"))
    with pytest.raises(RuntimeError, match="broker said no"):
        await io.delivered()
    assert persisted == []


async def test_a_record_larger_than_a_request_fails_the_step_before_anything_is_sent(agent_app, client) -> None:
    io = _io(agent_app)
    io.put_journal(0, b"chunk|0", b"x" * 10)
    io.send(Output("results", 3, b"positions", b"y" * 2000))
    with pytest.raises(ValueError, match="larger than the producer's max request size"):
        await io.delivered()
    assert client.batches == []


async def test_no_offset_is_recorded_for_a_partition_revoked_while_its_batch_was_in_flight(
    agent_app, client, persisted, monkeypatch
) -> None:
    from epochflow.tables.declare import journal_table

    io = _io(agent_app)
    io.put_journal(0, b"head|p0", b"h")
    monkeypatch.setattr(journal_table().data, "_dbs", {1: object()}, raising=False)  # partition 0 no longer held
    await _not_before(io, client)
    assert persisted == []
