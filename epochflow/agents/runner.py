"""The batch runner every role's agents share: for each partition of a batch, a handler
over write-through caches; each message decoded and handed to it; the caches written
once and the outputs sent in order (see `batching.process_batch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from epochflow.agents.batching import process_batch
from epochflow.app import app
from epochflow.streams import topics

H = TypeVar("H")

# handle(handler, raw message, partition, the batch's time) -> rows and messages to send
Handle = Callable[[H, bytes, int, float], list]


@dataclass
class BatchRunner(Generic[H]):
    source: bytes  # the key of the role's messages on the results topic
    make_handler: Callable[[], tuple[H, list[Any]]]  # a handler and the caches it writes through

    async def __call__(self, stage: str, events, handle: Handle, *, state_after_outputs: bool = False) -> None:
        now = time.time()

        def open_partition():
            handler, caches = self.make_handler()
            return (lambda raw, partition: handle(handler, raw, partition, now)), caches

        await process_batch(stage, events, open_partition, self.source, app.producer, topics.results,
                            topics.dead_letter, topics.by_short_name, state_after_outputs=state_after_outputs)
