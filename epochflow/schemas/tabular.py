"""Reading a CSV document that comes from outside (an input file, a request body) into raw
events, which the event models then validate exactly as they validate JSON.

A CSV holds one event a row, the event's fields as columns (row 1 is the header); an empty
cell is a field left out. Each row's type comes from a `type` column or, without one, from
the type of the whole file (`--type`, `?type=`, or a file name such as `transactions.csv`).
Cells are taken as written: an amount is a decimal string for the event models, never a
float, and nothing is trimmed (an id with a space is refused, not repaired).

Row numbers are a spreadsheet's: the header is row 1, the first event row 2, and a value
quoted over several lines still counts as one row.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from epochflow.schemas.events import (
    BusinessDateEvent,
    FxRateEvent,
    InstrumentEvent,
    MarketPriceEvent,
    PortfolioEvent,
    TransactionEvent,
    nearest_field,
)

# the event types a CSV may hold (a checkpoint's `expected` is no cell) and their fields
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    model.model_fields["type"].default: tuple(model.model_fields)
    for model in (PortfolioEvent, InstrumentEvent, BusinessDateEvent, TransactionEvent, MarketPriceEvent, FxRateEvent)
}
# file names (without `.csv`, any case) that say what every row of the file is
TYPE_OF_NAME: dict[str, str] = {
    **{name: name for name in EVENT_FIELDS},
    "portfolios": "portfolio",
    "instruments": "instrument",
    "business_dates": "business_date",
    "transactions": "transaction",
    "trades": "transaction",
    "prices": "market_price",
    "market_prices": "market_price",
    "fx": "fx_rate",
    "fx_rates": "fx_rate",
    "rates": "fx_rate",
}
MEDIA_TYPE = "text/csv"


def type_of_name(name: str) -> str | None:
    """The event type a file's name says (`transactions.csv` -> transaction), or None."""
    return TYPE_OF_NAME.get(PurePath(name).stem.lower().replace("-", "_"))


def unknown_type(value: str) -> str:
    near = difflib.get_close_matches(value, list(TYPE_OF_NAME), n=1, cutoff=0.6)
    hint = f" (did you mean {TYPE_OF_NAME[near[0]]}?)" if near else ""
    return f"unknown event type {value!r}{hint}; one of {', '.join(EVENT_FIELDS)}"


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A problem of one row (`row` as a spreadsheet counts, the header being row 1), or of
    the document (`row` None: empty, not CSV)."""

    row: int | None
    reason: str


@dataclass
class Table:
    """A CSV read: (row number, raw event) pairs in order, and the problems of the header and
    of rows that are not events (a row with more cells than the header, no type)."""

    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0  # rows that are not blank, the header excluded
    invalid_rows: int = 0  # rows refused before validation (among `problems`)


def read_csv(text: str, event_type: str | None = None) -> Table:
    """The events of CSV `text`; `event_type` is the type of rows without a `type` cell
    (None: every row needs a `type` column). Never raises for what is in the text."""
    table = Table()
    if event_type is not None and event_type not in EVENT_FIELDS:
        table.problems.append(RowProblem(None, f"type: {unknown_type(event_type)}"))
        return table
    records = enumerate(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")), start=1)
    try:
        header = next(((n, r) for n, r in records if any(r)), None)
    except csv.Error as error:
        table.problems.append(RowProblem(None, f"not CSV: {error}"))
        return table
    if header is None:
        table.problems.append(RowProblem(None, "empty: no header row (row 1 names the columns: type, portfolio_id, ...)"))
        return table
    header_row, columns = header
    usable = _check_header(header_row, columns, event_type, table)
    if usable is None:
        return table
    try:
        for number, cells in records:
            if not any(cells):
                continue  # a blank row (or a row of empty cells) is no event
            table.rows += 1
            raw = _row_event(number, cells, columns, usable, event_type, table)
            if raw is None:
                table.invalid_rows += 1
            else:
                table.events.append((number, raw))
    except csv.Error as error:
        table.problems.append(RowProblem(None, f"not CSV: {error}"))
    return table


def _check_header(row: int, columns: list[str], event_type: str | None, table: Table) -> set[int] | None:
    """The indexes of the columns to read; None when no row can be read (no type at all)."""
    if "type" not in columns and event_type is None:
        table.problems.append(RowProblem(row, "no type column: add one (transaction, market_price, fx_rate, ...) "
                                              "or give the type of every row (--type, ?type=, or a file name "
                                              "such as transactions.csv)"))
        return None
    known = EVENT_FIELDS[event_type] if event_type and "type" not in columns else \
        tuple(dict.fromkeys(f for fields in EVENT_FIELDS.values() for f in fields))
    usable, seen = set(), set()
    for index, name in enumerate(columns):
        if name == "":
            continue  # a trailing separator; a cell under it is refused row by row
        if name in seen:
            table.problems.append(RowProblem(row, f"column {name!r} appears twice"))
            continue
        seen.add(name)
        if name not in known:
            near = nearest_field(name, known)
            of = f" of a {event_type} file" if event_type and "type" not in columns else ""
            hint = f" (did you mean {near}?)" if near else ""
            table.problems.append(RowProblem(row, f"column {name!r}: unknown column{of}{hint}"))
            continue
        usable.add(index)
    return usable


def _row_event(number: int, cells: list[str], columns: list[str], usable: set[int], event_type: str | None,
               table: Table) -> dict[str, Any] | None:
    if len(cells) > len(columns) and any(cells[len(columns):]):
        table.problems.append(RowProblem(number, f"has {len(cells)} cells, the header names {len(columns)} columns"))
        return None
    stray = [i for i, cell in enumerate(cells) if cell and i < len(columns) and columns[i] == ""]
    if stray:
        table.problems.append(RowProblem(number, f"cell {stray[0] + 1} has a value but its column has no name"))
        return None
    raw = {columns[i]: cell for i, cell in enumerate(cells) if i in usable and cell != ""}
    kind = raw.get("type", event_type)
    if kind is None:
        table.problems.append(RowProblem(number, "type: empty: every row needs its event type"))
        return None
    if kind not in EVENT_FIELDS:
        table.problems.append(RowProblem(number, f"type: {unknown_type(kind)}"))
        return None
    if event_type is not None and kind != event_type:
        table.problems.append(RowProblem(number, f"type: {kind!r}, but every row of this file is a {event_type}"))
        return None
    raw["type"] = kind
    return raw


def split_problem(problem: str) -> tuple[str | None, str]:
    """(`quantity`, reason) from an event model's `transaction.quantity: reason`; (None,
    `problem`) when it names no field (a rule across fields, such as a SELL's price)."""
    where, sep, reason = problem.partition(": ")
    if not sep or "." not in where:
        return None, problem
    return where.split(".", 1)[1], reason
