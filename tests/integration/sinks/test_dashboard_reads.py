"""What the dashboard's sampler reads from PostgreSQL (`epochflow/sinks/reads/dashboard.py`),
in one snapshot."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.models import (
    portfolio_valuation_jobs,
    position_state,
    reprocessing_jobs,
    reprocessing_triggers,
)
from epochflow.sinks.reads.dashboard import (
    WRITTEN_TABLES,
    KeyGroup,
    ResetJobCount,
    ValuationJobGroup,
    read_dashboard,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 7, 9, 0, tzinfo=UTC)


def _state(portfolio_id: str, security_id: str, status: str, watermark: date | None, waiting: str = "") -> dict:
    return dict(portfolio_id=portfolio_id, security_id=security_id, epoch=0, version=1, status=status,
                watermark_date=watermark, quantity=Decimal(1), cost_basis=Decimal(1), cost_basis_local=Decimal(1),
                held_since_date=None, first_open_date=date(2026, 3, 2), last_transaction_date=None,
                waiting_for=waiting, updated_at=NOW, epoch_trigger=None, epoch_rebuilt_from=None)


def _job(security_id: str, day: int, status: str, reason: str | None = None) -> dict:
    return dict(portfolio_id="P1", security_id=security_id, valuation_date=date(2026, 3, day), epoch=0, status=status,
                attempt_count=1, failure_reason=reason, version=1, updated_at=NOW)


def _reset_job(job_id: str, status: str, reset: int, total: int, created_min: int, finished_min: int | None) -> dict:
    return dict(job_id=job_id, job_type="RESET_WATERMARKS", subject=f"price|{job_id}", partition=0, security_id=job_id,
                from_currency=None, to_currency=None, earliest_impacted_date=date(2026, 3, 3), status=status,
                attempt_count=1, last_attempted_at=None, failure_reason=None, keys_total=total, keys_reset=reset,
                created_at=NOW + timedelta(minutes=created_min),
                finished_at=None if finished_min is None else NOW + timedelta(minutes=finished_min),
                version=1, updated_at=NOW)


def _trigger(subject: str, pending: bool) -> dict:
    return dict(subject=subject, partition=0, security_id=None, from_currency=None, to_currency=None,
                earliest_impacted_date=date(2026, 3, 3), corrections=1, pending=pending, created_at=NOW,
                version=1, updated_at=NOW)


async def test_the_sampler_reads_every_panel_from_postgresql_in_one_snapshot(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(insert(position_state), [
            _state("P1", "A", "CURRENT", date(2026, 3, 6)),
            _state("P2", "B", "CURRENT", date(2026, 3, 6)),
            _state("P1", "B", "REPROCESSING", date(2026, 3, 3), waiting="fx|CHF|USD"),
            _state("P2", "A", "REPROCESSING", None)
            | dict(epoch=1, epoch_trigger="T9", epoch_rebuilt_from=date(2026, 3, 4)),
        ])
        await conn.execute(insert(portfolio_valuation_jobs), [
            _job("B", 4, "PENDING"), _job("B", 7, "PENDING"), _job("B", 5, "PENDING", "no price for B on 2026-03-05"),
            _job("B", 6, "PROCESSING"), _job("A", 4, "COMPLETE"), _job("A", 5, "COMPLETE"),
            _job("A", 6, "COMPLETE", "no price (retried)"), _job("A", 3, "FAILED", "boom"),
            _job("C", 20, "COMPLETE"),  # a finished job's date says nothing about the business date
        ])
        await conn.execute(insert(reprocessing_jobs), [
            _reset_job("J1", "PROCESSING", 2, 5, 0, None), _reset_job("J2", "PENDING", 0, 0, 5, None),
            _reset_job("J3", "COMPLETE", 4, 4, -30, -20), _reset_job("J4", "FAILED", 1, 3, -25, -10),
        ])
        await conn.execute(insert(reprocessing_triggers), [_trigger("price|X", True), _trigger("price|Y", False)])

    reading = await read_dashboard(clean_db)
    assert reading.key_groups == (
        KeyGroup("CURRENT", date(2026, 3, 6), 2, 0),
        KeyGroup("REPROCESSING", date(2026, 3, 3), 1, 1),
        KeyGroup("REPROCESSING", None, 1, 0),
    )
    assert reading.valuation_counts_exact is True
    assert sorted(reading.valuation_jobs, key=lambda g: (g.status, g.blocked, g.jobs)) == [
        ValuationJobGroup("COMPLETE", False, 1, date(2026, 3, 6)),
        ValuationJobGroup("COMPLETE", False, 3, date(2026, 3, 20)),
        ValuationJobGroup("FAILED", False, 1, date(2026, 3, 3)),
        ValuationJobGroup("PENDING", False, 2, date(2026, 3, 7)),
        ValuationJobGroup("PENDING", True, 1, date(2026, 3, 5)),
        ValuationJobGroup("PROCESSING", False, 1, date(2026, 3, 6)),
    ]
    assert reading.reset_jobs == {"PROCESSING": ResetJobCount(1, 2, 5), "PENDING": ResetJobCount(1, 0, 0),
                                  "COMPLETE": ResetJobCount(1, 4, 4), "FAILED": ResetJobCount(1, 1, 3)}
    assert reading.triggers_pending == 1
    assert [j.job_id for j in reading.open_reset_jobs] == ["J1", "J2"]  # oldest first
    assert [j.job_id for j in reading.finished_reset_jobs] == ["J4", "J3"]  # latest finished first
    assert set(reading.tables) == set(WRITTEN_TABLES)
    assert [(e.portfolio_id, e.security_id, e.epoch, e.epoch_trigger, e.epoch_rebuilt_from)
            for e in reading.opened_epochs] == [("P2", "A", 1, "T9", date(2026, 3, 4))]

    large = await read_dashboard(clean_db, exact_count_max_rows=-1)  # as if the job table were huge
    assert large.valuation_counts_exact is False
    assert {g.status for g in large.valuation_jobs} == {"PENDING", "PROCESSING", "FAILED"}
