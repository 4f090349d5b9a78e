"""The pure parts of `epochflow chaos`: the seeded kill schedule, the recovery statistics
and the summary, and how a group's members tell that a restarted worker took over."""

from __future__ import annotations

from itertools import islice

import pytest
from aiokafka import TopicPartition

from epochflow.scenarios.chaos import holds_partitions
from epochflow.scenarios.chaos_report import (
    CASE_ENDED,
    COMMITTED,
    IDLE,
    KILLED_AGAIN,
    Kill,
    PlannedKill,
    Recovery,
    kill_line,
    kill_schedule,
    percentile,
    recovery_line,
    render_summary,
    role_stats,
)
from epochflow.streams.admin import GroupMember

ROLES = ("positions", "scheduler", "valuation", "fanout", "sink")


def test_the_kill_schedule_is_the_same_for_the_same_seed_and_case() -> None:
    first = list(islice(kill_schedule(1, "case_a", (6, 15), ROLES), 50))
    again = list(islice(kill_schedule(1, "case_a", (6, 15), ROLES), 50))
    assert first == again


@pytest.mark.parametrize("seed, case", [(2, "case_a"), (1, "case_b")], ids=["other-seed", "other-case"])
def test_another_seed_or_case_gives_another_schedule(seed: int, case: str) -> None:
    assert list(islice(kill_schedule(1, "case_a", (6, 15), ROLES), 20)) != list(
        islice(kill_schedule(seed, case, (6, 15), ROLES), 20))


def test_the_schedule_keeps_its_gaps_in_range_and_reaches_every_role() -> None:
    planned = list(islice(kill_schedule(7, "case", (3, 9), ROLES), 500))
    assert all(3 <= p.gap_s <= 9 for p in planned)
    assert {p.role for p in planned} == set(ROLES)
    assert all(0 <= p.pick < 1 for p in planned)


def test_a_planned_kill_picks_among_the_role_s_workers() -> None:
    workers = ["valuation-0", "valuation-1", "valuation-2"]
    assert [PlannedKill(1.0, "valuation", pick).worker(workers) for pick in (0.0, 0.34, 0.67, 0.999)] == [
        "valuation-0", "valuation-1", "valuation-2", "valuation-2"]
    assert PlannedKill(1.0, "sink", 0.9).worker(["sink-0"]) == "sink-0"


@pytest.mark.parametrize("values, q, expected", [
    ([5.0], 50, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([4.0, 1.0, 3.0], 50, 3.0),
    ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
    ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
])
def test_percentile_by_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def _kill(number: int, role: str) -> Kill:
    return Kill("case", number, role, f"{role}-0", 1000 + number, at=10.0 * number, in_case=5.0 * number)


def test_recovery_statistics_per_role_count_only_what_recovered() -> None:
    kills = [_kill(1, "positions"), _kill(2, "positions"), _kill(3, "positions"), _kill(4, "sink"), _kill(5, "sink")]
    recoveries = [
        Recovery(kills[0], COMMITTED, 12.0),
        Recovery(kills[1], IDLE, 8.0),
        Recovery(kills[2], COMMITTED, 20.0),
        Recovery(kills[3], KILLED_AGAIN, 3.0),
        Recovery(kills[4], CASE_ENDED, 1.0),
    ]

    stats = {s.role: s for s in role_stats(("positions", "sink", "fanout"), kills, recoveries)}

    positions = stats["positions"]
    assert (positions.kills, positions.recovered, positions.by_commit, positions.by_idle) == (3, 3, 2, 1)
    assert (positions.p50_s, positions.max_s, positions.unrecovered) == (12.0, 20.0, {})
    sink = stats["sink"]
    assert (sink.kills, sink.recovered, sink.p50_s, sink.max_s) == (2, 0, None, None)
    assert sink.unrecovered == {KILLED_AGAIN: 1, CASE_ENDED: 1}
    assert (stats["fanout"].kills, stats["fanout"].recovered) == (0, 0)
    overall = stats["all"]
    assert (overall.kills, overall.recovered, overall.p50_s, overall.max_s) == (5, 3, 12.0, 20.0)


def test_the_summary_shows_kills_and_recovery_per_role() -> None:
    kills = [_kill(1, "positions"), _kill(2, "sink")]
    recoveries = [Recovery(kills[0], COMMITTED, 12.34), Recovery(kills[1], KILLED_AGAIN, 3.0)]

    lines = render_summary(role_stats(("positions", "sink"), kills, recoveries), seed=1, kill_every=(6, 15), cases=2)

    assert lines[0] == "chaos: 2 kills over 2 case(s), seed 1, a kill every 6-15s"
    table = {line.split()[0]: line for line in lines[5:]}
    assert table["role"].split() == ["role", "kills", "recovered", "p50", "s", "max", "s", "ended", "by"]
    assert table["positions"].split()[:5] == ["positions", "1", "1", "12.3", "12.3"]
    assert "commit 1, idle 0" in table["positions"]
    assert table["sink"].split()[:5] == ["sink", "1", "0", "-", "-"]
    assert "not recovered: killed again before it recovered 1" in table["sink"]
    assert table["all"].split()[:5] == ["all", "2", "1", "12.3", "12.3"]


def test_kill_and_recovery_lines_say_when_what_and_how_it_ended() -> None:
    kill = Kill("simple_case", 3, "scheduler", "scheduler-0", 4242, at=75.25, in_case=12.5)
    assert kill_line(kill, cases=2, case_index=1) == (
        "[01:15.2] kill #3: scheduler scheduler-0 pid 4242 (case 1/2 simple_case, 12.5s in)")
    assert recovery_line(Recovery(kill, COMMITTED, 19.6), now=94.9) == (
        "[01:34.9] kill #3 scheduler-0: committed again after 19.6s")
    assert recovery_line(Recovery(kill, IDLE, 7.7), now=83.0).endswith(
        "in the group with its partitions, lag 0 (nothing to consume) after 7.7s")


TP = TopicPartition("case.results", 0)


@pytest.mark.parametrize("members, expected", [
    pytest.param([GroupMember("old", "c", "h")], False, id="only-the-killed-member"),
    pytest.param([GroupMember("old", "c", "h"), GroupMember("new", "c", "h")], False, id="killed-member-lingers"),
    pytest.param([GroupMember("new", "c", "h")], True, id="new-member-alone"),
    pytest.param([], False, id="nobody"),
    pytest.param([GroupMember("old", "c", "h", (TP,)), GroupMember("new", "c", "h")], False, id="kafka-not-yet-assigned"),
    pytest.param([GroupMember("old", "c", "h"), GroupMember("new", "c", "h", (TP,))], True, id="kafka-assigned"),
])
def test_a_new_member_holds_the_partitions(members: list[GroupMember], expected: bool) -> None:
    assert holds_partitions(members, {"old"}) is expected
