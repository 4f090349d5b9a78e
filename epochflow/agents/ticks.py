"""A role's own clock: every worker sends a tick to every partition of the role's tick
topic every `tick_s`, and the role's tick agent does the partition's timed work. A tick
is idempotent, so more than one (from several workers) is harmless."""

from __future__ import annotations

import time

from epochflow.agents.runner import SAMPLED_TOPICS, BatchRunner, Handle
from epochflow.app import app, settings
from epochflow.schemas.jobs import Tick


def tick_agent(topic, stage: str, run: BatchRunner, handle: Handle):
    """Declare the agent `stage` over `topic` and the timer that feeds it."""
    SAMPLED_TOPICS.add(topic.get_topic_name())

    @app.agent(topic, name=stage)
    async def on_ticks(stream):
        async for events in stream.take_events(settings.partitions * 4, 0.01):
            # several ticks of one partition in a batch do the work once
            latest = {event.message.partition: event for event in events}
            await run(stage, list(latest.values()), handle, sampled=True)

    @app.timer(interval=settings.tick_s, name=f"{stage}.send")
    async def send_ticks() -> None:
        value = Tick(at=time.time()).model_dump_json().encode()
        for partition in range(settings.partitions):
            topic.send_soon(key=b"tick", value=value, partition=partition)

    return on_ticks
