"""Reading the results topic as a feed: the scheduler and valuation roles follow the
positions role's rows (and the scheduler the valuation role's outcomes) from it, skipping
other producers' messages by their key without decoding them."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from epochflow.schemas.events import InvalidEvent, describe
from epochflow.schemas.results import Barrier, ResultRow

ROWS = TypeAdapter(list[ResultRow])


def decode_rows(raw: bytes) -> list:
    try:
        return ROWS.validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe(error), raw) from None


def forwarded_barriers(rows: list, stage: str, partition: int) -> list[Barrier]:
    """A positions-stage barrier seen on the feed travels on as this stage's barrier."""
    return [
        Barrier(token=row.token, stage=f"{stage}<-{row.stage}", partition=partition)
        for row in rows
        if isinstance(row, Barrier) and row.stage.startswith("positions.")
    ]
