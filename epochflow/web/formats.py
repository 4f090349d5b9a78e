"""The formats a read answers in: JSON (the default) or CSV.

A caller asks for CSV with `?format=csv`, or with `Accept: text/csv` preferred over JSON
(`?format=` wins over the header). A body that has rows names its row list
(`Body.csv_rows`); its CSV is a header row, the row model's fields in order, then one
line per row, each value written as the JSON answer writes it (decimals exact, dates
and timestamps ISO 8601, booleans true/false, null as an empty field). A body without
rows has no CSV: the route answers 406.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from epochflow.web.params import ApiError, choice
from epochflow.web.responses import Body

JSON, CSV = "json", "csv"
FORMATS = (JSON, CSV)
CSV_MEDIA_TYPE = "text/csv"
_MEDIA_TYPES = {"application/json": JSON, CSV_MEDIA_TYPE: CSV}


def requested(query: Mapping[str, str], accept: str | None) -> str:
    """The format asked for: `format` when given, else the one of JSON and CSV the Accept
    header prefers (by q, then by order; JSON when it names neither or ties)."""
    asked = choice(query, "format", FORMATS)
    if asked is not None:
        return asked
    best: tuple[float, str] | None = None
    for media_range in (accept or "").split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        found = _MEDIA_TYPES.get(media_type.lower())
        if found is None:
            continue
        quality = _quality(parameters)
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, found)
    return JSON if best is None else best[1]


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def csv_body(model: type[Body] | None) -> type[Body]:
    """`model`, when its answers have rows to write as CSV; else the 406 refusal."""
    if model is None or model.csv_rows is None:
        raise ApiError(406, "this route has no rows to write as CSV: ask for JSON (format=json or Accept: application/json)")
    return model


def rows_csv(model: type[Body], dumped: Mapping[str, Any]) -> str:
    """The CSV of `dumped` (`model`'s JSON dump, so every value is already written as the
    JSON answer writes it)."""
    columns = model.csv_columns()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in dumped[model.csv_rows]:  # type: ignore[index]
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
