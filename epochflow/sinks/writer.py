"""The sink's writer: one batch of result rows, one PostgreSQL transaction.

Each statement is a single multi-row `INSERT ... SELECT FROM unnest(<one array per
column>) ON CONFLICT ...`: the number of bind parameters does not grow with the batch
(no 32k-parameter ceiling) and the SQL text is the same for every batch, so asyncpg's
prepared-statement cache is hit every time.

Guarantees (at-least-once delivery makes every batch a candidate for redelivery):

* idempotent: writing a batch twice changes nothing. Updates only fire when the stored
  row differs, so a replayed batch does not even touch `updated_at`.
* epoch-aware: a transaction row never replaces one of a higher epoch (an equal epoch
  replaces it, that is an amendment); a position_state row replaces the stored one only
  when its (epoch, version) is greater or equal. position_history rows are keyed by
  epoch, so they are plain upserts; barriers keep their first `seen_at`.
* order-preserving: the result equals applying the batch's rows one by one in order.
  Rows of one kind are first reduced to one per primary key, keeping the row that would
  have won when applied in order (the last one of the highest (epoch[, version])).

The ordering rule. transactions, position_state and pipeline_barriers do not depend on
each other or on the history, so each is one statement per batch. position_history and
history carry-overs do depend on each other: a carry-over copies the `from_epoch` rows,
so the history rows of that key and epoch that came before it in the batch must be
written first, and those that came after it must not be copied. History rows are
therefore buffered and flushed just before a carry-over that reads one of them, and
a carry-over runs at its place in the batch. Rows of other keys or epochs commute with a
carry-over, including `to_epoch` rows: the copy never overwrites (DO NOTHING) and a
`to_epoch` row overwrites a copied one, so either order ends with the explicit row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Table, and_, bindparam, column, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement, Executable

from epochflow.schemas.results import (
    Barrier,
    HistoryCarryOver,
    PositionHistoryRow,
    PositionStateRow,
    ResultRow,
    TransactionRow,
)
from epochflow.sinks.models import pipeline_barriers, position_history, position_state, transactions
from epochflow.sinks.schema import create_engine

R = TypeVar("R")

HistoryItem = PositionHistoryRow | HistoryCarryOver


class ResultWriter:
    """Writes batches of `ResultRow`s; share one per process (it holds a connection pool)."""

    def __init__(self, database: str | AsyncEngine, **engine_kwargs: Any) -> None:
        """`database` is a `postgresql://` URL (the writer then owns its engine and
        `close()` disposes of it) or an engine the caller keeps owning."""
        self._owns_engine = isinstance(database, str)
        self.engine = create_engine(database, **engine_kwargs) if isinstance(database, str) else database

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    async def write(self, rows: Sequence[ResultRow]) -> None:
        """Write the batch atomically: all of it is visible, or (on error) none of it."""
        if not rows:
            return
        txs: list[TransactionRow] = []
        states: list[PositionStateRow] = []
        barriers: list[Barrier] = []
        history: list[HistoryItem] = []
        for row in rows:
            match row:
                case TransactionRow():
                    txs.append(row)
                case PositionStateRow():
                    states.append(row)
                case Barrier():
                    barriers.append(row)
                case PositionHistoryRow() | HistoryCarryOver():
                    history.append(row)
                case _:
                    raise TypeError(f"not a result row: {type(row).__name__}")

        async with self.engine.begin() as conn:
            if txs:
                await conn.execute(_transactions_upsert(txs))
            if history:
                await _write_history(conn, history)
            if states:
                await conn.execute(_position_state_upsert(states))
            # Last, so a barrier never becomes visible before what preceded it (the whole
            # batch commits at once anyway; this keeps it true if that ever changes).
            if barriers:
                await conn.execute(_barriers_insert(barriers))


# -- per-kind statements ------------------------------------------------------------------


def _transactions_upsert(rows: list[TransactionRow]) -> Executable:
    kept = _winners(rows, key=lambda r: r.transaction_id, replaces=lambda new, old: new.epoch >= old.epoch)
    stmt = pg_insert(transactions).from_select(
        TRANSACTION_COLUMNS, _unnest(transactions, TRANSACTION_COLUMNS, kept)
    )
    content = [c for c in TRANSACTION_COLUMNS if c != "transaction_id"]
    return stmt.on_conflict_do_update(
        index_elements=["transaction_id"],
        set_={**{c: stmt.excluded[c] for c in content}, "updated_at": func.now()},
        where=and_(
            transactions.c.epoch <= stmt.excluded.epoch, _differs(transactions, stmt.excluded, content)
        ),
    )


def _history_upsert(rows: list[PositionHistoryRow]) -> Executable:
    kept = _winners(rows, key=_history_key, replaces=lambda new, old: True)
    stmt = pg_insert(position_history).from_select(
        HISTORY_COLUMNS, _unnest(position_history, HISTORY_COLUMNS, kept)
    )
    content = [c for c in HISTORY_COLUMNS if c not in HISTORY_PK]
    return stmt.on_conflict_do_update(
        index_elements=HISTORY_PK,
        set_={c: stmt.excluded[c] for c in content},
        where=_differs(position_history, stmt.excluded, content),
    )


def _carry_over(carry: HistoryCarryOver) -> Executable:
    h = position_history
    copied = select(
        *(
            literal(carry.to_epoch, h.c.epoch.type).label(c) if c == "epoch" else h.c[c]
            for c in HISTORY_COLUMNS
        )
    ).where(
        h.c.portfolio_id == carry.portfolio_id,
        h.c.security_id == carry.security_id,
        h.c.epoch == carry.from_epoch,
        h.c.position_date < carry.before_date,
    )
    return pg_insert(h).from_select(HISTORY_COLUMNS, copied).on_conflict_do_nothing(index_elements=HISTORY_PK)


def _position_state_upsert(rows: list[PositionStateRow]) -> Executable:
    kept = _winners(
        rows,
        key=lambda r: (r.portfolio_id, r.security_id),
        replaces=lambda new, old: (new.epoch, new.version) >= (old.epoch, old.version),
    )
    stmt = pg_insert(position_state).from_select(STATE_COLUMNS, _unnest(position_state, STATE_COLUMNS, kept))
    content = [c for c in STATE_COLUMNS if c not in ("portfolio_id", "security_id")]
    stored, incoming = position_state.c, stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["portfolio_id", "security_id"],
        set_={c: incoming[c] for c in content},
        where=and_(
            tuple_(stored.epoch, stored.version) <= tuple_(incoming.epoch, incoming.version),
            _differs(position_state, incoming, content),
        ),
    )


def _barriers_insert(rows: list[Barrier]) -> Executable:
    kept = _winners(rows, key=lambda r: (r.token, r.stage, r.partition), replaces=lambda new, old: False)
    return (
        pg_insert(pipeline_barriers)
        .from_select(BARRIER_COLUMNS, _unnest(pipeline_barriers, BARRIER_COLUMNS, kept))
        .on_conflict_do_nothing(index_elements=BARRIER_COLUMNS)
    )


async def _write_history(conn: AsyncConnection, items: list[HistoryItem]) -> None:
    pending: list[PositionHistoryRow] = []
    pending_epochs: set[tuple[str, str, int]] = set()
    for item in items:
        if isinstance(item, PositionHistoryRow):
            pending.append(item)
            pending_epochs.add((item.portfolio_id, item.security_id, item.epoch))
            continue
        if (item.portfolio_id, item.security_id, item.from_epoch) in pending_epochs:
            await conn.execute(_history_upsert(pending))
            pending, pending_epochs = [], set()
        await conn.execute(_carry_over(item))
    if pending:
        await conn.execute(_history_upsert(pending))


# -- helpers ------------------------------------------------------------------------------


def _columns(model: type[Any]) -> list[str]:
    return [name for name in model.model_fields if name != "kind"]


def _table_columns(table: Table, model: type[Any]) -> list[str]:
    names = _columns(model)
    missing = [n for n in names if n not in table.c]
    if missing:  # a field added to a result row without a migration
        raise RuntimeError(f"table {table.name} has no column for {model.__name__}.{missing}")
    return names


TRANSACTION_COLUMNS = _table_columns(transactions, TransactionRow)
HISTORY_COLUMNS = _table_columns(position_history, PositionHistoryRow)
STATE_COLUMNS = _table_columns(position_state, PositionStateRow)
BARRIER_COLUMNS = _table_columns(pipeline_barriers, Barrier)
HISTORY_PK = [c.name for c in position_history.primary_key.columns]


def _history_key(row: PositionHistoryRow) -> tuple[str, str, int, str]:
    return (row.portfolio_id, row.security_id, row.epoch, row.transaction_id)


def _winners(rows: Iterable[R], key: Callable[[R], Hashable], replaces: Callable[[R, R], bool]) -> list[R]:
    """One row per key, the one that wins when the rows are applied in order; sorted by
    key so concurrent writers lock rows in the same order (no deadlocks)."""
    kept: dict[Any, R] = {}
    for row in rows:
        k = key(row)
        current = kept.get(k)
        if current is None or replaces(row, current):
            kept[k] = row
    return [kept[k] for k in sorted(kept)]


def _unnest(table: Table, names: list[str], rows: Sequence[Any]) -> Any:
    """`SELECT * FROM unnest(:a::type[], :b::type[], ...)`: one array parameter per column."""
    arrays = [
        bindparam(f"u_{name}", [getattr(row, name) for row in rows], type_=ARRAY(table.c[name].type))
        for name in names
    ]
    rowset = (
        func.unnest(*arrays)
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="incoming")  # AS incoming(col, ...): unnest's columns are unnamed
    )
    return select(*(rowset.c[name] for name in names))


def _differs(table: Table, excluded: Any, names: list[str]) -> ColumnElement[bool]:
    return tuple_(*(table.c[n] for n in names)).is_distinct_from(tuple_(*(excluded[n] for n in names)))
