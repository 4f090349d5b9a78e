"""The valuation role's copy of each key's history, kept from the positions role's rows.

The copy holds one epoch of a key at a time, in chunks of `CHUNK` entries by position in
the history (`seq`), each chunk knowing its first date so an end-of-day lookup reads one or
two chunks. Rows of an older epoch are dropped (see `fencing`); a row of a newer epoch
replaces the copy (a carry-over keeps what the new epoch shares with the old one).

Each `on_*` function is pure: it reads chunks through the loader it is given and returns
the key's new record and the chunks to write.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from epochflow.domain import fencing
from epochflow.domain.valuation import DailyPosition

CHUNK = 256  # history entries per cache chunk, by position in the history


@dataclass(frozen=True, slots=True)
class CachedEntry:
    seq: int
    day: date
    quantity: Decimal
    cost_local: Decimal
    cost_base: Decimal | None


@dataclass(frozen=True, slots=True)
class HistoryChunk:
    number: int
    entries: tuple[CachedEntry, ...] = ()  # by seq, contiguous from number * CHUNK


@dataclass(frozen=True, slots=True)
class CachedKey:
    """What the valuation role knows of a key's history: its epoch, the positions state
    version it has caught up with, and the chunks it holds (with their first dates)."""

    epoch: int = 0
    state_version: int = 0
    length: int = 0
    chunk_first_dates: tuple[tuple[int, date], ...] = ()


def chunk_of(seq: int) -> int:
    return seq // CHUNK


ChunkLoader = Callable[[int], HistoryChunk | None]


@dataclass(frozen=True, slots=True)
class CopyStep:
    cached: CachedKey | None = None  # the key's new record; None: nothing to write
    chunks: tuple[tuple[int, HistoryChunk | None], ...] = ()  # chunks to write (None: delete), in order
    stale: bool = False  # a row of an older epoch than the copy's: dropped (and counted)


class _Chunks:
    """The chunks as the step has changed them so far, over the loader."""

    def __init__(self, load: ChunkLoader) -> None:
        self.load = load
        self.writes: dict[int, HistoryChunk | None] = {}

    def get(self, number: int) -> HistoryChunk | None:
        return self.writes[number] if number in self.writes else self.load(number)

    def put(self, number: int, chunk: HistoryChunk | None) -> None:
        self.writes[number] = chunk

    def step(self, cached: CachedKey) -> CopyStep:
        return CopyStep(cached, tuple(self.writes.items()))


# ---- rows from the positions role --------------------------------------------------------

def on_carry_over(cached: CachedKey, to_epoch: int, before_date: date, load: ChunkLoader) -> CopyStep:
    """A new epoch keeps the history before `before_date`; the rest is sent again."""
    if not fencing.opens_epoch(to_epoch, cached.epoch):
        return CopyStep()
    chunks = _Chunks(load)
    keep = _length_before(cached, before_date, chunks)
    return chunks.step(_truncate(replace(cached, epoch=to_epoch), keep, chunks))


def on_history_row(cached: CachedKey, epoch: int, entry: CachedEntry, load: ChunkLoader) -> CopyStep:
    """One history entry (its position after a transaction) at `entry.seq`."""
    if fencing.is_stale(epoch, cached.epoch):
        return CopyStep(stale=True)
    chunks = _Chunks(load)
    if fencing.opens_epoch(epoch, cached.epoch):
        cached = replace(_truncate(cached, 0, chunks), epoch=epoch)
    number = chunk_of(entry.seq)
    chunk = chunks.get(number) or HistoryChunk(number)
    entries = [e for e in chunk.entries if e.seq != entry.seq]
    entries.insert(bisect.bisect_left([e.seq for e in entries], entry.seq), entry)
    chunks.put(number, HistoryChunk(number, tuple(entries)))
    firsts = dict(cached.chunk_first_dates)
    firsts[number] = entries[0].day
    return chunks.step(replace(cached, length=max(cached.length, entry.seq + 1),
                               chunk_first_dates=tuple(sorted(firsts.items()))))


def on_state_row(cached: CachedKey, epoch: int, version: int, txn_count: int, load: ChunkLoader) -> CopyStep:
    """The key's position state: the copy has caught up with `version`; the history has
    `txn_count` entries (a longer copy has a stale tail)."""
    if fencing.is_stale(epoch, cached.epoch):
        return CopyStep()
    chunks = _Chunks(load)
    if fencing.opens_epoch(epoch, cached.epoch):
        cached = replace(_truncate(cached, 0, chunks), epoch=epoch)
    cached = _truncate(cached, txn_count, chunks)
    return chunks.step(replace(cached, state_version=max(cached.state_version, version)))


def _length_before(cached: CachedKey, day: date, chunks: _Chunks) -> int:
    """How many entries are dated before `day`."""
    for number, _ in reversed(cached.chunk_first_dates):
        chunk = chunks.get(number)
        if chunk is None or not chunk.entries:
            continue
        i = bisect.bisect_left([e.day for e in chunk.entries], day)
        if i > 0 or number == 0:
            return chunk.entries[0].seq + i
    return 0


def _truncate(cached: CachedKey, length: int, chunks: _Chunks) -> CachedKey:
    """Keep the first `length` entries."""
    if length >= cached.length:
        return cached
    kept = []
    for number, first in cached.chunk_first_dates:
        start = number * CHUNK
        if start >= length:
            chunks.put(number, None)
            continue
        if start + CHUNK > length:
            chunk = chunks.get(number)
            if chunk is not None:
                chunks.put(number, HistoryChunk(number, tuple(e for e in chunk.entries if e.seq < length)))
        kept.append((number, first))
    return replace(cached, length=length, chunk_first_dates=tuple(kept))


# ---- reading the copy --------------------------------------------------------------------

def end_of_day(cached: CachedKey, day: date, load: ChunkLoader) -> DailyPosition | None:
    """The position after the last entry dated `day` or earlier."""
    candidates = [n for n, first in cached.chunk_first_dates if first <= day]
    for number in reversed(candidates):
        chunk = load(number)
        if chunk is None or not chunk.entries:
            continue
        i = bisect.bisect_right([e.day for e in chunk.entries], day) - 1
        if i >= 0:
            e = chunk.entries[i]
            return DailyPosition(e.day, e.quantity, e.cost_local, e.cost_base)
    return None


def caught_up(cached: CachedKey, job_epoch: int, job_state_version: int, job_ref_offset: int,
              ref_offset_seen: int) -> bool:
    """Has the copy (and the reference data, read up to `ref_offset_seen`) reached what the
    scheduler had seen when it dispatched the job? A job of an older epoch counts as caught
    up: it is answered at once (STALE)."""
    if fencing.is_stale(job_epoch, cached.epoch):
        return True
    return not (fencing.opens_epoch(job_epoch, cached.epoch) or cached.state_version < job_state_version
                or ref_offset_seen < job_ref_offset)
