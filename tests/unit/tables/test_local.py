"""A table's partition database read and written directly (`epochflow.tables.local`) is
the same data Faust's own table API reads and writes: a real Faust RocksDB store, a real
in-memory one for the fallback."""

from __future__ import annotations

from dataclasses import dataclass

import faust
import pytest

from epochflow.agents.batching import event_context
from epochflow.tables import local


@dataclass
class Message:
    partition: int
    topic: str = "t-changelog"


@dataclass
class Event:
    message: Message


def on(partition: int):
    return event_context(Event(Message(partition)))


def faust_table(store: str, name: str, directory):
    app = faust.App(f"local-{name}", store=store, datadir=str(directory), autodiscover=False)
    return app.Table("t", key_type=bytes, value_type=bytes, partitions=2, default=None)


@pytest.fixture(params=["rocksdb://", "memory://"], ids=["rocksdb", "memory"])
def table(request, tmp_path):
    return faust_table(request.param, request.node.name, tmp_path)


def test_a_rocksdb_table_has_a_database_per_partition_and_a_memory_table_none(table):
    db = local.partition_db(table, 1)
    assert (db is not None) == (table.data.__class__.__module__ == "faust.stores.rocksdb")


def test_what_is_put_directly_is_what_faust_reads_in_that_partition_only(tmp_path):
    table = faust_table("rocksdb://", "partitions", tmp_path)  # (the memory store keeps one mapping)
    with on(1):
        local.put(table, 1, b"k", b"v")
        assert table.data._key_index[b"k"] == 1  # where Faust's reads without an event look first
        assert local.get(table, 1, b"k") == b"v"
        assert table.get(b"k") == b"v"
    with on(0):
        assert local.get(table, 0, b"k") is None
        assert table.get(b"k") is None
    assert table.get(b"k") == b"v"  # no event: Faust finds the partition that holds it


def test_what_faust_writes_is_read_directly(table):
    with on(0):
        table.data[b"k"] = b"w"  # the table's store: the table itself would also send a changelog record
        assert local.get(table, 0, b"k") == b"w"


def test_a_key_read_directly_is_indexed_where_faust_looks_first(tmp_path):
    table = faust_table("rocksdb://", "index", tmp_path)
    with on(1):
        table.data[b"k"] = b"w"
    table.data._key_index.clear()
    with on(1):
        assert local.get(table, 1, b"k") == b"w"
    assert table.data._key_index[b"k"] == 1


def test_a_key_is_deleted_and_a_missing_key_deleted_again_changes_nothing(table):
    with on(1):
        local.put(table, 1, b"k", None)
        local.put(table, 1, b"k", b"v")
        local.put(table, 1, b"k", None)
        assert local.get(table, 1, b"k") is None
        assert table.get(b"k") is None
        local.put(table, 1, b"k", None)
        assert local.get(table, 1, b"k") is None
