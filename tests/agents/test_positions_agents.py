"""Wiring of the positions agents, with Faust test agents (STYLE.md rule 8: the numbers
are asserted on the pure core and end to end, not here).

`positions.apply` (and its siblings) consume with `take_events`; under `test_context()`
that works: `put()` returns once the stream took the value and the agent handles its
batch up to `batch_within_s` later, so the tests wait for the agent's sends.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter

from epochflow.schemas.commands import AdvanceWatermark
from epochflow.schemas.events import PortfolioEvent, TransactionEvent
from epochflow.schemas.results import Barrier, PositionHistoryRow, PositionStateRow, ResultRow, TransactionRow
from tests.fixtures.agents import FakeTopics, eventually
from tests.fixtures.result_rows import hist, state

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROWS = TypeAdapter(list[ResultRow])
KEY = b"P1|S1"


@pytest.fixture(scope="module")
def positions(agent_app):
    from epochflow.agents import positions

    return positions


def transaction_message(**changes) -> bytes:
    values = dict(
        transaction_id="T1", portfolio_id="P1", security_id="S1", transaction_type="BUY",
        transaction_date="2025-08-01T10:00:00Z", quantity="100", price="13.899", gross_amount="1389.9",
        trade_fee="0", trade_currency="USD",
    )
    return json.dumps(values | changes).encode()


def results_of(fakes: FakeTopics) -> list[tuple[int, bytes, list]]:
    """(partition, key, decoded rows) of every message sent to the results topic."""
    return [(m["partition"], m["key"], ROWS.validate_json(m["value"])) for m in fakes.results.sent]


class FakeHandler:
    """Stands in for PositionsHandler: records what the agent decoded, returns canned rows."""

    def __init__(self, rows: list) -> None:
        self.rows = rows
        self.calls: list[tuple[str, object, int | None]] = []

    def on_transaction(self, event, partition):
        self.calls.append(("transaction", event, partition))
        return self.rows

    def on_reference(self, event, partition):
        self.calls.append(("reference", event, partition))
        return self.rows

    def on_command(self, command):
        self.calls.append(("command", command, None))
        return self.rows


class FakeCache:
    """Records how often the batch collected its writes for the journal (it has none)."""

    def __init__(self) -> None:
        self.collected = 0

    def journal_writes(self) -> list:
        self.collected += 1
        return []


@pytest.fixture
def fake_handler(positions, monkeypatch: pytest.MonkeyPatch):
    rows = [hist("T1", day=date(2025, 8, 1)), state()]
    handler, cache = FakeHandler(rows), FakeCache()
    monkeypatch.setattr(positions.RUN, "make_handler", lambda: (handler, [cache]))
    return handler, cache


async def test_apply_decodes_the_transaction_calls_the_handler_and_forwards_its_rows(
    positions, fake_handler, fake_topics: FakeTopics
) -> None:
    handler, cache = fake_handler
    async with positions.apply_transactions.test_context() as agent:
        await agent.put(transaction_message(), key=KEY, partition=3)
        await eventually(lambda: fake_topics.results.sent)

    [(kind, event, partition)] = handler.calls
    assert (kind, partition) == ("transaction", 3)
    assert isinstance(event, TransactionEvent)
    assert (event.transaction_id, event.quantity, event.gross_amount) == ("T1", Decimal("100"), Decimal("1389.9"))
    assert event.transaction_date == datetime(2025, 8, 1, 10, tzinfo=UTC)
    # the handler's rows, in order, on the input's partition, keyed by the producing role
    assert results_of(fake_topics) == [(3, b"positions", handler.rows)]
    assert fake_topics.dead_letter.sent == []
    # the partition's table writes are collected once, for the step's journal
    assert cache.collected == 1


async def test_an_invalid_message_goes_to_the_dead_letter_topic_and_the_batch_goes_on(
    positions, fake_handler, fake_topics: FakeTopics
) -> None:
    handler, _ = fake_handler
    async with positions.apply_transactions.test_context() as agent:
        await agent.put(b"{not json", key=KEY, partition=1)
        await agent.put(transaction_message(trade_currency=None), key=KEY, partition=1)
        await agent.put(transaction_message(transaction_id="T2"), key=KEY, partition=1)
        await eventually(lambda: len(fake_topics.dead_letter.sent) == 2 and fake_topics.results.sent)

    letters = [json.loads(m["value"]) for m in fake_topics.dead_letter.sent]
    assert [m["partition"] for m in fake_topics.dead_letter.sent] == [0, 0]
    assert [d["stage"] for d in letters] == ["positions.apply"] * 2
    assert "Invalid JSON" in letters[0]["reason"] and letters[0]["raw"] == "{not json"
    assert letters[1]["reason"].startswith("trade_currency:"), letters[1]["reason"]
    assert [d["partition"] for d in letters] == [1, 1]
    # only the valid one reached the handler, and its rows were forwarded
    assert [(kind, event.transaction_id) for kind, event, _ in handler.calls] == [("transaction", "T2")]
    assert results_of(fake_topics) == [(1, b"positions", handler.rows)]


@pytest.mark.parametrize("agent_name, stage", [
    ("apply_transactions", "positions.apply"),
    ("apply_reference", "positions.reference"),
    ("apply_commands", "positions.commands"),
])
async def test_a_barrier_is_forwarded_as_a_barrier_row_of_its_stage(
    positions, fake_handler, fake_topics: FakeTopics, agent_name: str, stage: str
) -> None:
    handler, _ = fake_handler
    async with getattr(positions, agent_name).test_context() as agent:
        await agent.put(json.dumps({"type": "barrier", "token": "tok-1"}).encode(), key=b"barrier", partition=2)
        await eventually(lambda: fake_topics.results.sent)

    assert results_of(fake_topics) == [(2, b"positions", [Barrier(token="tok-1", stage=stage, partition=2)])]
    assert handler.calls == []


async def test_reference_and_command_agents_decode_their_messages_for_the_handler(
    positions, fake_handler, fake_topics: FakeTopics
) -> None:
    handler, _ = fake_handler
    portfolio = PortfolioEvent(portfolio_id="P1", base_currency="USD")
    command = AdvanceWatermark(portfolio_id="P1", security_id="S1", epoch=2, generation=5, to_date=date(2025, 8, 3))
    async with positions.apply_reference.test_context() as agent:
        await agent.put(portfolio.model_dump_json().encode(), key=b"portfolio|P1", partition=1)
        await eventually(lambda: handler.calls)
    async with positions.apply_commands.test_context() as agent:
        await agent.put(command.model_dump_json().encode(), key=KEY, partition=1)
        await eventually(lambda: len(handler.calls) == 2)

    assert handler.calls == [("reference", portfolio, 1), ("command", command, None)]
    assert [rows for _, _, rows in results_of(fake_topics)] == [handler.rows, handler.rows]


async def test_apply_with_the_real_handler_writes_the_tables_and_sends_the_cores_rows(
    positions, fake_topics: FakeTopics
) -> None:
    """The real handler over the agent's Faust tables (in memory here): the step's state is
    in the table afterwards and its rows go out, whatever the numbers are."""
    from epochflow.tables import positions as tables

    key = "PW|SW"
    async with positions.apply_transactions.test_context() as agent:
        await agent.put(transaction_message(portfolio_id="PW", security_id="SW", transaction_id="TW"),
                        key=key.encode(), partition=0)
        await eventually(lambda: fake_topics.results.sent)

    [(partition, source, rows)] = results_of(fake_topics)
    assert (partition, source) == (0, b"positions")
    assert [type(r) for r in rows] == [PositionHistoryRow, TransactionRow, PositionStateRow]
    assert {(r.portfolio_id, r.security_id) for r in rows} == {("PW", "SW")}
    stored = tables.STATE.get(key)  # the position_state table, through its typed store
    assert stored is not None and stored.version == rows[-1].version
    assert tables.REFS.get(f"{key}|TW") is not None  # the transaction's ref
