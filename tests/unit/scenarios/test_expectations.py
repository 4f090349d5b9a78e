"""The scenario comparator: exact Decimal comparison, nulls, absent rows, skips."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from epochflow.scenarios.expectations import Support, check, same


@pytest.mark.parametrize(
    "expected, actual, equal",
    [
        pytest.param("1389.9", Decimal("1389.9000000000"), True, id="scale-does-not-matter"),
        pytest.param("1389.9", Decimal("1389.91"), False, id="decimal-differs"),
        pytest.param("0", Decimal("0.0"), True, id="zero"),
        pytest.param(None, None, True, id="null-is-null"),
        pytest.param(None, Decimal(0), False, id="null-is-not-zero"),
        pytest.param("0", None, False, id="zero-is-not-null"),
        pytest.param("2025-08-03", date(2025, 8, 3), True, id="date"),
        pytest.param("2025-08-03", datetime(2025, 8, 3, 10, tzinfo=UTC), True, id="date-of-timestamp"),
        pytest.param(1, 1, True, id="int"),
        pytest.param("CURRENT", "CURRENT", True, id="text"),
        pytest.param("CURRENT", "REPROCESSING", False, id="text-differs"),
    ],
)
def test_same(expected, actual, equal) -> None:
    assert same(expected, actual) is equal


async def _fetch_position(row):
    return {"quantity": Decimal("10.00"), "cost_basis": Decimal("1000"), "epoch": 1, "status": "CURRENT"}


async def _fetch_none(row):
    return None


async def test_check_reports_failures_with_expected_and_actual() -> None:
    verdict = await check(
        {"positions": [{"portfolio_id": "P", "security_id": "S", "quantity": "10", "cost_basis": "999", "_note": "x"}]},
        {"positions": _fetch_position},
        Support(),
    )
    assert verdict.failures == ["positions[portfolio_id=P, security_id=S].cost_basis: expected 999, actual 1000"]


async def test_absent_and_absent_or_status_not_in() -> None:
    fetchers = {"snapshots": _fetch_none}
    rows = [
        {"portfolio_id": "P", "security_id": "S", "date": "2025-08-01", "absent": True},
        {"portfolio_id": "P", "security_id": "S", "date": "2025-08-01", "epoch": 0,
         "absent_or_valuation_status_not_in": ["VALUED_CURRENT"]},
    ]
    assert (await check({"snapshots": rows}, fetchers, Support())).failures == []


async def test_epoch_in_and_gte() -> None:
    async def job(row):
        return {"epoch": 2, "attempt_count": 3, "status": "COMPLETE"}

    ok = await check({"valuation_jobs": [{"epoch_in": [1, 2], "attempt_count_gte": 2, "status": "COMPLETE"}]},
                     {"valuation_jobs": job}, Support())
    assert ok.failures == []
    bad = await check({"valuation_jobs": [{"epoch_in": [0], "attempt_count_gte": 4}]}, {"valuation_jobs": job}, Support())
    assert len(bad.failures) == 2


async def test_unsupported_blocks_are_skipped_never_passed() -> None:
    verdict = await check({"cashflows": [{"transaction_id": "T"}]}, {}, Support(blocks={"cashflows": "not built"}))
    assert verdict.failures == [] and verdict.skips == ["cashflows (not built)"]
