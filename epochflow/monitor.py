"""What the api role watches for the whole deployment, as Prometheus gauges: every role's
consumer lag (per topic) and the dead-letter topic's size. One process measures it, so the
figures do not depend on which worker of a role is scraped."""

from __future__ import annotations

import logging

from epochflow.app import app, settings
from epochflow.metrics import CONSUMER_LAG, DEAD_LETTER_MESSAGES

log = logging.getLogger("epochflow.monitor")

INTERVAL_S = 15.0


async def measure() -> dict[str, dict[str, int]]:
    """{role: {topic: lag}} for every role with inputs; also sets the gauges."""
    from aiokafka import TopicPartition

    from epochflow.streams.admin import consumer_lag
    from epochflow.streams.highwater import fetch_highwaters
    from epochflow.streams.names import topic_name
    from epochflow.streams.security import client_options
    from epochflow.topology import ROLES

    lags: dict[str, dict[str, int]] = {}
    for role in (r for r in ROLES.values() if r.inputs):
        topics = [topic_name(settings, short) for short in role.inputs]
        by_topic = await consumer_lag(settings.kafka_bootstrap, role.app_id(settings), topics)
        lags[role.name] = {topic: sum(parts.values()) for topic, parts in by_topic.items()}
        for topic, lag in lags[role.name].items():
            CONSUMER_LAG.labels(role.name, topic.removeprefix(f"{settings.topic_prefix}.")).set(lag)
    dead = TopicPartition(topic_name(settings, "dead-letter"), 0)
    DEAD_LETTER_MESSAGES.set((await fetch_highwaters(settings.kafka_bootstrap, [dead], **client_options(settings)))[dead])
    return lags


@app.timer(interval=INTERVAL_S)
async def _measure() -> None:
    try:
        await measure()
    except Exception as error:  # the broker may be restarting: the next round tries again
        log.warning("monitor: could not measure consumer lag: %r", error)
