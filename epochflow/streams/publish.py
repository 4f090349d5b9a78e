"""Routing of input events to topics: transactions to their key's partition, reference
data to every partition (each worker keeps the reference data its keys need).

Routing computes partitions from `EPOCHFLOW_PARTITIONS`; a producer first checks that
count against the broker's (`check_partitions`), so a topic with more partitions is never
filled on its first ones only, and one with fewer never gets sends it cannot take."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from epochflow.config import Settings
from epochflow.domain.keys import position_key
from epochflow.schemas.events import CheckpointEvent, TransactionEvent
from epochflow.streams.names import topic_name, topic_specs
from epochflow.streams.partitioning import partition_for

# (topic, partition, key, value) -> awaitable
SendFn = Callable[[str, int, bytes, bytes], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Routed:
    topic: str
    partition: int
    key: bytes
    value: bytes


class PartitionMismatch(RuntimeError):
    """A topic's partition count on the broker is not the configured one (or it is
    missing); the message names the topic and both numbers."""


# topic names -> their partition counts on the broker (the topics that exist)
PartitionCounts = Callable[[list[str]], Awaitable[dict[str, int]]]


def partition_problems(settings: Settings, found: dict[str, int]) -> list[str]:
    """What is wrong with the broker's partition counts (`found`: topic -> count) for the
    key-scoped topics, which must all have EPOCHFLOW_PARTITIONS partitions."""
    wanted = settings.partitions
    problems = []
    for spec in topic_specs(settings):
        if spec.partitions != wanted:  # the dead-letter topic: one partition, not key-scoped
            continue
        count = found.get(spec.name)
        if count is None:
            problems.append(f"topic {spec.name} does not exist: start the stack (epochflow up) "
                            "or create the topics (epochflow init)")
        elif count != wanted:
            problems.append(f"topic {spec.name} has {count} partitions, EPOCHFLOW_PARTITIONS is {wanted}: "
                            f"set EPOCHFLOW_PARTITIONS={count} (every role must agree)")
    return problems


async def check_partitions(settings: Settings, partition_counts: PartitionCounts) -> None:
    """Raise PartitionMismatch unless every key-scoped topic has EPOCHFLOW_PARTITIONS
    partitions on the broker; `partition_counts` asks the broker (Producer.partition_counts)."""
    names = [spec.name for spec in topic_specs(settings)]
    problems = partition_problems(settings, await partition_counts(names))
    if problems:
        raise PartitionMismatch("; ".join(problems))


def route(event, settings: Settings) -> list[Routed]:
    """Where one validated input event goes."""
    if isinstance(event, CheckpointEvent):
        return []
    value = event.model_dump_json().encode()
    if isinstance(event, TransactionEvent):
        key = position_key(event.portfolio_id, event.security_id)
        return [Routed(topic_name(settings, "transactions"), partition_for(key, settings.partitions), key.encode(), value)]
    key = _reference_key(event).encode()
    topic = topic_name(settings, "reference")
    return [Routed(topic, p, key, value) for p in range(settings.partitions)]


def _reference_key(event) -> str:
    for field in ("portfolio_id", "security_id"):
        if hasattr(event, field):
            return f"{event.type}|{getattr(event, field)}"
    if event.type == "fx_rate":
        return f"fx_rate|{event.from_currency}|{event.to_currency}"
    return event.type


def barrier_messages(settings: Settings, token: str, topics: Iterable[str]) -> list[Routed]:
    # `topics` may be a mapping (topic -> stages); only its keys matter here
    """A barrier on every partition of the given input topics (short names)."""
    value = json.dumps({"type": "barrier", "token": token}).encode()
    return [
        Routed(topic_name(settings, short), p, b"barrier", value)
        for short in topics
        for p in range(settings.partitions)
    ]


async def publish(events: Iterable, settings: Settings, send: SendFn) -> int:
    count = 0
    for event in events:
        for routed in route(event, settings):
            await send(routed.topic, routed.partition, routed.key, routed.value)
        count += 1
    return count
