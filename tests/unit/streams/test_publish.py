"""Routing of input events: transactions to their key's partition, reference data to all;
the broker's partition counts checked against the configuration first."""

from __future__ import annotations

import asyncio
import json

import pytest

from epochflow.config import Settings
from epochflow.schemas.events import parse_event
from epochflow.streams.names import topic_name, topic_specs
from epochflow.streams.partitioning import partition_for
from epochflow.streams.publish import PartitionMismatch, barrier_messages, check_partitions, partition_problems, route

SETTINGS = Settings(kafka_url="x:1", partitions=4, topic_prefix="t")
TXN = {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P", "security_id": "S",
       "transaction_type": "BUY", "transaction_date": "2025-08-01T10:00:00Z", "quantity": "1", "price": "1",
       "gross_amount": "1", "trade_fee": "0", "trade_currency": "USD"}


def test_transaction_goes_to_its_keys_partition() -> None:
    [routed] = route(parse_event(TXN), SETTINGS)
    assert routed.topic == "t.transactions"
    assert routed.partition == partition_for("P|S", 4)
    assert routed.key == b"P|S"
    assert json.loads(routed.value)["transaction_id"] == "T1"


def test_reference_data_goes_to_every_partition() -> None:
    event = parse_event({"type": "fx_rate", "from_currency": "EUR", "to_currency": "USD", "rate_date": "2025-08-01", "rate": "1.1"})
    routed = route(event, SETTINGS)
    assert [r.partition for r in routed] == [0, 1, 2, 3]
    assert {r.topic for r in routed} == {"t.reference"}


def test_checkpoints_are_not_published() -> None:
    assert route(parse_event({"type": "checkpoint", "name": "c", "expected": {}}), SETTINGS) == []


def test_barriers_cover_every_partition_of_every_topic() -> None:
    routed = barrier_messages(SETTINGS, "tok", ["transactions", "reference"])
    assert {(r.topic, r.partition) for r in routed} == {(f"t.{t}", p) for t in ("transactions", "reference") for p in range(4)}


def test_partitioning_is_stable_and_in_range() -> None:
    assert partition_for("P|S", 4) == partition_for("P|S", 4)
    assert all(0 <= partition_for(f"P{i}|S", 8) < 8 for i in range(100))


def _counts(settings: Settings, **changed: int) -> dict[str, int]:
    counts = {spec.name: spec.partitions for spec in topic_specs(settings)}
    counts.update({topic_name(settings, short.replace("_", "-")): n for short, n in changed.items()})
    return counts


def test_matching_partition_counts_pass() -> None:
    assert partition_problems(SETTINGS, _counts(SETTINGS)) == []


def test_a_topic_with_other_partitions_is_refused_naming_the_topic_and_both_numbers() -> None:
    [problem] = partition_problems(SETTINGS, _counts(SETTINGS, transactions=12))
    assert problem == ("topic t.transactions has 12 partitions, EPOCHFLOW_PARTITIONS is 4: "
                       "set EPOCHFLOW_PARTITIONS=12 (every role must agree)")


def test_a_missing_topic_is_refused() -> None:
    counts = _counts(SETTINGS)
    del counts["t.reference"]
    [problem] = partition_problems(SETTINGS, counts)
    assert problem.startswith("topic t.reference does not exist")


def test_check_partitions_asks_for_every_topic_and_raises_on_a_mismatch() -> None:
    asked: list[list[str]] = []

    async def counts_on_broker(topics: list[str]) -> dict[str, int]:
        asked.append(topics)
        return _counts(SETTINGS, reference=6, valuation_jobs=6)

    with pytest.raises(PartitionMismatch) as refused:
        asyncio.run(check_partitions(SETTINGS, counts_on_broker))
    assert asked == [[spec.name for spec in topic_specs(SETTINGS)]]
    assert "t.reference has 6 partitions" in str(refused.value)
    assert "t.valuation-jobs has 6 partitions" in str(refused.value)
