"""Shared mechanics of the batch agents: partition grouping with the right event context
for table reads and writes, barriers, dead letters, and what a partition's step writes and
sends (its redo-journal entry, see epochflow.tables.journal).

Faust picks a table's changelog partition (and RocksDB partition store) from the current
event; a batch from `take_events` spans partitions, so each partition's slice is handled
with one of its own events set as the current one.
"""

from __future__ import annotations

import json
import logging
import traceback
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from faust.streams import _current_event

from epochflow import metrics
from epochflow.agents.holes import Hole, Holes
from epochflow.schemas.events import InvalidEvent
from epochflow.schemas.results import Barrier
from epochflow.tables import journal
from epochflow.tables.journal import Entry, Output

log = logging.getLogger("epochflow.agents")

BARRIER_TYPE = b'"barrier"'


@contextmanager
def event_context(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def by_partition(events: Sequence[Any]) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        groups[event.message.partition].append(event)
    return groups


def barrier_token(raw: bytes) -> str | None:
    """Barriers are tiny JSON objects {"type": "barrier", "token": ...} on any input topic."""
    if BARRIER_TYPE not in raw[:40]:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # a hostile message must not stop the partition
        return None
    return doc.get("token") if isinstance(doc, dict) and doc.get("type") == "barrier" else None


def dead_letter_record(stage: str, event: Any, reason: str) -> bytes:
    metrics.DEAD_LETTERS.labels(stage).inc()
    message = event.message
    raw = event.value
    log.warning("%s: dead-lettered %s[%s]@%s: %s", stage, message.topic, message.partition, message.offset, reason)
    return json.dumps(
        {
            "stage": stage,
            "reason": reason,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "raw": raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw),
            "at": datetime.now(UTC).isoformat(),
        }
    ).encode()


class BatchOutcome:
    """What one batch produces: result rows by partition, messages for other topics (any
    object with topic/partition/key/value), dead letters."""

    def __init__(self) -> None:
        self.rows: dict[int, list[Any]] = defaultdict(list)
        self.messages: list[Any] = []
        self.dead: list[bytes] = []

    def add(self, partition: int, produced: list[Any]) -> None:
        for item in produced:
            if hasattr(item, "topic") and hasattr(item, "value"):
                self.messages.append(item)
            else:
                self.rows[partition].append(item)


def run_partition(
    stage: str,
    events: list[Any],
    handle: Callable[[Any, int], list[Any]],
    outcome: BatchOutcome,
) -> None:
    """Apply `handle(message, partition)` to one partition's events in order (a message has
    `key`, `value` and `offset`), inside that partition's event context (for the tables).
    Invalid messages are dead-lettered; they never stop the batch."""
    partition = events[0].message.partition
    for event in events:
        raw = event.value
        token = barrier_token(raw) if isinstance(raw, bytes) else None
        if token is not None:
            outcome.rows[partition].append(Barrier(token=token, stage=stage, partition=partition))
            continue
        with event_context(event):
            try:
                outcome.add(partition, handle(event.message, partition))
                metrics.EVENTS.labels(stage).inc()
            except InvalidEvent as error:
                outcome.dead.append(dead_letter_record(stage, event, error.reason))
            except Exception as error:  # a bug must not stall the key's partition forever
                log.error("%s: failed on %s", stage, traceback.format_exc())
                outcome.dead.append(dead_letter_record(stage, event, f"processing error: {error!r}"))


MAX_ROWS_PER_MESSAGE = 500  # a replay of a long history must not exceed the broker's message size


def _row_identity(row: Any) -> tuple | None:
    """Rows of which only the latest in a batch matters (the sink keeps the highest version)."""
    if row.kind == "position_state":
        return ("state", row.portfolio_id, row.security_id)
    if row.kind == "valuation_job":
        return ("job", row.portfolio_id, row.security_id, row.valuation_date, row.epoch)
    return None


def latest_state_only(rows: list[Any]) -> list[Any]:
    """Within one batch only the last position_state row of a key (and the last row of a
    valuation job) matters; dropping the others cuts what the sink writes for a busy key.
    A kept position_state row carries the earliest `changed_from` of the rows it replaces.
    Barriers bound the dedupe, so a barrier never overtakes the state it vouches for."""
    last: dict[tuple, int] = {}
    earliest: dict[tuple, Any] = {}
    segment = 0
    for i, row in enumerate(rows):
        if row.kind == "barrier":
            segment += 1
            continue
        identity = _row_identity(row)
        if identity is not None:
            key = (segment, identity)
            last[key] = i
            if row.kind == "position_state" and row.changed_from is not None:
                earliest[key] = min(row.changed_from, earliest.get(key, row.changed_from))
    keep, segment = [], 0
    for i, row in enumerate(rows):
        if row.kind == "barrier":
            segment += 1
        else:
            identity = _row_identity(row)
            if identity is not None:
                key = (segment, identity)
                if last[key] != i:
                    continue
                if key in earliest and earliest[key] != row.changed_from:
                    row = row.model_copy(update={"changed_from": earliest[key]})
        keep.append(row)
    return keep


