"""The Faust side of the redo journal (epochflow.tables.journal): a worker's journal table,
its other tables and its producer, seen as a `StepIO`.

A write goes to the table's local store (RocksDB) at once, in the context of one of the
batch's events of its partition (Faust picks a partition's store from the current event).
Its changelog record, and every message, is kept in the step's log of its topic-partition,
in the order the step made them. `dispatch` hands each log to the producer as one record
batch (more when it is larger than a batch): a step sends a few batches, not a Faust
message per record with its futures and tasks, which cost more than the work itself.

"Delivered" means acknowledged by the broker: every batch handed over so far, by this step
or (its journal deletes) the one before, each awaited. A producer flush alone is not
enough: Faust's gives up on its buffer after 0.1 s without a send. Once a changelog batch
is acknowledged, its table's store records the offset of its last record as persisted, as
Faust does after each changelog send, so a restart recovers only what came after it.

What the step writes no longer passes through Faust's own table and producer machinery,
so Faust's table and produce sensors (its `/stats`) do not count it; epochflow's own
metrics do (`epochflow_step_phase_seconds`, `epochflow_step_changelog_bytes`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from faust.types import TP

from epochflow.agents.batching import event_context
from epochflow.metrics import BUDGET
from epochflow.tables import local
from epochflow.tables.journal import Output, Write

Log = tuple[str, int]  # a topic-partition by topic name


@dataclass(frozen=True, slots=True)
class Sent:
    """A record batch handed to the producer: its acknowledgement, where it went, how many
    records it holds, and the store whose changelog it is (None: messages)."""

    acknowledged: Any  # awaitable: the broker's RecordMetadata (the batch's first offset)
    log: Log
    count: int
    store: Any | None


# Batches handed to the producer whose acknowledgement no step has awaited yet: a step's
# last journal deletes go out at its end and are awaited by the next step's first delivery.
IN_FLIGHT: list[Sent] = []


def batch_client(producer: Any) -> Any:
    """The aiokafka producer under Faust's: its batch API (`create_batch`, `send_batch`)."""
    return producer._ensure_producer()


class FaustStepIO:
    def __init__(self, tables: Mapping[str, Any], journal_table: Any, events: Mapping[int, Any],
                 topic_for: Callable[[str], Any], producer: Any) -> None:
        self.tables = tables  # table name -> Faust table (the app's table manager)
        self.journal_table = journal_table
        self.events = events  # partition -> one of the batch's events on it
        self.topic_for = topic_for
        self.producer = producer
        self.logs: dict[Log, list[tuple[bytes | None, bytes | None]]] = {}
        self.stores: dict[Log, Any] = {}  # a changelog's log -> its table's store

    def _set(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        started = perf_counter()
        with event_context(self.events[partition]):
            # a delete is sent even when the local store has nothing to delete: a redo after a
            # restart with the local state kept finds the key deleted there, not on the broker
            local.put(table, partition, key, value)
        log = (table.changelog_topic.get_topic_name(), partition)
        self.logs.setdefault(log, []).append((key, value))
        self.stores[log] = table.data
        BUDGET.add("table_write", perf_counter() - started)
        BUDGET.changelog_bytes += len(key) + (len(value) if value is not None else 0)

    def get_journal(self, partition: int, key: bytes) -> bytes | None:
        with event_context(self.events[partition]):
            return local.get(self.journal_table, partition, key)

    def put_journal(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._set(self.journal_table, partition, key, value)

    def apply(self, partition: int, write: Write) -> None:
        self._set(self.tables[write.table], partition, write.key, write.value)

    def send(self, output: Output) -> None:
        log = (self.topic_for(output.topic).get_topic_name(), output.partition)
        self.logs.setdefault(log, []).append((output.key, output.value))

    async def dispatch(self) -> None:
        """Hand every log kept so far to the producer, without waiting for the broker."""
        if not self.logs:
            return
        started = perf_counter()
        client = batch_client(self.producer)
        _refuse_oversized(self.logs, client._max_request_size)  # before anything of the step is sent
        logs, self.logs = self.logs, {}
        for log, records in logs.items():
            store = self.stores.get(log)
            batch = client.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, go on in a new one
                    IN_FLIGHT.append(await _send(client, batch, log, store))
                    batch = client.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise RuntimeError(f"a record of {len(value or b'')} bytes fits no batch of {log[0]}")
            IN_FLIGHT.append(await _send(client, batch, log, store))
        BUDGET.add("produce", perf_counter() - started)

    async def delivered(self) -> None:
        """Everything kept or handed over so far, table changelogs included, is on the
        broker: each batch's own acknowledgement; then each changelog's persisted offset."""
        await self.dispatch()
        started = perf_counter()
        sent = list(IN_FLIGHT)
        IN_FLIGHT.clear()
        if sent:
            # `wait`, not `gather`: a step cancelled here (a worker stopping) must not cancel
            # the sends, which the producer still completes
            await asyncio.wait([s.acknowledged for s in sent])
            for s in sent:
                metadata = s.acknowledged.result()  # a failed send fails the step
                if s.store is not None and metadata is not None and _open(s.store, s.log[1]):
                    s.store.set_persisted_offset(TP(*s.log), metadata.offset + s.count - 1)
        BUDGET.add("produce", perf_counter() - started)


async def _send(client: Any, batch: Any, log: Log, store: Any | None) -> Sent:
    batch.close()  # nothing else joins it (the producer's own sends to the log go in batches of their own)
    acknowledged = await client.send_batch(batch, log[0], partition=log[1])
    return Sent(acknowledged, log, batch.record_count(), store)


def _refuse_oversized(logs: Mapping[Log, list[tuple[bytes | None, bytes | None]]], limit: int) -> None:
    """A record larger than the producer's request limit would be refused by the broker
    for good while the batches after it are taken: fail the step before it sends anything."""
    for (topic, _), records in logs.items():
        for key, value in records:
            size = len(key or b"") + len(value or b"")
            if size > limit:
                raise ValueError(f"a record of {size} bytes for {topic} (key {key!r:.80}) is larger than the "
                                 f"producer's max request size ({limit} bytes)")


def _open(store: Any, partition: int) -> bool:
    """False for a partition whose local store this worker no longer holds (revoked while
    its batch was in flight): recording its offset would open that store again. Stores
    without per-partition databases (in memory) are always open."""
    databases = getattr(store, "_dbs", None)
    return databases is None or partition in databases
