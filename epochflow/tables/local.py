"""A table's local RocksDB database of one partition, read and written directly.

Faust's table API costs several microseconds a call on top of RocksDB's: the mapping
layers of `mode`, the key serializer (a no-op for raw bytes), a sensor, and a `KeyError`
raised for every missing key. A step reads and writes tens of thousands of keys, always in
the context of one of its partition's events, so it asks the partition's database itself,
as Faust's own `_get` and `_set` do in that context (`faust/stores/rocksdb.py`).

A table whose store is not per-partition RocksDB (the in-memory store of the agent tests),
or that Faust reads across partitions (global tables, tables partitioned by the
partitioner), has no such database: `get` and `put` then go through the table, which takes
the partition from the current event, so they are called in the context of one of the
partition's events either way.
"""

from __future__ import annotations

from typing import Any


def partition_db(table: Any, partition: int) -> Any | None:
    """The RocksDB database of `table` for `partition` (opened if this worker had not yet),
    or None when the table is not kept in one database per partition."""
    store = table.data
    if table.is_global or table.use_partitioner or not hasattr(store, "_db_for_partition"):
        return None
    return store._db_for_partition(partition)


def get(table: Any, partition: int, key: bytes) -> bytes | None:
    db = partition_db(table, partition)
    if db is None:
        return table.get(key)
    value = db.get(key)
    if value is not None:
        table.data._key_index[key] = partition  # where Faust's reads without an event look first
    return value


def put(table: Any, partition: int, key: bytes, value: bytes | None) -> None:
    """Write `value` (None: delete) for `key` in the partition's database."""
    db = partition_db(table, partition)
    store = table.data
    if db is None:
        if value is not None:
            store[key] = value
        elif key in store:
            del store[key]
        return
    if value is not None:
        db.put(key, value)
        store._key_index[key] = partition
    else:
        db.delete(key)
