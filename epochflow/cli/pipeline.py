"""A client of a running epochflow: publish events, wait until the pipeline is quiescent,
read results. Used by the scenario runner, the demo, the benchmarks and the tests.

Quiescence is asked of the engine, never slept: a barrier goes into every partition of
every input topic; each agent forwards it in partition order to the results topic, and the
sink records it in PostgreSQL after the rows that preceded it. When every (stage,
partition) barrier is there, everything sent before it has reached PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from epochflow.config import Settings
from epochflow.sinks import reads
from epochflow.streams.producer import Producer
from epochflow.streams.publish import barrier_messages, publish

# input topic (short name) -> the stage that forwards its barriers
BARRIER_STAGES: dict[str, str] = {
    "transactions": "positions.apply",
    "reference": "positions.reference",
    "position-commands": "positions.commands",
}


class NotQuiescent(TimeoutError):
    pass


@dataclass
class Pipeline:
    settings: Settings
    producer: Producer
    engine: AsyncEngine

    @classmethod
    async def connect(cls, settings: Settings) -> "Pipeline":
        producer = Producer(settings.kafka_bootstrap)
        await producer.__aenter__()
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=2)
        return cls(settings, producer, engine)

    async def close(self) -> None:
        await self.producer.__aexit__(None, None, None)
        await self.engine.dispose()

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def publish(self, events: Iterable) -> int:
        count = await publish(events, self.settings, self.producer.send)
        await self.producer.flush()
        return count

    async def send_raw(self, short_topic: str, partition: int, key: bytes, value: bytes) -> None:
        from epochflow.streams.names import topic_name

        await self.producer.send(topic_name(self.settings, short_topic), partition, key, value)
        await self.producer.flush()

    async def quiesce(self, timeout: float = 120.0, stages: dict[str, str] | None = None) -> float:
        """Wait until everything published so far has reached PostgreSQL; returns seconds.
        `stages` maps input topics to the stage that forwards their barriers."""
        stages = stages or BARRIER_STAGES
        started = time.monotonic()
        token = uuid.uuid4().hex
        for routed in barrier_messages(self.settings, token, stages):
            await self.producer.send(routed.topic, routed.partition, routed.key, routed.value)
        await self.producer.flush()
        wanted = {(stage, p) for stage in stages.values() for p in range(self.settings.partitions)}
        delay = 0.02
        while True:
            seen = await reads.barriers_seen(self.engine, token)
            missing = wanted - seen
            if not missing:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise NotQuiescent(_describe_missing(missing, timeout))
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)


def _describe_missing(missing: set[tuple[str, int]], timeout: float) -> str:
    by_stage: dict[str, list[int]] = {}
    for stage, partition in sorted(missing):
        by_stage.setdefault(stage, []).append(partition)
    detail = "; ".join(f"{stage} partitions {parts}" for stage, parts in by_stage.items())
    return f"pipeline not quiescent after {timeout:.0f}s: still in flight at {detail}"
