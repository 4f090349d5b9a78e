"""Made-up samples and database readings for the dashboard's tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from epochflow.sinks.reads.dashboard import (
    DatabaseReading,
    KeyGroup,
    ResetJob,
    ResetJobCount,
    TableStats,
    ValuationJobGroup,
)
from epochflow.web.dashboard.panels import Sample, throughput

BD = date(2026, 3, 20)
T0 = 1_800_000_000.0


def sample(at: float, *, current: int | None = 1, rows: dict[str, int] | None = None, dead: int | None = 0,
           errors: dict[str, str] | None = None, previous: Sample | None = None) -> Sample:
    panels = None if current is None else {
        "keys": {"total": current, "by_status": {"CURRENT": current, "REPROCESSING": 0}, "waiting_for_data": 0},
    }
    return Sample(at=at, duration_s=0.01, panels=panels, rows_written=rows,
                  throughput=throughput(previous, rows, at), dead_letters=None if dead is None else {"count": dead},
                  errors=errors or {})


def job(job_id: str, status: str, reset: int, total: int, attempts: int = 1) -> ResetJob:
    return ResetJob(job_id=job_id, subject="price|SEC", partition=0, status=status, keys_reset=reset,
                    keys_total=total, attempt_count=attempts, earliest_impacted_date=date(2026, 3, 10),
                    created_at=datetime(2026, 3, 20, 9, tzinfo=UTC), finished_at=None, failure_reason=None)


def reading(**changes) -> DatabaseReading:
    base = dict(
        key_groups=(KeyGroup("CURRENT", BD, 8, 0), KeyGroup("REPROCESSING", date(2026, 3, 15), 2, 1)),
        valuation_jobs=(ValuationJobGroup("COMPLETE", False, 40, BD),
                        ValuationJobGroup("PENDING", False, 3, date(2026, 3, 18)),
                        ValuationJobGroup("PENDING", True, 1, date(2026, 3, 17))),
        valuation_counts_exact=True,
        reset_jobs={"PROCESSING": ResetJobCount(1, 120, 500), "COMPLETE": ResetJobCount(2, 40, 40)},
        triggers_pending=1,
        open_reset_jobs=(job("J1", "PROCESSING", 120, 500),),
        finished_reset_jobs=(job("J0", "COMPLETE", 20, 20),),
        tables={"transactions": TableStats(100, 90), "portfolio_valuation_jobs": TableStats(60, 44)},
    )
    base.update(changes)
    return DatabaseReading(**base)
