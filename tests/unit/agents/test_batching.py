"""Batch output shaping: one state row per key per batch (bounded by barriers), chunking."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from epochflow.agents.batching import MAX_ROWS_PER_MESSAGE, BatchOutcome, latest_state_only, partition_entry
from epochflow.agents.messages import Message
from epochflow.schemas.results import Barrier, PositionStateRow
from epochflow.tables.journal import Write
from epochflow.tables.store import CachedStore, MemoryStore


def state(version: int, changed_from: date | None = None, key: str = "S") -> PositionStateRow:
    return PositionStateRow(
        portfolio_id="P", security_id=key, epoch=0, version=version, status="CURRENT", watermark_date=None,
        quantity=Decimal(version), cost_basis=Decimal(0), cost_basis_local=Decimal(0), held_since_date=None,
        first_open_date=None, last_transaction_date=None, updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        changed_from=changed_from,
    )


def test_only_the_last_state_row_of_a_key_is_kept_with_the_earliest_change() -> None:
    rows = [state(1, date(2025, 1, 5)), state(1, key="T"), state(2, date(2025, 1, 3)), state(3)]
    kept = latest_state_only(rows)
    assert [(r.security_id, r.version) for r in kept] == [("T", 1), ("S", 3)]
    assert kept[1].changed_from == date(2025, 1, 3)


def test_a_barrier_bounds_the_dedupe() -> None:
    rows = [state(1), Barrier(token="t", stage="positions.apply", partition=0), state(2)]
    kept = latest_state_only(rows)
    assert [getattr(r, "version", "barrier") for r in kept] == [1, "barrier", 2]


def test_outputs_are_chunked_and_keyed_by_their_source() -> None:
    outcome = BatchOutcome()
    outcome.add(2, [Barrier(token=str(i), stage="s", partition=2) for i in range(MAX_ROWS_PER_MESSAGE + 1)])
    entry = partition_entry(2, outcome, [], source=b"positions")
    assert [(o.topic, o.key, o.partition) for o in entry.outputs] == [("results", b"positions", 2)] * 2
    assert entry.writes == ()


def test_an_entry_holds_the_caches_writes_then_rows_messages_and_dead_letters_in_order() -> None:
    store = CachedStore(MemoryStore())
    store.put("k", 1)
    store.delete("gone")
    outcome = BatchOutcome()
    outcome.add(0, [state(1), Message("valuation-jobs", 3, b"k", b"job")])
    outcome.dead.append(b"why")
    entry = partition_entry(0, outcome, [store], source=b"positions")
    assert entry.writes == (Write("memory", b"k", b"1"), Write("memory", b"gone", None))
    assert [(o.topic, o.partition) for o in entry.outputs] == [("results", 0), ("valuation-jobs", 3), ("dead-letter", 0)]


# -- the topic boundary: hostile messages are dead-lettered with the reason ------------------

class FakeMessage:
    def __init__(self, value: bytes, offset: int) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "epochflow.transactions", 0, offset, None, value


class FakeEvent:
    def __init__(self, value: bytes, offset: int) -> None:
        self.value, self.message = value, FakeMessage(value, offset)


TRANSACTION = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P", "security_id": "S",
               "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "1", "price": "1",
               "gross_amount": "1", "trade_fee": "0", "trade_currency": "USD"}
HOSTILE = [
    ({**TRANSACTION, "portfolio_id": "P_NUL\u0000X"}, "portfolio_id: contains control"),
    ({**TRANSACTION, "quantity": "9e999999"}, "quantity: is out of range"),
    ({**TRANSACTION, "fee": 5}, "fee: unknown field"),
    ({**TRANSACTION, "quantity": 1.5}, "quantity: is a JSON number"),
    ({**TRANSACTION, "price": "-1"}, "price must not be negative"),
]


def test_a_hostile_message_on_a_topic_is_dead_lettered_with_the_reason_and_the_rest_is_handled() -> None:
    import json

    from epochflow.agents.batching import run_partition
    from epochflow.schemas.events import parse_transaction

    values = [json.dumps(raw).encode() for raw, _ in HOSTILE]
    values.insert(2, json.dumps(TRANSACTION).encode())
    values.append(b'{"type": "barrier", "token": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")  # not a barrier
    events = [FakeEvent(value, offset) for offset, value in enumerate(values)]
    handled: list = []
    outcome = BatchOutcome()
    run_partition("positions.apply", events, lambda message, partition: handled.append(parse_transaction(message.value)) or [],
                  outcome)
    assert [event.transaction_id for event in handled] == ["T1"]
    records = [json.loads(record) for record in outcome.dead]
    assert len(records) == len(HOSTILE) + 1
    for record, (_, reason) in zip(records, HOSTILE):
        assert reason in record["reason"]
        assert {"stage", "reason", "topic", "partition", "offset", "raw", "at"} <= set(record)
    assert records[-1]["offset"] == len(values) - 1
