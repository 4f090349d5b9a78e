"""The SQL views for BI tools (migration 0005) on a book with a key rebuilt in a new epoch:
each view shows the current rows only, with the columns the README lists; a downgrade
drops them and an upgrade brings them back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.sinks.models import cashflows, portfolio_timeseries, position_timeseries
from epochflow.sinks.schema import alembic_config
from epochflow.sinks.writer import ResultWriter
from tests.fixtures.result_rows import D1, D2, D3, hist, state, tx
from tests.integration.sinks.books import key
from tests.integration.sinks.valuation_rows import snap

pytestmark = pytest.mark.integration

D = Decimal
VIEWS = ("bi_positions", "bi_daily_snapshots", "bi_transactions", "bi_position_timeseries",
         "bi_portfolio_timeseries", "bi_cashflows")
COLUMNS = {
    "bi_positions": ["portfolio_id", "security_id", "epoch", "status", "reprocessing_status", "watermark_date",
                     "quantity", "cost_basis", "cost_basis_local", "held_since_date", "first_open_date",
                     "last_transaction_date", "valuation_date", "valued_quantity", "market_price", "market_value",
                     "market_value_local", "unrealized_gain_loss", "unrealized_gain_loss_local", "fx_rate",
                     "price_date", "valuation_status"],
    "bi_daily_snapshots": ["portfolio_id", "security_id", "date", "epoch", "reprocessing_status", "quantity",
                           "cost_basis", "cost_basis_local", "market_price", "market_value", "market_value_local",
                           "unrealized_gain_loss", "unrealized_gain_loss_local", "fx_rate", "valuation_status",
                           "price_date"],
    "bi_transactions": ["transaction_id", "portfolio_id", "security_id", "transaction_type", "transaction_date",
                        "trade_date", "epoch", "reprocessing_status", "quantity", "price", "gross_amount",
                        "trade_fee", "trade_currency", "net_cost", "net_cost_local", "realized_gain_loss",
                        "realized_gain_loss_local", "transaction_fx_rate", "oversold", "fx_missing"],
    "bi_position_timeseries": ["portfolio_id", "security_id", "date", "epoch", "reprocessing_status",
                               "bod_market_value", "eod_market_value", "quantity", "cost", "bod_cashflow_position",
                               "eod_cashflow_position", "bod_cashflow_portfolio", "eod_cashflow_portfolio"],
    "bi_portfolio_timeseries": ["portfolio_id", "date", "bod_market_value", "eod_market_value", "bod_cashflow",
                                "eod_cashflow", "fees", "daily_return", "valuation_status", "keys_unvalued"],
    "bi_cashflows": ["transaction_id", "portfolio_id", "security_id", "transaction_type", "cashflow_date", "amount",
                     "currency", "classification", "timing", "calculation_type", "is_position_flow",
                     "is_portfolio_flow", "epoch"],
}


def _position_day(day: date, epoch: int, present: bool = True, **changes: Any) -> dict[str, Any]:
    zero = D(0)
    return {"portfolio_id": "P1", "security_id": "S1", "date": day, "epoch": epoch, "version": 1, "present": present,
            "bod_market_value": zero, "eod_market_value": D("1425.00"), "quantity": D(100), "cost": D("13.899"),
            "bod_cashflow_position": zero, "eod_cashflow_position": zero, "bod_cashflow_portfolio": zero,
            "eod_cashflow_portfolio": zero} | changes


def _portfolio_day(day: date, present: bool = True) -> dict[str, Any]:
    zero = D(0)
    return {"portfolio_id": "P1", "date": day, "version": 1, "present": present, "bod_market_value": zero,
            "eod_market_value": D("1425.00"), "bod_cashflow": zero, "eod_cashflow": zero, "fees": zero,
            "daily_return": D("0.0012345678"), "valuation_status": "COMPLETE", "keys_unvalued": 0}


@pytest.fixture
async def rebuilt(clean_db: AsyncEngine) -> AsyncEngine:
    """P1|S1 bumped from epoch 0 to 1 (A costed in epoch 0 and carried over, B costed again
    in 1, flagged oversold and waiting for FX), snapshots of D1..D3 in epoch 0 and D1..D2 in
    epoch 1; P1|S2 current in epoch 0; time-series rows of both epochs, some not present."""
    writer = ResultWriter(clean_db)
    await writer.write([
        tx("A", **key("S1")), tx("B", transaction_date=datetime(2025, 8, 2, 23, 30, tzinfo=UTC), **key("S1")),
        tx("C", **key("S2")),
        hist("A", epoch=0, seq=1), hist("B", epoch=0, seq=2, day=D2),
        snap(D1, epoch=0), snap(D2, epoch=0), snap(D3, epoch=0, market_value=D("9999")),
        state(epoch=0, version=1, watermark_date=D3),
        hist("C", seq=1, **key("S2")), snap(D1, market_value=D("0.000000000001"), **key("S2")),
        state(version=1, watermark_date=D1, **key("S2")),
    ])
    await writer.write([
        tx("B", epoch=1, transaction_type="SELL", transaction_date=datetime(2025, 8, 2, 23, 30, tzinfo=UTC),
           quantity=D(150), net_cost=None, net_cost_local=D("-1389.9"), flags="OVERSOLD,FX_MISSING", **key("S1")),
        hist("A", epoch=1, seq=1), hist("B", epoch=1, seq=2, day=D2, quantity=D(-50)),
        snap(D1, epoch=1), snap(D2, epoch=1, market_value=D("1500.10"), quantity=D(-50)),
        state(epoch=1, version=2, status="REPROCESSING", watermark_date=D2, quantity=D(-50)),
    ])
    async with clean_db.begin() as conn:
        await conn.execute(insert(position_timeseries), [
            _position_day(D1, 1), _position_day(D2, 1, eod_market_value=D("1500.10")),
            _position_day(D3, 0),  # of the epoch before the bump: not current
            _position_day(D1, 0, security_id="S2"), _position_day(D2, 0, present=False, security_id="S2"),
        ])
        await conn.execute(insert(portfolio_timeseries), [_portfolio_day(D1), _portfolio_day(D2),
                                                         _portfolio_day(D3, present=False)])
        await conn.execute(insert(cashflows), [{
            "transaction_id": "A", "portfolio_id": "P1", "security_id": "S1", "transaction_type": "BUY",
            "amount": D("-1389.9"), "currency": "USD", "classification": "INVESTMENT_OUTFLOW", "timing": "BOD",
            "calculation_type": "NET", "is_position_flow": True, "is_portfolio_flow": False, "cashflow_date": D1,
            "epoch": 0, "version": 1,
        }])
    return clean_db


async def _rows(engine: AsyncEngine, view: str, order: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(text(f"SELECT * FROM {view} ORDER BY {order}"))).mappings()]


async def test_every_view_has_the_documented_columns(rebuilt: AsyncEngine) -> None:
    async with rebuilt.connect() as conn:
        for view in VIEWS:
            result = await conn.execute(text(f"SELECT * FROM {view} LIMIT 0"))
            assert list(result.keys()) == COLUMNS[view], view


async def test_positions_are_valued_on_each_keys_latest_snapshot_of_its_current_epoch(rebuilt: AsyncEngine) -> None:
    rows = await _rows(rebuilt, "bi_positions", "security_id")
    s1, s2 = rows
    assert (s1["epoch"], s1["reprocessing_status"], s1["quantity"]) == (1, "IN_PROGRESS", D(-50))
    assert (s1["valuation_date"], s1["market_value"], s1["valued_quantity"]) == (D2, D("1500.10"), D(-50))  # not epoch 0's D3
    assert (s2["reprocessing_status"], s2["valuation_date"], s2["market_value"]) == ("CURRENT", D1, D("0.000000000001"))


async def test_snapshots_are_of_each_keys_current_epoch_only(rebuilt: AsyncEngine) -> None:
    rows = await _rows(rebuilt, "bi_daily_snapshots", "security_id, date")
    assert [(r["security_id"], r["date"], r["epoch"]) for r in rows] == [("S1", D1, 1), ("S1", D2, 1), ("S2", D1, 0)]


async def test_transactions_are_each_ones_latest_version_with_flags_decoded(rebuilt: AsyncEngine) -> None:
    rows = {r["transaction_id"]: r for r in await _rows(rebuilt, "bi_transactions", "transaction_id")}
    assert list(rows) == ["A", "B", "C"]
    a, b = rows["A"], rows["B"]
    assert (a["epoch"], a["oversold"], a["fx_missing"], a["net_cost"]) == (0, False, False, D("1389.9"))
    assert (b["epoch"], b["transaction_type"], b["oversold"], b["fx_missing"], b["net_cost"]) == (1, "SELL", True, True, None)
    assert b["trade_date"] == D2 and b["reprocessing_status"] == "IN_PROGRESS"


async def test_time_series_views_keep_present_rows_of_the_current_epoch(rebuilt: AsyncEngine) -> None:
    rows = await _rows(rebuilt, "bi_position_timeseries", "security_id, date")
    assert [(r["security_id"], r["date"], r["epoch"]) for r in rows] == [("S1", D1, 1), ("S1", D2, 1), ("S2", D1, 0)]
    assert rows[1]["eod_market_value"] == D("1500.10")
    portfolio = await _rows(rebuilt, "bi_portfolio_timeseries", "date")
    assert [r["date"] for r in portfolio] == [D1, D2] and portfolio[0]["daily_return"] == D("0.0012345678")
    flows = await _rows(rebuilt, "bi_cashflows", "transaction_id")
    assert [(r["transaction_id"], r["amount"], r["is_position_flow"]) for r in flows] == [("A", D("-1389.9"), True)]


async def test_downgrade_drops_the_views_and_upgrade_brings_them_back(postgres_url: str, clean_db: AsyncEngine) -> None:
    from alembic import command

    def views(connection: Any) -> set[str]:
        found = connection.execute(text("SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"))
        return {name for (name,) in found}

    def cycle(connection: Any) -> tuple[set[str], set[str]]:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        after_downgrade = views(connection)
        command.upgrade(config, "head")
        return after_downgrade, views(connection)

    async with clean_db.begin() as conn:
        dropped, restored = await conn.run_sync(cycle)
    assert dropped.isdisjoint(VIEWS)
    assert set(VIEWS) <= restored
