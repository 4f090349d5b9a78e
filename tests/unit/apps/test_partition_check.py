"""A worker refuses to start when the broker's key-scoped topics do not have
EPOCHFLOW_PARTITIONS partitions (it would route ticks and `POST /ingest/` to the wrong
partitions), and names both counts; a broker it cannot reach is no mismatch."""

from __future__ import annotations

import dataclasses

import pytest

import epochflow.app
import epochflow.streams.producer
from epochflow.apps import refuse_partition_mismatch
from epochflow.streams.names import topic_specs


class FakeProducer:
    counts: dict[str, int] = {}

    def __init__(self, bootstrap: str, **options) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def partition_counts(self, topics) -> dict[str, int]:
        return {t: n for t, n in self.counts.items() if t in topics}


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch):
    settings = dataclasses.replace(epochflow.app.settings, kafka_url="127.0.0.1:1", partitions=4)
    monkeypatch.setattr(epochflow.app, "settings", settings)
    monkeypatch.setattr(epochflow.streams.producer, "Producer", FakeProducer)
    return settings


def test_topics_with_another_partition_count_stop_the_worker_naming_both(broker, capsys) -> None:
    FakeProducer.counts = {spec.name: (12 if spec.partitions == 4 else spec.partitions) for spec in topic_specs(broker)}
    with pytest.raises(SystemExit) as stopped:
        refuse_partition_mismatch("positions")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "has 12 partitions, EPOCHFLOW_PARTITIONS is 4" in err and "epochflow worker positions" in err


def test_matching_topics_let_the_worker_start(broker) -> None:
    FakeProducer.counts = {spec.name: spec.partitions for spec in topic_specs(broker)}
    refuse_partition_mismatch("positions")  # returns


def test_a_broker_out_of_reach_is_no_mismatch(broker, monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(FakeProducer):
        async def __aenter__(self):
            raise ConnectionError("no broker")

    monkeypatch.setattr(epochflow.streams.producer, "Producer", Unreachable)
    refuse_partition_mismatch("positions")  # returns: Faust waits for the broker as usual
