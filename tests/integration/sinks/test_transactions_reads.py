"""A portfolio's transactions (epochflow/sinks/reads/transactions.py): each one's latest
version with its flags decoded, filtered by UTC day and security, paged, by timestamp then
id, and the reprocessing status of the portfolio and of each transaction's key."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.reads.transactions import decode_flags, portfolio_transactions
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, state, tx
from tests.integration.sinks.books import key

pytestmark = pytest.mark.integration

D = Decimal


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 8, day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def ledger(clean_db: AsyncEngine) -> AsyncEngine:
    """P1: S1 bought D1 (A), amended sale B on D2 late in the day (oversold, FX missing,
    costed again in epoch 1 while S1 is rebuilt), S2 bought D1 at the same time as A (A2)
    and D3 (C); P2 has a transaction of its own."""
    writer = ResultWriter(clean_db)
    await writer.write([
        tx("A", transaction_date=at(1, 10), **key("S1")),
        tx("B", transaction_type="SELL", transaction_date=at(2, 23, 59), **key("S1")),
        tx("A2", transaction_date=at(1, 10), **key("S2")),
        tx("C", transaction_date=at(3, 0), net_cost=D("0.0000000001"), **key("S2")),
        tx("Z", transaction_date=at(2, 9), **key("S1", "P2")),
        state(**key("S1")), state(**key("S2")), state(**key("S1", "P2")),
    ])
    await writer.write([
        tx("B", epoch=1, transaction_type="SELL", transaction_date=at(2, 23, 59), quantity=D(150), net_cost=None,
           net_cost_local=D("-1389.9"), realized_gain_loss=None, realized_gain_loss_local=D("12.345"),
           transaction_fx_rate=None, flags="OVERSOLD,FX_MISSING", updated_at=at(5, 12), **key("S1")),
        state(epoch=1, version=2, status="REPROCESSING", **key("S1")),
    ])
    return clean_db


def test_flags_decode_into_booleans() -> None:
    assert decode_flags("") == {"oversold": False, "fx_missing": False}
    assert decode_flags("OVERSOLD") == {"oversold": True, "fx_missing": False}
    assert decode_flags("FX_MISSING,OVERSOLD") == {"oversold": True, "fx_missing": True}


async def test_a_portfolios_transactions_by_time_then_id_with_flags_and_costs(ledger: AsyncEngine) -> None:
    found = await portfolio_transactions(ledger, "P1")
    assert found is not None
    assert (found["reprocessing_status"], found["total"], found["limit"], found["offset"]) == ("IN_PROGRESS", 4, 100, 0)
    rows = found["transactions"]
    assert [r["transaction_id"] for r in rows] == ["A", "A2", "B", "C"]
    b = rows[2]
    assert (b["epoch"], b["transaction_type"], b["quantity"], b["net_cost"], b["net_cost_local"]) == (
        1, "SELL", D(150), None, D("-1389.9"))
    assert (b["realized_gain_loss"], b["realized_gain_loss_local"], b["transaction_fx_rate"]) == (None, D("12.345"), None)
    assert (b["oversold"], b["fx_missing"], b["reprocessing_status"]) == (True, True, "IN_PROGRESS")
    a2 = rows[1]
    assert (a2["oversold"], a2["fx_missing"], a2["reprocessing_status"], a2["epoch"]) == (False, False, "CURRENT", 0)
    assert rows[3]["net_cost"] == D("0.0000000001")


async def test_filters_by_utc_day_and_security_and_pages(ledger: AsyncEngine) -> None:
    async def ids(**options) -> list[str]:
        found = await portfolio_transactions(ledger, "P1", **options)
        assert found is not None
        return [r["transaction_id"] for r in found["transactions"]]

    assert await ids(date_from=D2, date_to=D2) == ["B"]  # 23:59 on D2 is D2; 00:00 on D3 is not
    assert await ids(date_from=D3) == ["C"]
    assert await ids(date_to=D1) == ["A", "A2"]
    assert await ids(date_to=date.max) == await ids()  # the last day there is: no bound, no overflow
    assert await ids(security_id="S2") == ["A2", "C"]
    assert await ids(security_id="S9") == []
    assert await ids(limit=2, offset=1) == ["A2", "B"]
    page = await portfolio_transactions(ledger, "P1", security_id="S1", limit=1)
    assert page is not None and page["total"] == 2 and len(page["transactions"]) == 1


async def test_an_unknown_portfolio_is_none(ledger: AsyncEngine) -> None:
    assert await portfolio_transactions(ledger, "P9") is None
    assert await portfolio_transactions(ledger, "P1' OR '1'='1") is None
    p2 = await portfolio_transactions(ledger, "P2")
    assert p2 is not None and p2["reprocessing_status"] == "CURRENT"
    assert [r["transaction_id"] for r in p2["transactions"]] == ["Z"]
