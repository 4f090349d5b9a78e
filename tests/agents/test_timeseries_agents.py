"""Wiring of the timeseries agents, with Faust test agents (STYLE.md rule 8: the figures
are asserted on the pure core, the fault-injection tests and end to end, not here).

`timeseries.forward` sends the positions and valuation rows' changes to the portfolio's
partition of portfolio-changes and ignores other producers' messages; `timeseries.apply`
applies a message of changes and sends the rows of what changed to the results topic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter

from epochflow.agents.batching import encode_rows
from epochflow.schemas.results import CashflowRow, PortfolioTimeseriesRow, PositionTimeseriesRow, ResultRow, TransactionRow
from epochflow.schemas.series import CHANGES, CashflowChange, SnapshotChange, encode_changes
from epochflow.streams.partitioning import partition_for
from tests.fixtures.agents import FakeTopic, FakeTopics, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROWS = TypeAdapter(list[ResultRow])
DAY = date(2025, 6, 2)


@pytest.fixture(scope="module")
def timeseries(agent_app):
    from epochflow.agents import timeseries

    return timeseries


@pytest.fixture
def changes_topic(fake_topics: FakeTopics, monkeypatch: pytest.MonkeyPatch) -> FakeTopic:
    from epochflow.streams import topics

    fake = FakeTopic("portfolio-changes")
    monkeypatch.setattr(topics, "portfolio_changes", fake)
    return fake


def buy() -> TransactionRow:
    return TransactionRow(
        transaction_id="T1", portfolio_id="P1", security_id="S1", epoch=0, transaction_type="BUY",
        transaction_date=datetime(2025, 6, 2, 10, tzinfo=UTC), quantity=Decimal(100), price=Decimal(50),
        gross_amount=Decimal(5000), trade_fee=Decimal(10), trade_currency="USD", net_cost=Decimal(5010),
        net_cost_local=Decimal(5010), realized_gain_loss=None, realized_gain_loss_local=None,
        transaction_fx_rate=Decimal(1))


async def test_forward_sends_a_portfolio_its_changes_and_ignores_other_producers(
    timeseries, fake_topics: FakeTopics, changes_topic: FakeTopic
) -> None:
    from epochflow.app import settings

    async with timeseries.forward_changes.test_context() as agent:
        await agent.put(encode_rows([buy()]), key=b"sink", partition=2)  # not a producer it follows
        await agent.put(encode_rows([buy()]), key=b"positions", partition=2)
        await eventually(lambda: changes_topic.sent)

    [message] = changes_topic.sent
    assert (message["partition"], message["key"]) == (partition_for("P1", settings.partitions), b"P1")
    [change] = CHANGES.validate_json(message["value"])
    assert isinstance(change, CashflowChange)
    assert (change.transaction_id, change.gross_amount, change.trade_fee, change.epoch) == ("T1", 5000, 10, 0)
    assert fake_topics.results.sent == [] and fake_topics.dead_letter.sent == []


async def test_apply_sends_the_rows_of_what_changed(timeseries, fake_topics: FakeTopics) -> None:
    changes = [
        CashflowChange(transaction_id="T9", portfolio_id="P9", security_id="S9", transaction_type="DEPOSIT",
                       transaction_date=DAY, gross_amount=Decimal(100), trade_fee=Decimal(0), currency="USD",
                       epoch=0, version=4),
        SnapshotChange(portfolio_id="P9", security_id="S9", date=DAY, epoch=0, version=5, quantity=Decimal(100),
                       cost_basis_local=Decimal(100), market_value_local=Decimal(100), market_value=Decimal(100),
                       valuation_status="VALUED_CURRENT"),
    ]
    async with timeseries.apply_changes.test_context() as agent:
        await agent.put(encode_changes(changes), key=b"P9", partition=1)
        await eventually(lambda: fake_topics.results.sent)

    [message] = fake_topics.results.sent
    assert (message["partition"], message["key"]) == (1, b"timeseries")
    rows = ROWS.validate_json(message["value"])
    assert [type(r) for r in rows] == [CashflowRow, PositionTimeseriesRow, PortfolioTimeseriesRow]
    portfolio = rows[-1]
    assert (portfolio.date, portfolio.eod_market_value, portfolio.version) == (DAY, 100, 0)
    # no reference data read for P9 yet: its base currency unknown, its flows not converted
    assert (portfolio.valuation_status, portfolio.daily_return) == ("INCOMPLETE", None)
    assert fake_topics.dead_letter.sent == []
