"""The worker's watchdog: a partition left paused after recovery is resumed; a stalled step
or a message left unprocessed is reported once, with every task's stack."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from faust.types import TP

from epochflow import metrics
from epochflow.agents import runner
from epochflow.streams import watchdog
from epochflow.streams.watchdog import Since

TOPIC = "epochflow.transactions"


def test_since_keeps_the_first_sighting_while_present() -> None:
    since = Since()
    assert since.update(10.0, {"a"}) == 0.0
    assert since.update(15.0, {"a", "b"}) == 5.0
    assert since.older_than(15.0, 5.0) == {"a"}
    assert since.update(16.0, {"b"}) == 1.0  # "a" gone: forgotten
    assert since.update(17.0, {"a", "b"}) == 2.0  # back: a new first sighting
    assert since.older_than(17.0, 1.0) == {"b"}


class FakeConsumer:
    def __init__(self, assignment: set, paused: set, unacked: list, highwater: int | None = None) -> None:
        self._assignment, self._paused_partitions, self._unacked_messages = assignment, set(paused), unacked
        self.resumed: set = set()
        self._read_offset: dict = {}
        self._committed_offset: dict = {}
        self._thread = SimpleNamespace(_consumer=SimpleNamespace(highwater=lambda tp: highwater))

    def assignment(self) -> set:
        return self._assignment

    def resume_partitions(self, tps) -> None:
        self.resumed |= set(tps)
        self._paused_partitions -= set(tps)


@pytest.fixture
def worker(agent_app, monkeypatch: pytest.MonkeyPatch):
    """The watchdog's view of the app: a consumer, recovery done, no rebalance."""
    state = SimpleNamespace(consumer=None, rebalancing=False, recovered=True)
    recovery = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: state.recovered))
    fake_app = SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery, _changelogs={"positions-position_state-changelog": None}),
        flow_control=SimpleNamespace(is_active=lambda: True),
        agents={},
    )

    async def nothing_applied(tps) -> dict:  # the role's record of the last inputs applied: none
        return {}

    monkeypatch.setattr(runner, "applied_offsets", nothing_applied)
    monkeypatch.setattr(watchdog, "app", fake_app)
    monkeypatch.setattr(watchdog, "_paused", Since())
    monkeypatch.setattr(watchdog, "_unprocessed", Since())
    monkeypatch.setattr(watchdog, "_reported", set())
    monkeypatch.setattr(runner, "STEP", {})
    monkeypatch.setattr(runner, "STEPPED", {})

    def use(consumer: FakeConsumer, rebalancing: bool = False, recovered: bool = True) -> None:
        fake_app.consumer, fake_app.rebalancing, state.recovered = consumer, rebalancing, recovered

    return use


def test_an_input_partition_paused_after_recovery_is_resumed_changelogs_and_rebalances_are_left(worker) -> None:
    source, changelog = TP(TOPIC, 1), TP("positions-position_state-changelog", 1)
    consumer = FakeConsumer({source, changelog, TP(TOPIC, 2)}, {source, changelog}, [])
    worker(consumer, rebalancing=True)
    watchdog._resume_paused(0.0)
    watchdog._resume_paused(watchdog.PAUSED_S + 1)
    assert consumer.resumed == set()  # a rebalance pauses partitions on purpose
    worker(consumer)
    before = metrics.PARTITIONS_RESUMED._value.get()
    watchdog._resume_paused(100.0)
    assert consumer.resumed == set()  # not paused long enough yet
    watchdog._resume_paused(100.0 + watchdog.PAUSED_S)
    assert consumer.resumed == {source}
    assert metrics.PARTITIONS_RESUMED._value.get() == before + 1


async def test_a_step_running_too_long_is_reported_once_with_the_tasks(worker, caplog) -> None:
    worker(FakeConsumer(set(), set(), []))
    runner.STEP.update(stage="positions.apply", since=0.0)
    with caplog.at_level(logging.WARNING, logger="epochflow.watchdog"):
        watchdog._check_progress(watchdog.STALL_S - 1)
        assert not caplog.records
        watchdog._check_progress(watchdog.STALL_S + 1)
        watchdog._check_progress(watchdog.STALL_S + 3)
    [record] = caplog.records
    assert "step positions.apply running for" in record.getMessage() and "tasks" in record.getMessage()


