"""A plain aiokafka producer for the CLI (ingest, scenario runner, benchmarks): sends with
explicit partitions, batches by linger, and flushes before it reports success. It reads
each topic's partition count from the broker (`partition_counts`), which
`streams.publish.check_partitions` compares with the configuration before anything is sent."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer


class Producer:
    def __init__(self, bootstrap: str, **client_options) -> None:
        """`client_options`: connection security (see streams.security.client_options)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            **client_options,
            linger_ms=5,
            max_batch_size=1 << 20,
            acks="all",
            enable_idempotence=False,  # the embedded broker has no idempotent producer
        )

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self._producer.flush()
        finally:
            await self._producer.stop()

    async def send(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        # value None: a tombstone (a compacted topic, or a table's changelog, forgets the key)
        # send() only enqueues; the returned future resolves on delivery, awaited at flush
        await self._producer.send(topic, value=value, key=key, partition=partition)

    async def flush(self) -> None:
        await self._producer.flush()

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """The broker's partition count of each of `topics` that exists. The metadata of
        all topics is asked for: naming a missing topic makes Tansu (and Kafka with
        auto.create.topics.enable) create it with the broker's default partition count."""
        cluster = await self._producer.client.fetch_all_metadata()
        counts = {}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions:
                counts[topic] = len(partitions)
        return counts
