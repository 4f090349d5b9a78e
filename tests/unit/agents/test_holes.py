"""Holes in a role's input: a step takes its inputs only as far as they continue from the
last applied offset, and the worker seeks back to a hole, again while it stays, and goes on
past it only when seeking back cannot fill it."""

from __future__ import annotations

import logging

import pytest

from epochflow import metrics
from epochflow.agents.batching import continuing, partition_step
from epochflow.agents.holes import Hole, Holes, passed_over
from epochflow.tables import journal
from tests.fixtures.kills import Event, Message

TOPIC = "transactions"


def events(*offsets: int, partition: int = 1) -> list[Event]:
    return [Event(b"{}", Message(TOPIC, partition, offset, b"k", b"{}")) for offset in offsets]


def offsets(taken: list[Event]) -> list[int]:
    return [event.message.offset for event in taken]


@pytest.mark.parametrize(
    ("applied", "arrived", "taken", "hole"),
    [
        (-1, [5, 6, 7], [5, 6, 7], None),  # nothing applied yet: the first input starts the run
        (4, [5, 6, 7], [5, 6, 7], None),
        (6, [5, 6, 7], [7], None),  # delivered again after a step applied them
        (7, [5, 6, 7], [], None),
        (4, [5, 7, 8], [5], (6, 7)),  # one input lost between two that arrived
        (4, [7, 8], [], (5, 7)),  # the batch starts past the next input
        (4, [20, 21, 5, 6], [5, 6], (7, 20)),  # inputs read before a seek back, then the ones read again
        (4, [6, 5], [5], (6, 6)),  # out of order: the earlier one waits to come again
    ],
)
def test_the_inputs_a_step_takes_continue_from_the_last_applied_offset(applied, arrived, taken, hole) -> None:
    got, found = continuing(events(*arrived), applied)
    assert offsets(got) == taken
    assert found == (None if hole is None else Hole(TOPIC, 1, *hole))


@pytest.mark.parametrize(
    ("applied", "position", "hole"),
    [
        (9, 10, None),  # every input read was applied
        (9, 8, None),  # sent back before inputs it applied (read again, they are repeats)
        (9, None, None),  # the consumer has no position yet
        (-1, 10, None),  # nothing applied yet (a new role, or a replay that forgot the offsets)
        (9, 12, (10, 12)),  # stands past 10 and 11, which no step applied
        (0, 1, None),
        (0, 2, (1, 2)),
    ],
)
def test_a_partition_standing_past_inputs_no_step_applied_has_a_hole(applied, position, hole) -> None:
    assert passed_over(TOPIC, 3, applied, position) == (None if hole is None else Hole(TOPIC, 3, *hole))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_hole_is_sought_back_to_at_once_and_again_while_it_stays(caplog) -> None:
    clock = Clock()
    holes = Holes(wait_s=2.0, clock=clock)
    hole = Hole(TOPIC, 1, 6, 9)
    found = metrics.INPUT_HOLES.labels("s")._value.get()

    with caplog.at_level(logging.WARNING, logger="epochflow.agents"):
        assert holes.resume_at("s", hole) is None
    assert holes.take_due() == {(TOPIC, 1): 6}
    assert "transactions[1]: input 6 did not arrive before input 9; reading again from 6" in caplog.text
    assert metrics.INPUT_HOLES.labels("s")._value.get() == found + 1

    clock.now += 1.0  # the inputs read before the seek back are still coming
    assert holes.resume_at("s", hole) is None
    assert holes.take_due() == {}

    for _ in range(20):  # inputs the broker has are never skipped
        clock.now += 2.0
        assert holes.resume_at("s", hole) is None
        assert holes.take_due() == {(TOPIC, 1): 6}
    assert "still missing after 20 seeks back" in caplog.text
    assert metrics.INPUT_HOLES.labels("s")._value.get() == found + 1  # one hole, counted once


