"""The read behind "why did this change": the versions of a key's state, of its snapshots
of one day and of its transactions (`sinks.versions`), made into the day's changes by
`domain.changes`."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.domain.changes import Change, Version, day_changes
from epochflow.sinks.models import VERSIONS
from epochflow.sinks.reads.query import consistent


async def key_day_changes(engine: AsyncEngine, portfolio_id: str, security_id: str, day: date) -> list[Change] | None:
    """The versions of the key's figures of `day`, oldest first; None: the key has never
    had a state."""
    states, snapshots, transactions, history = (VERSIONS[name] for name in (
        "position_state", "daily_position_snapshots", "transactions", "position_history"))
    async with consistent(engine) as conn:
        found = []
        for table, extra in ((states, ()), (snapshots, (snapshots.c.date == day,)), (transactions, ())):
            query = (
                select(table)
                .where(table.c.portfolio_id == portfolio_id, table.c.security_id == security_id, *extra)
                .order_by(table.c.system_from, table.c.version_id)
            )
            found.append([_version(row) for row in (await conn.execute(query)).mappings()])
        # the day each transaction counts on, as booked (timestamps come back in UTC)
        h = history.c
        days = dict((await conn.execute(
            select(h.transaction_id, h.position_date)
            .where(h.portfolio_id == portfolio_id, h.security_id == security_id)
            .order_by(h.system_from, h.version_id)
        )).all())
    if not found[0]:
        return None
    return day_changes(day, *found, position_dates=days)


def _version(row) -> Version:
    return Version(row["system_from"], row["system_to"], row)
