"""Is the pipeline still moving (`epochflow/sinks/reads/quiescence.py`): what the scenario
runner's settle waits on."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import ResultRow
from epochflow.sinks.reads import quiescence as reads
from epochflow.sinks.reads.api import fetch_reprocessing_jobs
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, state
from tests.integration.sinks.valuation_rows import job, snap

pytestmark = pytest.mark.integration

BD = date(2025, 8, 10)  # the business date of these tests


def _state(security_id: str, epoch: int = 1, **changes: object) -> ResultRow:
    values: dict[str, object] = dict(epoch=epoch, version=1, watermark_date=BD - timedelta(days=3), first_open_date=D1)
    return state(**(values | changes)).model_copy(update={"security_id": security_id})


def _job(security_id: str, epoch: int = 1, status: str = "PENDING", reason: str | None = None, day: date = BD) -> ResultRow:
    return job(day, epoch=epoch, status=status, failure_reason=reason).model_copy(update={"security_id": security_id})


async def _hand_built(engine: AsyncEngine) -> None:
    await ResultWriter(engine).write(
        [
            # settled
            _state("A_CURRENT", watermark_date=BD),
            _state("B_AHEAD", watermark_date=BD + timedelta(days=1)),
            _state("C_BLOCKED"),
            _job("C_BLOCKED", reason="no price for C_BLOCKED"),
            _job("C_BLOCKED", status="COMPLETE", day=BD - timedelta(days=2)),
            _state("D_OPENS_LATER", watermark_date=None, first_open_date=BD + timedelta(days=1)),
            _state("E_NEVER_OPENED", watermark_date=None, first_open_date=None),
            _state("F_WAITING_FOR_FX", waiting_for="fx EUR/USD"),
            # not settled
            _state("G_BEHIND"),
            _job("G_BEHIND", status="PROCESSING"),
            _state("H_NO_WATERMARK", watermark_date=None, first_open_date=BD),
            _state("I_BLOCKED_IN_OLD_EPOCH", epoch=2, status="REPROCESSING"),
            _job("I_BLOCKED_IN_OLD_EPOCH", epoch=1, reason="no price"),  # superseded
            _job("I_BLOCKED_IN_OLD_EPOCH", epoch=1, status="PROCESSING", day=BD - timedelta(days=1)),  # superseded
            _job("I_BLOCKED_IN_OLD_EPOCH", epoch=2),  # runnable
            _state("J_REPROCESSING", status="REPROCESSING", watermark_date=BD - timedelta(days=10)),
            _job("J_REPROCESSING", epoch=1, status="PENDING", reason=None),  # runnable
            # a job whose key's state has not reached the sink yet, and one of a newer epoch
            _job("K_NO_STATE", epoch=0, status="PROCESSING"),
            _job("A_CURRENT", epoch=2, status="PENDING", reason="no fx"),
        ]
    )


async def test_pipeline_activity_classifies_keys_and_jobs(clean_db: AsyncEngine) -> None:
    await _hand_built(clean_db)

    activity = await reads.pipeline_activity(clean_db, BD)

    assert activity["processing"] == 2  # G_BEHIND, K_NO_STATE
    assert activity["runnable"] == 2  # I (epoch 2), J
    assert activity["blocked"] == 2  # C_BLOCKED, A_CURRENT (epoch 2, ahead of its state)
    assert activity["superseded_open"] == 2  # I's two epoch-1 jobs
    assert activity["reprocessing"] == 2  # I, J
    assert activity["not_settled"] == [
        {"portfolio_id": "P1", "security_id": s, "epoch": e, "status": st, "watermark_date": w}
        for s, e, st, w in [
            ("G_BEHIND", 1, "CURRENT", BD - timedelta(days=3)),
            ("H_NO_WATERMARK", 1, "CURRENT", None),
            ("I_BLOCKED_IN_OLD_EPOCH", 2, "REPROCESSING", BD - timedelta(days=3)),
            ("J_REPROCESSING", 1, "REPROCESSING", BD - timedelta(days=10)),
        ]
    ]
    assert activity["not_settled_count"] == 4
    assert activity["business_date"] == BD

    # an earlier business date settles the keys whose watermark reached it (G, I) and the
    # key that opens only after it (H)
    earlier = await reads.pipeline_activity(clean_db, BD - timedelta(days=3))
    assert [k["security_id"] for k in earlier["not_settled"]] == ["J_REPROCESSING"]


async def test_pipeline_activity_lists_at_most_20_keys(clean_db: AsyncEngine) -> None:
    await ResultWriter(clean_db).write([_state(f"S{i:02}") for i in range(25)])
    activity = await reads.pipeline_activity(clean_db, BD)
    assert activity["not_settled_count"] == 25
    assert [k["security_id"] for k in activity["not_settled"]] == [f"S{i:02}" for i in range(20)]


async def test_an_empty_pipeline_is_settled(clean_db: AsyncEngine) -> None:
    activity = await reads.pipeline_activity(clean_db, BD)
    assert {k: v for k, v in activity.items() if k not in ("fingerprint", "business_date")} == {
        "processing": 0,
        "runnable": 0,
        "blocked": 0,
        "superseded_open": 0,
        "reprocessing": 0,
        "not_settled": [],
        "not_settled_count": 0,
        "triggers_pending": 0,
        "reset_jobs_open": 0,
    }


async def test_the_fingerprint_changes_with_every_write(clean_db: AsyncEngine) -> None:
    writer = ResultWriter(clean_db)
    await _hand_built(clean_db)
    seen: list[str] = []

    async def fingerprint() -> str:
        return str((await reads.pipeline_activity(clean_db, BD))["fingerprint"])

    seen.append(await fingerprint())
    assert await fingerprint() == seen[0]  # nothing changed
    await _hand_built(clean_db)  # a re-sent batch is a no-op
    assert await fingerprint() == seen[0]

    changes: list[list[ResultRow]] = [
        [snap(BD)],  # a new snapshot
        [snap(BD, market_price=Decimal("14.26"))],  # a snapshot rewritten in place
        # a job update with the same timestamp and the same count
        [job(BD, epoch=1, version=1, status="PROCESSING").model_copy(update={"security_id": "C_BLOCKED"})],
        # a position update whose timestamp is not newer than the latest one
        [_state("G_BEHIND", version=2, watermark_date=BD)],
    ]
    for batch in changes:
        await writer.write(batch)
        seen.append(await fingerprint())
    async with clean_db.begin() as conn:  # a deletion
        await conn.execute(text("DELETE FROM portfolio_valuation_jobs WHERE security_id = 'K_NO_STATE'"))
    seen.append(await fingerprint())

    assert len(set(seen)) == len(seen)


async def test_the_fanouts_open_triggers_and_jobs_keep_the_pipeline_unsettled(clean_db: AsyncEngine) -> None:
    from datetime import datetime

    from epochflow.schemas.results import ReprocessingJobRow, ReprocessingTriggerRow

    now = datetime(2025, 8, 4, tzinfo=UTC)
    common = dict(subject="price|S1", partition=0, security_id="S1", from_currency=None, to_currency=None, updated_at=now)
    trigger = ReprocessingTriggerRow(earliest_impacted_date=BD, corrections=1, pending=True, created_at=now, version=1, **common)
    job = ReprocessingJobRow(job_id="price|S1#p0#1", job_type="RESET_WATERMARKS", earliest_impacted_date=BD,
                             status="PROCESSING", attempt_count=1, last_attempted_at=now, failure_reason=None,
                             keys_total=3, keys_reset=1, created_at=now, finished_at=None, version=2, **common)
    writer = ResultWriter(clean_db)
    await writer.write([trigger])
    activity = await reads.pipeline_activity(clean_db, BD)
    assert (activity["triggers_pending"], activity["reset_jobs_open"]) == (1, 0)
    queued = trigger.model_copy(update={"pending": False, "earliest_impacted_date": None, "version": 2})
    await writer.write([queued, job])
    activity = await reads.pipeline_activity(clean_db, BD)
    assert (activity["triggers_pending"], activity["reset_jobs_open"]) == (0, 1)
    await writer.write([job.model_copy(update={"status": "COMPLETE", "keys_reset": 3, "version": 3}),
                        job.model_copy(update={"version": 1, "status": "PENDING"})])  # an older row never wins
    activity = await reads.pipeline_activity(clean_db, BD)
    assert (activity["triggers_pending"], activity["reset_jobs_open"]) == (0, 0)
    [stored] = await fetch_reprocessing_jobs(clean_db)
    assert (stored.status, stored.keys_reset, stored.version) == ("COMPLETE", 3, 3)