def test_a_hole_the_broker_no_longer_has_is_gone_on_from_its_first_offset(caplog) -> None:
    holes = Holes(wait_s=2.0, clock=Clock())
    hole = Hole(TOPIC, 1, 6, 9)
    skipped = metrics.INPUT_HOLES_SKIPPED.labels("s")._value.get()
    assert holes.resume_at("s", hole) is None
    assert holes.gone("s", TOPIC, 1, earliest=6) is False  # the broker has it: read it again
    with caplog.at_level(logging.ERROR, logger="epochflow.agents"):
        assert holes.gone("s", TOPIC, 1, earliest=8) is True
        assert holes.gone("s", TOPIC, 1, earliest=8) is True
    assert caplog.text.count("transactions[1]: inputs 6..7 are no longer on the broker (it keeps them from 8 on)") == 1
    assert metrics.INPUT_HOLES_SKIPPED.labels("s")._value.get() == skipped + 1
    assert holes.resume_at("s", hole) == 8
    assert holes.gone("s", TOPIC, 2, earliest=8) is False  # no hole there


def test_a_filled_hole_is_forgotten_and_a_new_one_is_sought_at_once() -> None:
    clock = Clock()
    holes = Holes(wait_s=2.0, clock=clock)
    assert holes.resume_at("s", Hole(TOPIC, 1, 6, 9)) is None
    holes.filled(TOPIC, 1)
    assert holes.resume_at("s", Hole(TOPIC, 1, 6, 9)) is None  # the same place again: a new hole
    assert holes.take_due() == {(TOPIC, 1): 6}
    assert holes.resume_at("s", Hole(TOPIC, 1, 12, 14)) is None  # further on: sought at once
    assert holes.take_due() == {(TOPIC, 1): 12}
    assert holes.resume_at("s", Hole(TOPIC, 2, 6, 9)) is None  # another partition: its own
    assert holes.take_due() == {(TOPIC, 2): 6}


class Counting:
    def __init__(self) -> None:
        self.handled: list[int] = []

    def handle(self, handler, message, partition) -> list:
        self.handled.append(message.offset)
        return []


def step(arrived: list[int], applied: int, holes: Holes | None, counting: Counting):
    store = {} if applied < 0 else {journal.applied_key(TOPIC, 1): str(applied).encode()}
    return partition_step("positions.apply", events(*arrived), "step_journal", store.get, lambda: (None, []),
                          counting.handle, b"positions", holes)


def applied_mark(entry) -> int:
    return int(next(w.value for w in entry.writes if w.key == journal.applied_key(TOPIC, 1)))


def test_a_step_takes_its_inputs_up_to_a_hole_and_none_after_it() -> None:
    counting, holes = Counting(), Holes()
    entry = step([5, 7, 8], 4, holes, counting)
    assert counting.handled == [5]
    assert applied_mark(entry) == 5
    assert holes.take_due() == {(TOPIC, 1): 6}

    assert step([7, 8], 5, holes, counting) is None  # the hole is still being read again
    assert counting.handled == [5]

    entry = step([6, 7, 8], 5, holes, counting)  # read again, in order
    assert counting.handled == [5, 6, 7, 8]
    assert applied_mark(entry) == 8
    assert holes.open == {}


def test_a_step_goes_on_from_the_brokers_first_offset_past_a_hole_it_no_longer_has() -> None:
    counting, holes = Counting(), Holes()
    assert step([9, 10], 4, holes, counting) is None
    assert holes.gone("positions.apply", TOPIC, 1, earliest=8)
    entry = step([9, 10], 4, holes, counting)  # 8 was not delivered either: the batch waits for it
    assert entry is None
    entry = step([8, 9, 10, 12], 4, holes, counting)
    assert counting.handled == [8, 9, 10]
    assert applied_mark(entry) == 10


def test_sampled_inputs_have_no_holes() -> None:
    counting = Counting()
    entry = step([3, 9], 1, None, counting)  # a clock's latest ticks: the ones between are left out on purpose
    assert counting.handled == [3, 9]
    assert applied_mark(entry) == 9
