"""The embedded broker, topic creation and consumer lag, against a real Tansu."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from epochflow.bench import broker as bench_broker
from epochflow.devstack.broker import BrokerHandle, start_broker
from epochflow.devstack.ports import port_open
from epochflow.devstack.process import pid_alive
from epochflow.streams.admin import AdminError, consumer_lag, create_topics
from epochflow.streams.names import TopicSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def producer(broker: BrokerHandle) -> AsyncIterator[AIOKafkaProducer]:
    # linger lets many records share one batch: the case Tansu's ListOffsets gets wrong.
    producer = AIOKafkaProducer(bootstrap_servers=broker.url, linger_ms=20)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _produce(producer: AIOKafkaProducer, topic: str, counts: dict[int, int]) -> None:
    sends = [
        await producer.send(topic, b"event %d" % i, partition=partition)
        for partition, count in counts.items()
        for i in range(count)
    ]
    await asyncio.gather(*sends)


async def _consume_all(bootstrap: str, group: str, topic: str, expected: int) -> None:
    """Consume `expected` records as a real group member and commit them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        seen = 0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500)
            seen += sum(len(records) for records in batches.values())
        assert seen == expected
        await consumer.commit()
    finally:
        await consumer.stop()


async def _partition_counts(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None)}
    finally:
        await admin.close()


def test_broker_start_and_stop_leaves_no_process() -> None:
    handle = start_broker()
    try:
        assert pid_alive(handle.pid)
        assert port_open(handle.port)
        assert handle.url == f"127.0.0.1:{handle.port}"
    finally:
        handle.stop()
    assert not pid_alive(handle.pid)
    assert not port_open(handle.port)
    handle.stop()  # idempotent


def test_bench_broker_measures_each_growth_step_and_stops_its_broker() -> None:
    lines: list[str] = []
    before = _tansu_pids()
    figures = bench_broker.run(600, 300, lines.append)
    assert [row["batches"] for row in figures["rows"]] == [300, 600]
    assert all(row["latency_ms"] > 0 and row["broker_cpu_us_per_message"] >= 0 for row in figures["rows"])
    assert "cpu_ratio_last_vs_first" in figures and len(lines) == 4
    assert _tansu_pids() <= before, "bench broker left its broker running"


def _tansu_pids() -> set[str]:
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"tansu" in (proc / "cmdline").read_bytes():
                found.add(proc.name)
        except OSError:
            continue
    return found


async def test_create_topics_with_partition_counts(broker: BrokerHandle, topic_prefix: str) -> None:
    specs = [TopicSpec(f"{topic_prefix}.keyed", 3, ""), TopicSpec(f"{topic_prefix}.single", 1, "")]

    await create_topics(broker.url, specs)
    await create_topics(broker.url, specs)  # existing topics are fine

    counts = await _partition_counts(broker.url)
    assert counts[f"{topic_prefix}.keyed"] == 3
    assert counts[f"{topic_prefix}.single"] == 1


async def test_create_topics_refuses_an_existing_topic_with_another_partition_count(
    broker: BrokerHandle, topic_prefix: str
) -> None:
    await create_topics(broker.url, [TopicSpec(f"{topic_prefix}.keyed", 3, "")])

    with pytest.raises(AdminError, match="wrong partition count"):
        await create_topics(broker.url, [TopicSpec(f"{topic_prefix}.keyed", 4, "")])


async def test_lag_is_exact_before_and_after_consuming(
    broker: BrokerHandle, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}.events", f"{topic_prefix}-group"
    await create_topics(broker.url, [TopicSpec(topic, 3, "")])
    assert await consumer_lag(broker.url, group, [topic]) == {topic: {0: 0, 1: 0, 2: 0}}

    await _produce(producer, topic, {0: 250, 1: 1, 2: 40})
    # Nothing committed yet: the whole log is lag.
    assert await consumer_lag(broker.url, group, [topic]) == {topic: {0: 250, 1: 1, 2: 40}}

    await _consume_all(broker.url, group, topic, expected=291)
    assert await consumer_lag(broker.url, group, [topic]) == {topic: {0: 0, 1: 0, 2: 0}}

    await _produce(producer, topic, {0: 7, 2: 1})
    assert await consumer_lag(broker.url, group, [topic]) == {topic: {0: 7, 1: 0, 2: 1}}


async def test_lag_counts_from_a_commit_in_the_middle_of_a_batch(
    broker: BrokerHandle, producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}.events", f"{topic_prefix}-group"
    await create_topics(broker.url, [TopicSpec(topic, 1, "")])
    await _produce(producer, topic, {0: 100})
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.url,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: 37})
    finally:
        await consumer.stop()

    assert await consumer_lag(broker.url, group, [topic]) == {topic: {0: 63}}


async def test_lag_leaves_out_missing_topics_without_creating_them(broker: BrokerHandle, topic_prefix: str) -> None:
    missing = f"{topic_prefix}.missing"

    assert await consumer_lag(broker.url, f"{topic_prefix}-group", [missing]) == {}
    assert missing not in await _partition_counts(broker.url)
