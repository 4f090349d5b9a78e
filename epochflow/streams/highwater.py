"""The end of a partition's log, from a Fetch response.

Tansu (the embedded broker) answers ListOffsets(LATEST) with the start of the last batch
rather than the end of the log. Faust's table recovery reads highwaters that way, so it
would stop restoring a changelog early (tables come back short) or find its own persisted
offset "ahead of the log" and refuse to start. A Fetch response carries the true high
watermark on Tansu and on Apache Kafka alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition


async def fetch_highwaters(bootstrap: str, partitions: Iterable[TopicPartition], timeout_s: float = 30.0,
                           **client_options) -> dict[TopicPartition, int]:
    partitions = list(partitions)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=16 * 1024,
        **client_options,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in partitions):
            if time.monotonic() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in partitions if consumer.highwater(tp) is None]
                raise TimeoutError(f"no fetch response within {timeout_s}s for {missing}")
            await consumer.getmany(timeout_ms=100)  # records are dropped: only the watermark counts
        return {tp: consumer.highwater(tp) for tp in partitions}
    finally:
        await consumer.stop()


def install_fetch_highwaters(bootstrap: str, **client_options) -> None:
    """Make Faust's consumer (table recovery, lag) read highwaters from Fetch responses."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def _highwaters(self, partitions):
        if self.consumer.in_transaction:
            consumer = self._ensure_consumer()
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        found = await fetch_highwaters(bootstrap, [TopicPartition(tp.topic, tp.partition) for tp in partitions],
                                       **client_options)
        by_name = {(tp.topic, tp.partition): offset for tp, offset in found.items()}
        return {tp: by_name[(tp.topic, tp.partition)] for tp in partitions}

    AIOKafkaConsumerThread._highwaters = _highwaters
