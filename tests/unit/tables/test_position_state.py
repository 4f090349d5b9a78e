"""A key's state as two records (`epochflow/tables/position_state.py`): the open lots and
week index are written only when they change, a state written whole before reads as it was,
and the split is invisible to whoever reads the state."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from epochflow.domain.model import Holding, Lot, PositionState
from epochflow.tables.position_state import PositionBook, state_store
from epochflow.tables.store import CachedStore, MemoryStore

KEY = "P1|S1"
LOTS = tuple(Lot(Decimal(5), Decimal(500), Decimal(500), n) for n in range(400))
STATE = PositionState("P1", "S1", holding=Holding(Decimal(2000), Decimal(200000), Decimal(200000), LOTS),
                      weeks=tuple((f"2025-W{n:02d}", 7) for n in range(1, 53)), version=3)


def _stores():
    main, book = MemoryStore("position_state"), MemoryStore("position_book")
    return main, book, state_store(main, book)


def test_reads_back_what_was_written_and_keeps_the_lots_apart() -> None:
    main, book, store = _stores()
    store.put(KEY, STATE)
    assert store.get(KEY) == STATE
    assert main.data[KEY].holding.lots == () and main.data[KEY].weeks == ()
    assert book.data[KEY] == PositionBook(LOTS, STATE.weeks)


def test_a_change_that_leaves_the_lots_alone_writes_the_main_record_only() -> None:
    main, book, store = _stores()
    store.put(KEY, STATE)
    batch = CachedStore(store)
    advanced = replace(batch.get(KEY), watermark_date=date(2025, 6, 1), version=4)
    batch.put(KEY, advanced)
    writes = batch.journal_writes()
    assert [w.table for w in writes] == ["position_state"]
    assert len(writes[0].value) < 1000  # no lot in it

    bought = replace(advanced, holding=replace(advanced.holding, lots=LOTS + (Lot(Decimal(1), Decimal(9), Decimal(9), 400),)))
    batch.put(KEY, bought)
    assert [w.table for w in batch.journal_writes()] == ["position_state", "position_book"]


def test_a_state_written_whole_before_reads_as_it_was_and_is_split_by_its_next_write() -> None:
    main, book, store = _stores()
    main.put(KEY, STATE)  # a record from before the split: lots and weeks inside
    assert store.get(KEY) == STATE
    batch = CachedStore(store)
    batch.put(KEY, replace(STATE, version=4))
    assert [w.table for w in batch.journal_writes()] == ["position_state", "position_book"]
    batch.flush()
    assert main.data[KEY].holding.lots == () and store.get(KEY) == replace(STATE, version=4)


def test_delete_removes_both_records() -> None:
    main, book, store = _stores()
    store.put(KEY, STATE)
    store.delete(KEY)
    assert store.get(KEY) is None and KEY not in book.data
    assert [(w.table, w.value) for w in state_store(main, book).writes(KEY, None)] == [
        ("position_state", None), ("position_book", None)]
