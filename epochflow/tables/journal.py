"""The redo journal: a step's table writes and output messages become durable together.

A step (one batch of one agent, on one partition) writes records to several tables, each
with its own changelog topic, and sends messages to other topics. Kafka orders records
only within one topic-partition, so a worker killed in the middle of a step can leave any
subset of them on the broker: the new position state without the transaction fingerprint
that guards it, a job marked PROCESSING without its dispatch. Restored from that, a worker
would apply a re-delivered trade twice or wait for an answer that never comes.

The journal closes that gap for every role with one rule, `commit`:

1. Everything the step writes and sends is encoded into journal records of the role's
   journal table, under the step's partition: chunk records first, then a head record that
   names them (their count, and the step: a digest of its chunks, in every chunk's key, so
   a head never names another step's chunks). All of them go to ONE changelog
   topic-partition, which keeps their order, so a restored head always has its chunks. A
   journal larger than one chunk may span several record batches, and a batch the broker
   refuses for good does not stop the ones after it: its head goes only once its chunks
   are delivered.
2. Once the journal is delivered, the writes go to their tables and the messages are sent.
3. Once those are delivered, the journal is deleted (the deletes, again in the journal's
   own topic-partition, land before any later step's journal).

`redo` runs before a partition's next step (so after every restart or rebalance): a head
that is still there means step 2 may be incomplete, so its writes are applied again (they
are whole values, so applying one twice changes nothing) and its messages sent again
(every receiver recognises a repeat). A worker killed before the head is delivered has
changed nothing durable, and the step's input is delivered again, since the input offset
is committed only after `commit` returns.

Whatever prefix of a step's records reached the broker, the tables after `redo` are either
all of the step or none of it. A step also records the offset of the last input it applied
(`applied_key`), in its own writes: an input delivered again after that step (a kill before
the offset commit, a rebalance) is skipped, so at-least-once delivery has an exactly-once
effect on the tables and on what is sent; and inputs that do not continue from it show a
hole, which is read again instead of stepped over (epochflow.agents.holes). The fault-injection tests check this for every
role (tests/unit/faults/).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

CHUNK_BYTES = 256 * 1024  # far below any broker's message limit
JOURNAL_TABLE = "step_journal"  # the table's name in every role's app

_WRITE, _DELETE, _OUTPUT = b"W", b"D", b"O"
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Write:
    """A whole new value for one key of one table (None: the key is deleted)."""

    table: str
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Output:
    """A message to send: `topic` is the short topic name (see epochflow.streams.names)."""

    topic: str
    partition: int
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """What one step on one partition writes and sends, in order."""

    writes: tuple[Write, ...] = ()
    outputs: tuple[Output, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.writes or self.outputs)


def applied_key(topic: str, partition: int) -> bytes:
    """Where the journal table keeps the offset of the last input of `topic`'s partition
    that a step applied: written with the step's other writes, so a re-delivered input at
    or below it (a kill before the offset commit, a rebalance) is known to be applied
    already, and is skipped instead of applied again."""
    return b"applied|%s|p%d" % (topic.encode(), partition)


def applied_offset(get: Callable[[bytes], bytes | None], topic: str, partition: int) -> int:
    raw = get(applied_key(topic, partition))
    return -1 if raw is None else int(raw)


def applied_write(journal_table: str, topic: str, partition: int, offset: int) -> Write:
    return Write(journal_table, applied_key(topic, partition), str(offset).encode())


def head_key(partition: int) -> bytes:
    return b"head|p%d" % partition


def chunk_key(partition: int, index: int, step: str = "") -> bytes:
    """A chunk's key: named by its step (a digest of the step's chunks), so a head can only
    ever name the chunks written with it. (Chunks journalled before steps were named carry
    no step.)"""
    if not step:
        return b"chunk|p%d|%d" % (partition, index)
    return b"chunk|p%d|%s|%d" % (partition, step.encode(), index)


# -- encoding ---------------------------------------------------------------------------
def _field(value: bytes) -> bytes:
    return _LEN.pack(len(value)) + value


def _item(item: Write | Output) -> bytes:
    if isinstance(item, Write):
        if item.value is None:
            return _DELETE + _field(item.table.encode()) + _field(item.key)
        return _WRITE + _field(item.table.encode()) + _field(item.key) + _field(item.value)
    return _OUTPUT + _field(item.topic.encode()) + _LEN.pack(item.partition) + _field(item.key) + _field(item.value)


def records(partition: int, entry: Entry, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[bytes, bytes]]:
    """The journal records of one step, in the order they must be written: the chunks
    (each at most `chunk_bytes`, unless one item alone is larger), then the head."""
    chunks: list[bytes] = []
    current = bytearray()
    for item in (*entry.writes, *entry.outputs):
        encoded = _item(item)
        if current and len(current) + len(encoded) > chunk_bytes:
            chunks.append(bytes(current))
            current = bytearray()
        current += encoded
    if current:
        chunks.append(bytes(current))
    digest = hashlib.blake2b(digest_size=8)
    for chunk in chunks:
        digest.update(chunk)
    step = digest.hexdigest()
    head = json.dumps({"chunks": len(chunks), "step": step}).encode()
    return [(chunk_key(partition, i, step), chunk) for i, chunk in enumerate(chunks)] + [(head_key(partition), head)]


def _read_field(raw: bytes, at: int) -> tuple[bytes, int]:
    (length,) = _LEN.unpack_from(raw, at)
    at += _LEN.size
    return raw[at : at + length], at + length


def _decode_chunk(raw: bytes) -> Iterable[Write | Output]:
    at = 0
    while at < len(raw):
        kind, at = raw[at : at + 1], at + 1
        if kind == _OUTPUT:
            topic, at = _read_field(raw, at)
            (partition,) = _LEN.unpack_from(raw, at)
            key, at = _read_field(raw, at + _LEN.size)
            value, at = _read_field(raw, at)
            yield Output(topic.decode(), partition, key, value)
            continue
        table, at = _read_field(raw, at)
        key, at = _read_field(raw, at)
        value = None
        if kind == _WRITE:
            value, at = _read_field(raw, at)
        elif kind != _DELETE:
            raise ValueError(f"corrupt journal chunk: item kind {kind!r}")
        yield Write(table.decode(), key, value)


def read(get: Callable[[bytes], bytes | None], partition: int) -> tuple[Entry, list[bytes]] | None:
    """The journalled step of a partition and the keys of its records, or None when no step
    is outstanding.

    A head is written only once its chunks are delivered (with them, in one record batch,
    or after them), and its chunks are deleted only once the step's writes and messages are
    delivered. So a head whose chunks are not all there belongs to a step that finished,
    whose deletes landed in part (the broker refused the head's and took the chunks'): it
    is no journal."""
    head = get(head_key(partition))
    if head is None:
        return None
    named = json.loads(head)
    writes: list[Write] = []
    outputs: list[Output] = []
    keys = [chunk_key(partition, i, named.get("step", "")) for i in range(named["chunks"])]
    chunks = [get(key) for key in keys]
    if any(chunk is None for chunk in chunks):
        return None
    for chunk in chunks:
        for item in _decode_chunk(chunk):
            (writes if isinstance(item, Write) else outputs).append(item)
    return Entry(tuple(writes), tuple(outputs)), keys + [head_key(partition)]


# -- the protocol ---------------------------------------------------------------------------
class StepIO(Protocol):
    """What `commit` and `redo` need from a worker: its journal table, its other tables, its
    producer. `put_journal`, `apply` and `send` only enqueue (and write the local copy);
    `delivered` waits until everything enqueued so far is on the broker; `dispatch` hands it
    to the producer without waiting (a later `delivered` waits for it)."""

    def get_journal(self, partition: int, key: bytes) -> bytes | None: ...
    def put_journal(self, partition: int, key: bytes, value: bytes | None) -> None: ...
    def apply(self, partition: int, write: Write) -> None: ...
    def send(self, output: Output) -> object: ...
    async def delivered(self) -> None: ...
    async def dispatch(self) -> None: ...


@dataclass
class Committed:
    """What a commit or redo did, for metrics and logs."""

    journal_records: int = 0
    writes: int = 0
    outputs: int = 0
    partitions: list[int] = field(default_factory=list)


async def commit(io: StepIO, entries: Mapping[int, Entry], chunk_bytes: int = CHUNK_BYTES) -> Committed:
    """Make each partition's step durable as a whole (see the module's docstring). A step
    with writes is journalled first; one that only sends messages needs no journal (with no
    state changed, its re-delivered input produces the same messages again)."""
    done = Committed()
    planned = {partition: records(partition, entry, chunk_bytes) for partition, entry in entries.items() if entry.writes}
    # within one chunk's bytes, the chunks and the head fit one record batch (512 KB,
    # epochflow.app), which the broker takes or refuses whole; more may span several
    held = {partition for partition, written in planned.items()
            if sum(len(value) for _, value in written[:-1]) > chunk_bytes}
    for partition, written in planned.items():
        *chunks, head = written
        for key, value in chunks:
            io.put_journal(partition, key, value)
        if partition not in held:
            io.put_journal(partition, *head)
        done.journal_records += len(written)
    if held:
        await io.delivered()
        for partition in held:
            io.put_journal(partition, *planned[partition][-1])
    if planned:
        await io.delivered()
    _apply(io, entries, done)
    await io.delivered()
    for partition, written in planned.items():
        for key, _ in reversed(written):  # the head goes first: a partial delete is no journal
            io.put_journal(partition, key, None)
    await io.dispatch()  # the next step's first delivery waits for the deletes
    return done


async def redo(io: StepIO, partitions: Iterable[int]) -> Committed:
    """Finish every partition's outstanding step, if any; nothing to do is the usual case."""
    outstanding: dict[int, tuple[Entry, list[bytes]]] = {}
    for partition in partitions:
        found = read(lambda key, p=partition: io.get_journal(p, key), partition)
        if found is not None:
            outstanding[partition] = found
    done = Committed()
    if not outstanding:
        return done
    _apply(io, {p: entry for p, (entry, _) in outstanding.items()}, done)
    await io.delivered()
    for partition, (_, keys) in outstanding.items():
        for key in reversed(keys):
            io.put_journal(partition, key, None)
    await io.dispatch()
    return done


def _apply(io: StepIO, entries: Mapping[int, Entry], done: Committed) -> None:
    for partition, entry in entries.items():
        for write in entry.writes:
            io.apply(partition, write)
        for output in entry.outputs:
            io.send(output)
        done.writes += len(entry.writes)
        done.outputs += len(entry.outputs)
        done.partitions.append(partition)
