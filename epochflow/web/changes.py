"""Why a key's figures of one day changed: every version reads have shown, with its cause
(the read of `epochflow.sinks.reads.changes`)."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any

from epochflow.sinks.reads.changes import key_day_changes
from epochflow.web import params
from epochflow.web.access import Access
from epochflow.web.api import _DATE, _UNKNOWN_KEY, database, key_ids
from epochflow.web.params import ApiError
from epochflow.web.responses import DayChanges
from epochflow.web.routes import ApiView, Operation, Param, route


@route(
    "/positions/{portfolio_id}/{security_id}/changes/",
    tag="positions",
    get=Operation(
        "Why a key's figures of one day changed: every version, with its cause",
        Access.READ,
        DayChanges,
        description=(
            "Each version of the day's figures that reads have shown, oldest first: when it became current "
            "(`system_time`, usable as `as_at` on the other reads), its epoch, the figures (null while a new "
            "epoch has not valued the day again), its cause (the back-dated transaction or amendment that "
            "opened the epoch, a transaction of the day, a price or FX correction, the arrival of missing data, "
            "the first valuation) and each figure that differs from the version before."
        ),
        query=(Param("date", "The day (YYYY-MM-DD)", _DATE, required=True),),
        errors=_UNKNOWN_KEY,
        reads_database=True,
    ),
)
class DayChangesView(ApiView):
    async def get(self, request, portfolio_id: str, security_id: str):
        portfolio_id, security_id = key_ids(portfolio_id, security_id)
        day = params.optional_date(request.query, "date")
        if day is None:
            raise ApiError(400, "date is required (YYYY-MM-DD)")
        changes = await key_day_changes(database(), portfolio_id, security_id, day)
        if changes is None:
            raise ApiError(404, f"no position {portfolio_id!r} / {security_id!r}")
        body = DayChanges(
            portfolio_id=portfolio_id,
            security_id=security_id,
            date=day,
            changes=[
                {
                    "system_time": c.system_time,
                    "epoch": c.epoch,
                    "figures": None if c.figures is None else {**c.figures, "date": day},
                    "cause": dataclasses.asdict(c.cause),
                    "differences": {
                        name: {"before": _shown(before), "after": _shown(after)}
                        for name, (before, after) in c.differences.items()
                    },
                }
                for c in changes
            ],
        )
        return self.json(body.dump())


def _shown(value: Any) -> str | None:
    """A figure as text: decimals exactly (never exponent notation), dates YYYY-MM-DD."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
