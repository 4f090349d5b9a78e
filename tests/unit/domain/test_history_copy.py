"""The valuation role's copy of a key's history as pure steps: epoch fencing of each row
kind, truncation to a new epoch's carry-over or to the state's txn_count, chunk writes, and
when a job's view has caught up. (The handler over stores is in
tests/unit/agents/test_valuation_handler.py, with end-of-day lookups across chunks.)"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from epochflow.domain.history_copy import (
    CHUNK,
    CachedEntry,
    CachedKey,
    CopyStep,
    HistoryChunk,
    caught_up,
    end_of_day,
    on_carry_over,
    on_history_row,
    on_state_row,
)

START = date(2025, 1, 1)


def day_of(seq: int) -> date:
    return START + timedelta(days=seq)  # one entry a day


def entry(seq: int) -> CachedEntry:
    return CachedEntry(seq, day_of(seq), Decimal(seq + 1), Decimal(10 * (seq + 1)), Decimal(11 * (seq + 1)))


class Copy:
    """A key's copy in memory: its record and its chunks, changed by applying steps."""

    def __init__(self) -> None:
        self.cached = CachedKey()
        self.chunks: dict[int, HistoryChunk] = {}

    def apply(self, step: CopyStep) -> CopyStep:
        for number, chunk in step.chunks:
            if chunk is None:
                self.chunks.pop(number, None)
            else:
                self.chunks[number] = chunk
        if step.cached is not None:
            self.cached = step.cached
        return step

    def row(self, seq: int, epoch: int = 0) -> CopyStep:
        return self.apply(on_history_row(self.cached, epoch, entry(seq), self.chunks.get))

    def state(self, epoch: int, version: int, txn_count: int) -> CopyStep:
        return self.apply(on_state_row(self.cached, epoch, version, txn_count, self.chunks.get))

    def carry(self, to_epoch: int, before: date) -> CopyStep:
        return self.apply(on_carry_over(self.cached, to_epoch, before, self.chunks.get))

    def seqs(self) -> list[int]:
        return [e.seq for n in sorted(self.chunks) for e in self.chunks[n].entries]


def loaded(length: int, epoch: int = 0) -> Copy:
    copy = Copy()
    for seq in range(length):
        copy.row(seq, epoch)
    copy.state(epoch, 1, length)
    return copy


def test_rows_fill_chunks_in_seq_order_whatever_the_arrival() -> None:
    copy = Copy()
    for seq in [CHUNK + 1, 0, CHUNK, 1, 2]:
        copy.row(seq)
    assert copy.seqs() == [0, 1, 2, CHUNK, CHUNK + 1]
    assert copy.cached.length == CHUNK + 2
    assert copy.cached.chunk_first_dates == ((0, day_of(0)), (1, day_of(CHUNK)))


def test_a_row_sent_again_replaces_its_entry() -> None:
    copy = loaded(3)
    copy.row(1)
    assert copy.seqs() == [0, 1, 2]


ROWS_BY_EPOCH = {
    # name: (row epoch, stale, copy epoch after, entries after)
    "older-epoch-dropped-and-counted": (0, True, 1, 5),
    "same-epoch-applied": (1, False, 1, 5),
    "newer-epoch-replaces-the-copy": (2, False, 2, 1),
}


@pytest.mark.parametrize("epoch,stale,epoch_after,entries", [pytest.param(*c, id=n) for n, c in ROWS_BY_EPOCH.items()])
def test_a_history_row_is_fenced_by_epoch(epoch, stale, epoch_after, entries) -> None:
    copy = loaded(5, epoch=1)
    step = copy.row(2, epoch)
    assert step.stale is stale
    assert (step.cached is None) is stale and (step.chunks == ()) is stale
    assert copy.cached.epoch == epoch_after and len(copy.seqs()) == entries


STATE_ROWS = {
    # name: (row epoch, version, txn_count, copy epoch after, state version after, entries after)
    "older-epoch-ignored": (0, 9, 0, 1, 1, CHUNK + 5),
    "catches-up-with-its-version": (1, 4, CHUNK + 5, 1, 4, CHUNK + 5),
    "never-moves-the-version-back": (1, 0, CHUNK + 5, 1, 1, CHUNK + 5),
    "shorter-history-truncates-the-tail": (1, 2, CHUNK - 1, 1, 2, CHUNK - 1),
    "newer-epoch-empties-the-copy": (2, 1, CHUNK + 5, 2, 1, 0),
}


@pytest.mark.parametrize("epoch,version,txn_count,epoch_after,version_after,entries",
                         [pytest.param(*c, id=n) for n, c in STATE_ROWS.items()])
def test_a_state_row(epoch, version, txn_count, epoch_after, version_after, entries) -> None:
    copy = loaded(CHUNK + 5, epoch=1)
    copy.state(epoch, version, txn_count)
    assert (copy.cached.epoch, copy.cached.state_version) == (epoch_after, version_after)
    assert len(copy.seqs()) == entries == min(copy.cached.length, entries)
    assert sorted(copy.chunks) == sorted({seq // CHUNK for seq in copy.seqs()})


CARRIES = {
    # name: (to epoch, before, epoch after, entries kept)
    "keeps-what-came-before-its-date": (2, day_of(CHUNK + 2), 2, CHUNK + 2),
    "before-the-first-entry-keeps-nothing": (2, START, 2, 0),
    "inside-chunk-0": (2, day_of(10), 2, 10),
    "not-a-newer-epoch-is-ignored": (1, day_of(3), 1, CHUNK + 5),
}


@pytest.mark.parametrize("to_epoch,before,epoch_after,kept", [pytest.param(*c, id=n) for n, c in CARRIES.items()])
def test_a_carry_over(to_epoch, before, epoch_after, kept) -> None:
    copy = loaded(CHUNK + 5, epoch=1)
    copy.carry(to_epoch, before)
    assert copy.cached.epoch == epoch_after
    assert copy.seqs() == list(range(kept)) and copy.cached.length == kept


def test_end_of_day_reads_the_copy() -> None:
    copy = loaded(CHUNK + 5)
    found = end_of_day(copy.cached, day_of(CHUNK + 1), copy.chunks.get)
    assert found is not None and found.day == day_of(CHUNK + 1) and found.quantity == CHUNK + 2
    assert end_of_day(copy.cached, START - timedelta(days=1), copy.chunks.get) is None


CAUGHT_UP = {
    # name: ((copy epoch, copy state version), (job epoch, job state version, job ref offset), ref seen, caught up)
    "everything-seen": ((1, 5), (1, 5, 10), 10, True),
    "state-version-behind": ((1, 4), (1, 5, 10), 10, False),
    "reference-behind": ((1, 5), (1, 5, 10), 9, False),
    "job-of-a-newer-epoch": ((1, 9), (2, 1, 0), 10, False),
    "job-of-an-older-epoch-is-answered-at-once": ((2, 0), (1, 9, 99), 0, True),
}


@pytest.mark.parametrize("copy,job,seen,expected", [pytest.param(*c, id=n) for n, c in CAUGHT_UP.items()])
def test_caught_up(copy, job, seen, expected) -> None:
    cached = CachedKey(epoch=copy[0], state_version=copy[1])
    assert caught_up(cached, *job, seen) is expected
