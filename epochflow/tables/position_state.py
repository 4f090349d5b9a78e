"""A key's PositionState kept as two records: `position_state` (everything that changes on
every step: epoch, watermark, status, the holding's totals) and `position_book` (its open
lots and week index, which only transactions and re-costing change). No Faust here, so the
tests keep the state the way the role does."""

from __future__ import annotations

from dataclasses import dataclass, replace

from epochflow.domain.model import Lot, PositionState
from epochflow.tables.store import SplitStore


@dataclass(frozen=True, slots=True)
class PositionBook:
    """The large part of a key's state: its open lots (one per BUY still held, for a key
    that mostly buys) and its week index. Watermark advances and resets, most of a key's
    state writes, change neither, so they are kept apart and written only when changed."""

    lots: tuple[Lot, ...] = ()
    weeks: tuple[tuple[str, int], ...] = ()


def split_state(state: PositionState) -> tuple[PositionState, PositionBook]:
    book = PositionBook(state.holding.lots, state.weeks)
    return replace(state, holding=replace(state.holding, lots=()), weeks=()), book


def join_state(state: PositionState, book: PositionBook) -> PositionState:
    return replace(state, holding=replace(state.holding, lots=book.lots), weeks=book.weeks)


def state_store(main, book) -> SplitStore:
    """A key's PositionState over its two records (main, book)."""
    return SplitStore(main, book, split_state, join_state)
