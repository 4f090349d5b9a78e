"""Helpers of the books the read tests share (the fixtures are in `conftest.py`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from epochflow.schemas.results import ReprocessingJobRow
from tests.fixtures.result_rows import D1, NOW

D = Decimal
D4 = date(2025, 8, 4)


def key(security_id: str, portfolio_id: str = "P1") -> dict[str, str]:
    return {"portfolio_id": portfolio_id, "security_id": security_id}


def reset_job(security_id: str, status: str = "PENDING") -> ReprocessingJobRow:
    return ReprocessingJobRow(
        job_id=f"price|{security_id}|0|1", job_type="RESET_WATERMARKS", subject=f"price|{security_id}", partition=0,
        security_id=security_id, from_currency=None, to_currency=None, earliest_impacted_date=D1, status=status,
        attempt_count=0, last_attempted_at=None, failure_reason=None, keys_total=3, keys_reset=1, created_at=NOW,
        finished_at=None, version=1, updated_at=NOW,
    )