async def test_a_message_left_unprocessed_while_its_topic_takes_no_step_is_reported(worker, caplog) -> None:
    waiting = SimpleNamespace(tp=TP(TOPIC, 3), offset=7)
    worker(FakeConsumer({waiting.tp}, set(), [waiting]))
    with caplog.at_level(logging.WARNING, logger="epochflow.watchdog"):
        watchdog._check_progress(0.0)
        runner.STEPPED[TOPIC] = watchdog.STALL_S  # its topic stepped lately: a backlog, not a stall
        watchdog._check_progress(watchdog.STALL_S + 1)
        assert not caplog.records
        watchdog._check_progress(2 * watchdog.STALL_S + 1)
    [record] = caplog.records
    assert f"{TOPIC}[3]" in record.getMessage()


async def test_an_input_partition_left_behind_its_log_is_fetched_again_from_its_committed_offset(
        worker, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import TopicPartition

    from epochflow.streams import highwater

    stuck, idle = TP(TOPIC, 0), TP("epochflow.reference", 1)
    ends = {TopicPartition(TOPIC, 0): 9, TopicPartition("epochflow.reference", 1): 10}

    async def log_ends(bootstrap, partitions, timeout_s=30.0, **options):
        return {tp: ends[tp] for tp in partitions}

    monkeypatch.setattr(highwater, "fetch_highwaters", log_ends)
    consumer = FakeConsumer({stuck, idle}, set(), [])
    consumer._read_offset.update({stuck: 5, idle: 9})  # after a seek: the next offset to read, not the last read
    consumer._committed_offset.update({stuck: 5, idle: 10})  # `idle` has taken all of its log
    sought: list = []

    async def seek(tp, offset):
        sought.append((tp, offset))

    consumer.seek = seek
    worker(consumer)
    before = metrics.STALLS.labels("position")._value.get()
    with caplog.at_level(logging.WARNING, logger="epochflow.watchdog"):
        await watchdog._check_positions(0.0)
        await watchdog._check_positions(watchdog.STALL_S - 1)
        assert not sought
        await watchdog._check_positions(watchdog.STALL_S + 1)
    assert sought == [(stuck, 5)]  # from the committed offset: offset 5 is not skipped
    assert metrics.STALLS.labels("position")._value.get() == before + 1
    [record] = caplog.records
    assert f"input {TOPIC}[0] stood at 5" in record.getMessage() and "ends at 9" in record.getMessage()


async def test_an_input_partition_standing_past_inputs_no_step_applied_is_sent_back_to_them(
        worker, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hole with nothing after it: the consumer stands at 12 (committed), the role's
    record says 9 was the last input applied, and nothing newer comes. Ticks are samples:
    left alone."""
    from epochflow.agents.holes import Holes

    passed, done, ticks = TP(TOPIC, 0), TP(TOPIC, 1), TP("epochflow.scheduler-ticks", 0)
    consumer = FakeConsumer({passed, done, ticks}, set(), [])
    consumer._committed_offset.update({passed: 12, done: 12, ticks: 40})
    worker(consumer)
    watchdog.app.agents = {"positions.apply": SimpleNamespace(name="positions.apply",
                                                              channel=SimpleNamespace(topics=(TOPIC,)))}
    monkeypatch.setattr(runner, "SAMPLED_TOPICS", {ticks.topic})
    monkeypatch.setattr(runner, "HOLES", Holes())
    runner.HOLES.due[(TOPIC, 5)] = 3  # another hole's seek, fallen due meanwhile: not dropped
    asked: list = []

    async def applied_offsets(tps):
        asked.extend(tps)
        return {passed: 9, done: 11, ticks: 3}

    sought: list = []

    async def seek_back(stage, due):
        sought.append((stage, due))

    monkeypatch.setattr(runner, "applied_offsets", applied_offsets)
    monkeypatch.setattr(runner, "seek_back", seek_back)
    holes = metrics.INPUT_HOLES.labels("positions.apply")._value.get()
    with caplog.at_level(logging.WARNING):
        assert await watchdog._seek_to_passed_over([passed, done, ticks]) == {passed}
    assert ticks not in asked
    assert sought == [("positions.apply", {(TOPIC, 0): 10, (TOPIC, 5): 3})]
    assert metrics.INPUT_HOLES.labels("positions.apply")._value.get() == holes + 1
    assert any(f"input {TOPIC}[0] stands at 12" in r.getMessage() and "inputs from 10 were handed to no step"
               in r.getMessage() for r in caplog.records)

    worker(consumer, rebalancing=True)  # not while partitions move
    sought.clear()
    assert await watchdog._seek_to_passed_over([passed]) == set()
    assert sought == []
