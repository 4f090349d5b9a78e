"""The dashboard's sampler and dead-letter watch (`epochflow/web/dashboard/sampler.py`)
with stand-ins for the database and the consumer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from epochflow.sinks.reads.dashboard import DatabaseReading
from epochflow.web.dashboard.panels import SampleRing
from epochflow.web.dashboard.sampler import DeadLetterWatch, Sampler
from tests.unit.web.dashboard.readings import T0, reading

# -- the sampler and the dead-letter watch, with stand-ins --------------------------------------


async def test_a_sample_reads_the_database_and_records_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [T0]
    sampler = Sampler("postgresql://nowhere/db", "", "p.dead-letter", SampleRing(60, 2), clock=lambda: now[0])

    async def read() -> DatabaseReading:
        return reading()

    monkeypatch.setattr(sampler, "_read_database", read)
    first = await sampler.sample_once()
    assert first.panels["keys"]["total"] == 10
    assert first.errors == {"dead_letters": "no broker configured (EPOCHFLOW_KAFKA_URL)"}

    async def broken() -> DatabaseReading:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(sampler, "_read_database", broken)
    now[0] += 2
    second = await sampler.sample_once()
    assert second.panels is None and second.errors["database"] == "ConnectionRefusedError: connection refused"
    payload = await sampler.payload()
    assert payload["keys"]["total"] == 10 and "database" in payload["errors"]
    assert payload["history"]["keys_current"] == [8, None]


async def test_the_first_request_of_a_fresh_worker_takes_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = Sampler("", "", "p.dead-letter", SampleRing(60, 2), clock=lambda: T0)
    payload = await sampler.payload()
    assert payload["sampler"]["samples"] == 1
    assert payload["errors"]["database"] == "no database configured (DATABASE_URL)"


class FakeConsumer:
    """What DeadLetterWatch uses of AIOKafkaConsumer."""

    def __init__(self, **options) -> None:
        self.options = options
        self.highwater_ = 12
        self.start_ = 2
        self.polled_ms = T0 * 1000
        self.buffered = [SimpleNamespace(offset=o, value=json.dumps({"stage": "s", "reason": f"r{o}"}).encode())
                         for o in range(7, 12)]
        self.stopped = False
        self.seeked = None

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    async def topics(self) -> set[str]:
        return {"p.dead-letter"}

    def assign(self, partitions) -> None: ...

    async def beginning_offsets(self, partitions):
        return {tp: self.start_ for tp in partitions}

    async def end_offsets(self, partitions):
        return {tp: self.highwater_ - 1 for tp in partitions}  # as the embedded broker: a batch short

    def seek(self, tp, offset) -> None:
        self.seeked = offset

    async def getmany(self, tp, timeout_ms=0):
        records, self.buffered = self.buffered, []
        return {tp: records} if records else {}

    def highwater(self, tp) -> int:
        return self.highwater_

    def last_poll_timestamp(self, tp) -> float:
        return self.polled_ms


async def test_the_dead_letter_count_is_the_topic_size_with_the_latest_records_first() -> None:
    consumers: list[FakeConsumer] = []

    def factory(**options) -> FakeConsumer:
        consumers.append(FakeConsumer(**options))
        return consumers[-1]

    watch = DeadLetterWatch("127.0.0.1:1", "p.dead-letter", recent=3, consumer_factory=factory)
    seen = await watch.read(T0 + 1)
    consumer = consumers[0]
    assert consumer.options["group_id"] is None and consumer.seeked == 11 - 3
    assert (seen["count"], seen["high_watermark"], seen["stale"]) == (10, 12, False)
    assert [r["offset"] for r in seen["recent"]] == [11, 10, 9]
    consumer.highwater_ = 13
    consumer.buffered = [SimpleNamespace(offset=12, value=b'{"stage": "s", "reason": "late"}')]
    later = await watch.read(T0 + 3)
    assert later["count"] == 11 and later["recent"][0]["reason"] == "late"
    assert (await watch.read(T0 + 60))["stale"] is True  # no fetch response for a minute
    await watch.close()
    assert consumer.stopped


async def test_a_missing_dead_letter_topic_is_an_error_not_a_new_topic() -> None:
    class NoTopic(FakeConsumer):
        async def topics(self) -> set[str]:
            return set()

    made: list[FakeConsumer] = []
    watch = DeadLetterWatch("127.0.0.1:1", "p.dead-letter", consumer_factory=lambda **o: made.append(NoTopic(**o)) or made[-1])
    with pytest.raises(LookupError, match="p.dead-letter does not exist"):
        await watch.read(T0)
    assert made[0].stopped and made[0].seeked is None
