"""Which partition a key lives on. Every producer in epochflow sends with an explicit
partition computed here (Kafka's murmur2, so external Java producers agree)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
