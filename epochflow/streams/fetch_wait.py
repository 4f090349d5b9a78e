"""How long a consumer's Fetch may wait on the broker for data.

Faust creates its consumers with `fetch_max_wait_ms=1500`. A broker that does not answer a
waiting Fetch as soon as data arrives (the embedded broker among them) then holds each hop
of the pipeline up to that long when traffic is light: positions -> results -> sink is two
hops. epochflow caps the wait (EPOCHFLOW_FETCH_WAIT_MS); on Apache Kafka, which answers as
soon as data arrives, a lower cap only means more empty Fetches when idle.
"""

from __future__ import annotations

import functools

import aiokafka


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Make every consumer this process creates wait at most `max_wait_ms` per Fetch."""
    consumer = aiokafka.AIOKafkaConsumer
    if getattr(consumer.__init__, "_epochflow_capped", None) == max_wait_ms:
        return
    original = getattr(consumer.__init__, "__wrapped__", consumer.__init__)

    @functools.wraps(original)
    def init(self, *topics, **options):
        options["fetch_max_wait_ms"] = min(options.get("fetch_max_wait_ms", 500), max_wait_ms)
        original(self, *topics, **options)

    init._epochflow_capped = max_wait_ms
    consumer.__init__ = init
