"""The read helpers over snapshots and valuation jobs, and the quiescence summary."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.schemas.results import ResultRow
from epochflow.sinks import reads
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, state, tx
from tests.integration.sinks.valuation_rows import job, snap

pytestmark = pytest.mark.integration

D4 = date(2025, 8, 4)
BD = date(2025, 8, 10)  # the business date of the quiescence tests


def _key(portfolio_id: str = "P1", security_id: str = "S1") -> dict[str, str]:
    return {"portfolio_id": portfolio_id, "security_id": security_id}


async def test_snapshot_reads(clean_db: AsyncEngine) -> None:
    await ResultWriter(clean_db).write(
        [
            snap(D1, epoch=0, quantity=Decimal("1")),
            snap(D2, epoch=0, quantity=Decimal("2")),
            snap(D1, epoch=1, quantity=Decimal("10")),
            snap(D3, epoch=1, quantity=Decimal("30")),
            snap(D2, epoch=1, quantity=Decimal("20")),
            snap(D1, epoch=2, quantity=Decimal("100")),  # a newer epoch than the state's
            snap(D1, **_key("P2")),
            state(epoch=1, version=4),
        ]
    )

    assert (await reads.snapshot(clean_db, "P1", "S1", D2, 0) or {})["quantity"] == Decimal("2")
    assert (await reads.snapshot(clean_db, "P1", "S1", D2, 1) or {})["quantity"] == Decimal("20")
    assert await reads.snapshot(clean_db, "P1", "S1", D4, 1) is None
    assert await reads.snapshot(clean_db, "P1", "S1", D2, 2) is None

    # the current epoch is position_state's (1), not the highest snapshot epoch (2)
    current = await reads.snapshot_current_epoch(clean_db, "P1", "S1", D1) or {}
    assert (current["epoch"], current["quantity"]) == (1, Decimal("10"))
    assert await reads.snapshot_current_epoch(clean_db, "P1", "S1", D4) is None
    assert await reads.snapshot_current_epoch(clean_db, "P2", "S1", D1) is None  # P2 has no state

    assert [(s.date, s.quantity) for s in await reads.fetch_snapshots(clean_db, "P1", "S1")] == [
        (D1, 10),
        (D2, 20),
        (D3, 30),
    ]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", epoch=0)] == [D1, D2]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", date_from=D2)] == [D2, D3]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", date_to=D2)] == [D1, D2]
    assert [s.date for s in await reads.fetch_snapshots(clean_db, "P1", "S1", 1, D2, D2)] == [D2]
    assert await reads.fetch_snapshots(clean_db, "P2", "S1") == []  # no state: no current epoch
    assert await reads.fetch_snapshots(clean_db, "P2", "S1", epoch=0) == [snap(D1, **_key("P2"))]


async def test_job_reads(clean_db: AsyncEngine) -> None:
    rows: list[ResultRow] = [
        job(D3, epoch=0, version=2, status="COMPLETE"),
        job(D2, epoch=1, version=1, status="PROCESSING"),
        job(D2, epoch=0, version=0, status="PENDING"),
        job(D4, epoch=1, version=3, status="PENDING", attempt_count=2, failure_reason="no price for S1"),
        job(D1, version=0, **_key("P2")),
        job(D1, version=0, **_key("P1", "S0")),
    ]
    await ResultWriter(clean_db).write(rows)

    stored = await reads.valuation_job(clean_db, "P1", "S1", D4, 1) or {}
    assert (stored["status"], stored["attempt_count"], stored["failure_reason"], stored["version"]) == (
        "PENDING",
        2,
        "no price for S1",
        3,
    )
    assert await reads.valuation_job(clean_db, "P1", "S1", D4, 0) is None

    assert await reads.earliest_job_date(clean_db, "P1", "S1") == D2  # any epoch
    assert await reads.earliest_job_date(clean_db, "P2", "S1") == D1
    assert await reads.earliest_job_date(clean_db, "P9", "S1") is None

    everything = await reads.fetch_valuation_jobs(clean_db)
    assert [(j.portfolio_id, j.security_id, j.valuation_date, j.epoch) for j in everything] == [
        ("P1", "S0", D1, 0),
        ("P1", "S1", D2, 0),
        ("P1", "S1", D2, 1),
        ("P1", "S1", D3, 0),
        ("P1", "S1", D4, 1),
        ("P2", "S1", D1, 0),
    ]
    assert everything[4] == rows[3]
    assert [j.valuation_date for j in await reads.fetch_valuation_jobs(clean_db, "P1", "S1")] == [D2, D2, D3, D4]
    assert [j.portfolio_id for j in await reads.fetch_valuation_jobs(clean_db, security_id="S1", status="PENDING")] == [
        "P1",
        "P1",
        "P2",
    ]
    assert await reads.fetch_valuation_jobs(clean_db, "P1", status="PROCESSING") == [rows[1]]
    page = await reads.fetch_valuation_jobs(clean_db, limit=2, offset=1)
    assert page == everything[1:3]
    assert await reads.fetch_valuation_jobs(clean_db, limit=0) == []
    with pytest.raises(ValueError):
        await reads.fetch_valuation_jobs(clean_db, offset=-1)


async def test_the_overview_shows_the_business_dates_valuation(clean_db: AsyncEngine) -> None:
    await ResultWriter(clean_db).write(
        [
            tx("T1", realized_gain_loss=Decimal("5"), realized_gain_loss_local=Decimal("4")),
            state(epoch=1, version=2),
            snap(D2, epoch=1, market_value=Decimal("1500"), valuation_status="VALUED_STALE"),
            snap(D3, epoch=0, market_value=Decimal("999")),  # an old epoch: never shown
            state(**_key("P2")),
        ]
    )
    p1, p2 = await reads.positions_overview(clean_db, D2)
    assert (p1["market_value"], p1["valuation_status"], p1["snapshot_date"]) == (Decimal("1500"), "VALUED_STALE", D2)
    assert (p1["realized_gain_loss"], p1["realized_gain_loss_local"], p1["quantity"]) == (5, 4, 100)
    assert (p2["market_value"], p2["valuation_status"], p2["realized_gain_loss"]) == (None, None, None)

    p1, _ = await reads.positions_overview(clean_db, D3)  # no snapshot of that day yet
    assert (p1["market_value"], p1["valuation_status"]) == (None, None)
    p1, _ = await reads.positions_overview(clean_db)  # the latest day
    assert p1["snapshot_date"] == D2


# -- pipeline_activity --------------------------------------------------------------------


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
    from datetime import datetime, timezone

    from epochflow.schemas.results import ReprocessingJobRow, ReprocessingTriggerRow

    now = datetime(2025, 8, 4, tzinfo=timezone.utc)
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
    [stored] = await reads.fetch_reprocessing_jobs(clean_db)
    assert (stored.status, stored.keys_reset, stored.version) == ("COMPLETE", 3, 3)