def encode_rows(rows: list[Any]) -> bytes:
    return b"[" + b",".join(row.model_dump_json().encode() for row in rows) + b"]"


def partition_entry(partition: int, outcome: BatchOutcome, caches: Sequence[Any], source: bytes) -> Entry:
    """What one partition's step writes and sends, for the redo journal: each cache's dirty
    keys as whole encoded values, then the result rows (in messages of at most
    MAX_ROWS_PER_MESSAGE rows), the messages for other topics and the dead letters, in the
    order the step produced them."""
    started = perf_counter()
    writes = [write for cache in caches for write in cache.journal_writes()]
    encoded = perf_counter()
    outputs: list[Output] = []
    rows = latest_state_only(outcome.rows.get(partition, []))
    for start in range(0, len(rows), MAX_ROWS_PER_MESSAGE):
        outputs.append(Output("results", partition, source, encode_rows(rows[start : start + MAX_ROWS_PER_MESSAGE])))
    metrics.BUDGET.add("table_write", encoded - started)
    metrics.BUDGET.add("produce", perf_counter() - encoded)
    outputs += [Output(m.topic, m.partition, m.key, m.value) for m in outcome.messages]
    outputs += [Output("dead-letter", 0, b"dead", record) for record in outcome.dead]
    return Entry(tuple(writes), tuple(outputs))


def continuing(events: list[Any], applied: int) -> tuple[list[Any], Hole | None]:
    """The events that continue a partition from its last applied input offset without a
    hole (inputs at or below it left out: repeats of what a step applied), and the hole
    after them, if an input beyond it arrived (see epochflow.agents.holes). With nothing
    applied yet, the first event starts the run."""
    expected = applied + 1 if applied >= 0 else events[0].message.offset
    taken: list[Any] = []
    for event in events:
        if event.message.offset == expected:
            taken.append(event)
            expected += 1
    beyond = [event.message.offset for event in events if event.message.offset >= expected]
    if not beyond:
        return taken, None
    first = events[0].message
    return taken, Hole(first.topic, first.partition, expected, min(beyond))


def taken_up_to_a_hole(stage: str, events: list[Any], applied: int, holes: Holes) -> list[Any]:
    """The events of one partition to take now: those that continue from `applied` (see
    `continuing`); a hole after them is handed to `holes`, which sends the consumer back to
    it, or says where to go on from when the broker no longer has its inputs."""
    first = events[0].message
    fresh, hole = continuing(events, applied)
    if hole is None:
        holes.filled(first.topic, first.partition)
    elif (resume := holes.resume_at(stage, hole)) is not None:
        fresh += continuing(events, resume - 1)[0]
    return fresh


def partition_step(stage: str, events: list[Any], journal_table: str, get_journal: Callable[[bytes], bytes | None],
                   make_handler: Callable[[], tuple[Any, Sequence[Any]]], handle: Callable[[Any, Any, int], list[Any]],
                   source: bytes, holes: Holes | None) -> Entry | None:
    """One partition's step, as the batch runner takes it (and the fault-injection tests
    replay it): the inputs that continue from the offset the journal says was applied
    (those at or below it were delivered again after a step that applied them; those
    after a hole wait for it, unless `holes` says the broker no longer has it; with
    `holes` None the events are a sample, such as a clock's latest tick, and every one
    after it is taken),
    handled over a fresh handler and caches; the entry holds the step's writes, the new
    applied offset and its messages. None when no input is to be taken."""
    partition, topic = events[0].message.partition, events[0].message.topic
    applied = journal.applied_offset(get_journal, topic, partition)
    if holes is None:
        fresh = [event for event in events if event.message.offset > applied]
    else:
        fresh = taken_up_to_a_hole(stage, events, applied, holes)
    if not fresh:
        return None
    handler, caches = make_handler()
    outcome = BatchOutcome()
    run_partition(stage, fresh, lambda message, p: handle(handler, message, p), outcome)
    entry = partition_entry(partition, outcome, caches, source)
    mark = journal.applied_write(journal_table, topic, partition, fresh[-1].message.offset)
    return Entry(entry.writes + (mark,), entry.outputs)


def die(stage: str) -> None:
    """An error outside per-message handling (a table write, a send) leaves the agent's state
    unknown: stop the whole worker so the supervisor restarts it and at-least-once delivery
    repeats the batch, instead of leaving a dead agent in a live process."""
    import os

    log.critical("%s: fatal error, exiting so the worker restarts:\n%s", stage, traceback.format_exc())
    logging.shutdown()
    os._exit(70)
