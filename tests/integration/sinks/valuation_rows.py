"""Factories for the valuation result rows (snapshots, jobs, outcomes) and table dumps."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import JobOutcome, SnapshotRow, ValuationJobRow
from tests.fixtures.result_rows import D1, NOW

VALUATION_TABLES = ("daily_position_snapshots", "portfolio_valuation_jobs")


def snap(day: date = D1, epoch: int = 0, **changes: Any) -> SnapshotRow:
    values: dict[str, Any] = dict(
        portfolio_id="P1",
        security_id="S1",
        date=day,
        epoch=epoch,
        quantity=Decimal("100"),
        cost_basis=Decimal("1389.9"),
        cost_basis_local=Decimal("1389.9"),
        market_price=Decimal("14.25"),
        market_value=Decimal("1425.00"),
        market_value_local=Decimal("1425.00"),
        unrealized_gain_loss=Decimal("35.10"),
        unrealized_gain_loss_local=Decimal("35.10"),
        fx_rate=Decimal("1"),
        valuation_status="VALUED_CURRENT",
        price_date=day,
    )
    return SnapshotRow(**(values | changes))


def job(day: date = D1, epoch: int = 0, version: int = 0, status: str = "PENDING", **changes: Any) -> ValuationJobRow:
    values: dict[str, Any] = dict(
        portfolio_id="P1",
        security_id="S1",
        valuation_date=day,
        epoch=epoch,
        status=status,
        attempt_count=0,
        failure_reason=None,
        version=version,
        updated_at=NOW,
    )
    return ValuationJobRow(**(values | changes))


def outcome(day: date = D1, epoch: int = 0, **changes: Any) -> JobOutcome:
    values: dict[str, Any] = dict(
        portfolio_id="P1", security_id="S1", valuation_date=day, epoch=epoch, outcome="COMPLETE", job_version=1
    )
    return JobOutcome(**(values | changes))


async def dump(engine: AsyncEngine, table: str, with_xmin: bool = True) -> list[dict[str, Any]]:
    """Every row, in primary-key order; with its xmin (an unchanged xmin proves the row was
    not rewritten) unless told otherwise."""
    order = {
        "daily_position_snapshots": "portfolio_id, security_id, date, epoch",
        "portfolio_valuation_jobs": "portfolio_id, security_id, valuation_date, epoch",
        "position_history": "portfolio_id, security_id, epoch, transaction_id",
    }[table]
    select_list = "xmin::text AS xmin, *" if with_xmin else "*"
    async with engine.connect() as conn:
        result = await conn.execute(text(f"SELECT {select_list} FROM {table} ORDER BY {order}"))
        return [dict(row) for row in result.mappings()]
