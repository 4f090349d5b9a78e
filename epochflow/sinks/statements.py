"""The building blocks of the sink's statements: rows in as one array per column
(`unnest`), one row per key as applying the batch in order would leave it (`winners`),
and the fence rule (`domain.fencing.supersedes` on each kind's fence columns) both over a
batch in Python and against the stored row in SQL, from one definition."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Float, Numeric, Table, Text, bindparam, cast, column, func, select, tuple_
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeEngine

from epochflow.domain.fencing import supersedes

R = TypeVar("R")

# Each kind's fence: the columns that, compared as a tuple, decide whether a row replaces
# the stored one (domain.fencing.supersedes).
STATE_FENCE = ("epoch", "version")
TRANSACTION_FENCE = STATE_FENCE  # the epoch, then the state version of the step that sent it
VERSION_FENCE = ("version",)  # rows of a single writer that numbers its updates
SNAPSHOT_FENCE = ("job_version",)


def fence_of(row: Any, fence: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(-1 if getattr(row, c) is None else getattr(row, c) for c in fence)


def replaces(fence: tuple[str, ...]) -> Callable[[Any, Any], bool]:
    """`supersedes` between two rows of a batch."""
    return lambda new, old: supersedes(fence_of(new, fence), fence_of(old, fence))


def superseded(table: Table, excluded: Any, fence: tuple[str, ...]) -> ColumnElement[bool]:
    """`supersedes(incoming, stored)` in SQL: the stored row's fence <= the incoming one's."""
    stored = [func.coalesce(table.c[c], -1) for c in fence]
    incoming = [func.coalesce(excluded[c], -1) for c in fence]
    if len(fence) == 1:
        return stored[0] <= incoming[0]
    return tuple_(*stored) <= tuple_(*incoming)


def table_columns(table: Table, model: type[Any], not_stored: tuple[str, ...] = ()) -> list[str]:
    """The model's fields that the table stores: all of them but `kind` and `not_stored`
    (fields that only other roles read off the topic)."""
    names = [n for n in model.model_fields if n != "kind" and n not in not_stored]
    missing = [n for n in names if n not in table.c]
    if missing:  # a field added to a result row without a migration
        raise RuntimeError(f"table {table.name} has no column for {model.__name__}.{missing}")
    return names


def winners(rows: Iterable[R], key: Callable[[R], Hashable], wins: Callable[[R, R], bool]) -> list[R]:
    """One row per key, the one that wins when the rows are applied in order; sorted by
    key so concurrent writers lock rows in the same order (no deadlocks)."""
    kept: dict[Any, R] = {}
    for row in rows:
        k = key(row)
        current = kept.get(k)
        if current is None or wins(row, current):
            kept[k] = row
    return [kept[k] for k in sorted(kept)]


def rowset(name: str, columns: list[tuple[str, TypeEngine[Any], Sequence[Any]]]) -> Any:
    """`unnest(:a::type[], :b::type[], ...) AS name(a, b, ...)`: one array parameter per column."""
    arrays = [_array(col, type_, values) for col, type_, values in columns]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(col, type_) for col, type_, _ in columns))
        .render_derived(name=name)  # unnest's columns are unnamed
    )


def _array(col: str, type_: TypeEngine[Any], values: Sequence[Any]) -> Any:
    """One column's array parameter. Amounts go as the text of a PostgreSQL array
    (`{1.5,NULL}`), cast on the server: the driver's binary encoding of a Decimal costs about
    ten times as much as its text, and a result row carries up to nine of them."""
    if isinstance(type_, Numeric) and not isinstance(type_, Float):
        return cast(bindparam(f"u_{col}", numeric_array(values), type_=Text()), ARRAY(type_))
    return bindparam(f"u_{col}", list(values), type_=ARRAY(type_))


def numeric_array(values: Iterable[Decimal | int | None]) -> str:
    """PostgreSQL's text form of a one-dimensional numeric array; exact, as `str` of a
    Decimal is (an exponent, `1E+2`, is valid numeric input)."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def unnest(table: Table, names: list[str], rows: Sequence[Any]) -> Any:
    """`SELECT * FROM unnest(...) AS incoming(...)` with the table's columns `names`."""
    if len(names) == 1:
        columns: list[Sequence[Any]] = [[getattr(row, names[0]) for row in rows]]
    else:  # one tuple per row, transposed: the attribute reads run in C
        columns = list(zip(*map(attrgetter(*names), rows), strict=True)) or [[] for _ in names]
    incoming = rowset("incoming", [(n, table.c[n].type, values) for n, values in zip(names, columns, strict=True)])
    return select(*(incoming.c[name] for name in names))


def differs(table: Table, excluded: Any, names: list[str]) -> ColumnElement[bool]:
    return tuple_(*(table.c[n] for n in names)).is_distinct_from(tuple_(*(excluded[n] for n in names)))
