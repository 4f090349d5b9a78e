"""The Faust side of the redo journal (epochflow.tables.journal): a worker's journal table,
its other tables and its producer, seen as a `StepIO`.

Faust picks a table's changelog partition (and local RocksDB partition store) from the
current event, so every table access for partition N runs in the context of one of the
batch's events of partition N.

"Delivered" means acknowledged by the broker: every changelog record a write sent (its
table keeps the send, see epochflow.tables.sent_table) and every message, each awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from epochflow.agents.batching import event_context
from epochflow.metrics import BUDGET
from epochflow.tables.journal import Output, Write


class FaustStepIO:
    def __init__(self, tables: Mapping[str, Any], journal_table: Any, events: Mapping[int, Any],
                 topic_for: Callable[[str], Any], producer: Any) -> None:
        self.tables = tables  # table name -> Faust table (the app's table manager)
        self.journal_table = journal_table
        self.events = events  # partition -> one of the batch's events on it
        self.topic_for = topic_for
        self.producer = producer
        self.futures: list[Any] = []

    def _set(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        started = perf_counter()
        with event_context(self.events[partition]):
            sent = None
            if value is not None:
                table[key] = value
                sent = table.last_sent
            elif key in table:
                del table[key]
                sent = table.last_sent
        if sent is not None:
            self.futures.append(sent)
        BUDGET.add("table_write", perf_counter() - started)
        BUDGET.changelog_bytes += len(key) + (len(value) if value is not None else 0)

    def get_journal(self, partition: int, key: bytes) -> bytes | None:
        with event_context(self.events[partition]):
            return self.journal_table.get(key)

    def put_journal(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._set(self.journal_table, partition, key, value)

    def apply(self, partition: int, write: Write) -> None:
        self._set(self.tables[write.table], partition, write.key, write.value)

    def send(self, output: Output) -> None:
        started = perf_counter()
        topic = self.topic_for(output.topic)
        self.futures.append(topic.send_soon(key=output.key, value=output.value, partition=output.partition))
        BUDGET.add("produce", perf_counter() - started)

    async def delivered(self) -> None:
        """Everything enqueued so far, table changelogs included, is on the broker: each
        send's own acknowledgement (a flush alone may return with sends still buffered)."""
        started = perf_counter()
        futures, self.futures = self.futures, []
        await self.producer.flush()
        if futures:
            # `wait`, not `gather`: a step cancelled here (a worker stopping) must not cancel
            # the sends, which Faust's producer still completes
            await asyncio.wait(futures)
            for future in futures:
                future.result()  # a failed send fails the step
        BUDGET.add("produce", perf_counter() - started)
