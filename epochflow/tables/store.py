"""A typed store in front of every table: the agents (and tests) talk to `get`/`put`/
`delete`; `FaustStore` sits on a changelog-backed Faust table, `MemoryStore` is its twin.

`CachedStore` is a write-through view for one batch: steps within the batch see each
other's writes, and each key is written to the table once at the end of the batch,
through the redo journal (`journal_writes`, see epochflow.tables.journal).

`SplitStore` keeps one value as two records in two tables, so a large part that rarely
changes is not written again with every small change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar

from faust.streams import current_event

from epochflow.metrics import BUDGET
from epochflow.tables import local
from epochflow.tables.codec import decode, encode
from epochflow.tables.journal import Write

V = TypeVar("V")
P = TypeVar("P")
_MISSING = object()


class Store(Protocol[V]):
    def get(self, key: str) -> V | None: ...
    def put(self, key: str, value: V) -> None: ...
    def delete(self, key: str) -> None: ...


class MemoryStore(Generic[V]):
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.data: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        return self.data.get(key)

    def put(self, key: str, value: V) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def write(self, key: str, value: V | None) -> Write:
        return Write(self.name, key.encode(), None if value is None else encode(value, Any))


class DecodedCache:
    """Decoded values by key, each with the bytes it was decoded from. A hit needs the
    table's current bytes to be equal, so the cache can never serve a stale value (after a
    rebalance or a recovery, the bytes differ and the value is decoded again)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[bytes, tuple[bytes, Any]] = OrderedDict()

    def get(self, key: bytes, raw: bytes) -> Any:
        hit = self.entries.get(key)
        if hit is not None and hit[0] == raw:
            self.entries.move_to_end(key)
            return hit[1]
        return _MISSING

    def put(self, key: bytes, raw: bytes, value: Any) -> None:
        self.entries[key] = (raw, value)
        self.entries.move_to_end(key)
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)


class FaustStore(Generic[V]):
    """Values are encoded here (raw bytes in the table), so the table never pickles and
    the changelog stays compact JSON. Decoding is the expensive part of a read, so decoded
    values are kept (see DecodedCache)."""

    def __init__(self, table: Any, kind: Any, cache: DecodedCache | None = None) -> None:
        self.table = table
        self.kind = kind
        self.cache = cache if cache is not None else DecodedCache()

    def get(self, key: str) -> V | None:
        started = perf_counter()
        raw_key = key.encode()
        event = current_event()  # a step reads in the context of one of the key's partition's events
        raw = self.table.get(raw_key) if event is None else local.get(self.table, event.message.partition, raw_key)
        value = None
        if raw is not None:
            value = self.cache.get(raw_key, raw)
            if value is _MISSING:
                value = decode(raw, self.kind)
                self.cache.put(raw_key, raw, value)
        BUDGET.add("table_read", perf_counter() - started)
        return value

    def put(self, key: str, value: V) -> None:
        raw_key = key.encode()
        raw = encode(value, self.kind)
        self.table[raw_key] = raw
        self.cache.put(raw_key, raw, value)

    def delete(self, key: str) -> None:
        raw_key = key.encode()
        if raw_key in self.table:
            del self.table[raw_key]

    def write(self, key: str, value: V | None) -> Write:
        """`value` for `key` as the redo journal writes it to this table (None: deleted).
        The decoded value is remembered against its bytes, so reading it back once the
        journal has applied it costs no decoding."""
        raw_key = key.encode()
        if value is None:
            return Write(self.table.name, raw_key, None)
        raw = encode(value, self.kind)
        self.cache.put(raw_key, raw, value)
        return Write(self.table.name, raw_key, raw)


class SplitStore(Generic[V, P]):
    """One value kept as two records under the same key: `main` gets what `split` leaves
    of it on every write, `part` the large rest, and only when that changed. A key whose
    part was never kept apart (a value written whole before) reads as it was written."""

    def __init__(self, main, part, split: Callable[[V], tuple[V, P]], join: Callable[[V, P], V]) -> None:
        self.main = main
        self.part = part
        self.split = split
        self.join = join

    def get(self, key: str) -> V | None:
        value = self.main.get(key)
        if value is None:
            return None
        part = self.part.get(key)
        return value if part is None else self.join(value, part)

    def _apart(self, key: str, value: V) -> tuple[V, P | None]:
        """The main record, and the part if it is not what the part table holds (a part
        read and handed back unchanged is the same object: comparing it costs nothing)."""
        main, part = self.split(value)
        return main, None if self.part.get(key) == part else part

    def put(self, key: str, value: V) -> None:
        main, part = self._apart(key, value)
        self.main.put(key, main)
        if part is not None:
            self.part.put(key, part)

    def delete(self, key: str) -> None:
        self.main.delete(key)
        self.part.delete(key)

    def writes(self, key: str, value: V | None) -> list[Write]:
        """What the redo journal writes for `value`: the main record always, the part when
        it changed (None: both deleted)."""
        if value is None:
            return [self.main.write(key, None), self.part.write(key, None)]
        main, part = self._apart(key, value)
        return [self.main.write(key, main)] + ([] if part is None else [self.part.write(key, part)])


class CachedStore(Generic[V]):
    def __init__(self, backing: Store[V]) -> None:
        self.backing = backing
        self.cache: dict[str, Any] = {}
        self.dirty: dict[str, Any] = {}

    def get(self, key: str) -> V | None:
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            value = self.backing.get(key)
            self.cache[key] = value
        return value  # type: ignore[return-value]

    def put(self, key: str, value: V) -> None:
        self.cache[key] = value
        self.dirty[key] = value

    def delete(self, key: str) -> None:
        self.cache[key] = None
        self.dirty[key] = None

    def pending(self) -> Iterator[tuple[str, V | None]]:
        return iter(self.dirty.items())

    def journal_writes(self) -> list[Write]:
        """The dirty keys as the redo journal writes them (the backing store encodes them;
        a `SplitStore` writes a key as one or two records)."""
        if isinstance(self.backing, SplitStore):
            return [w for key, value in self.dirty.items() for w in self.backing.writes(key, value)]
        return [self.backing.write(key, value) for key, value in self.dirty.items()]

    def flush(self, keys: set[str] | None = None) -> None:
        """Write the dirty keys (all, or those given) to the backing store."""
        for key in list(self.dirty):
            if keys is not None and key not in keys:
                continue
            value = self.dirty.pop(key)
            if value is None:
                self.backing.delete(key)
            else:
                self.backing.put(key, value)
