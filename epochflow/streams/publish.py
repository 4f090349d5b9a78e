"""Routing of input events to topics: transactions to their key's partition, reference
data to every partition (each worker keeps the reference data its keys need)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from epochflow.config import Settings
from epochflow.domain.keys import position_key
from epochflow.schemas.events import CheckpointEvent, TransactionEvent
from epochflow.streams.names import topic_name
from epochflow.streams.partitioning import partition_for

# (topic, partition, key, value) -> awaitable
SendFn = Callable[[str, int, bytes, bytes], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Routed:
    topic: str
    partition: int
    key: bytes
    value: bytes


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
