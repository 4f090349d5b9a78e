"""The pure parts of `epochflow chaos`: the seeded kill schedule, what each kill and its
recovery were, the recovery statistics per role, and the lines that report them.
(The command itself, which kills and measures on a running stack, is
`epochflow.scenarios.chaos`.)"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# How a recovery measurement ended (see epochflow.scenarios.chaos).
COMMITTED = "committed"  # a committed offset of the role's group moved past where it was at the kill
IDLE = "idle"  # nothing to consume: the new worker holds the group's partitions and the lag is zero
KILLED_AGAIN = "killed again"  # the same worker was killed again before either happened
CASE_ENDED = "case ended"  # the case's stack stopped before either happened

ENDINGS = {
    COMMITTED: "committed again",
    IDLE: "in the group with its partitions, lag 0 (nothing to consume)",  # see render_summary
    KILLED_AGAIN: "killed again before it recovered",
    CASE_ENDED: "the case ended before it recovered",
}


@dataclass(frozen=True, slots=True)
class PlannedKill:
    """One step of a kill schedule: wait `gap_s`, then kill a worker of `role` (the
    `pick`-th fraction of its workers, so the schedule does not depend on how many run)."""

    gap_s: float
    role: str
    pick: float

    def worker(self, workers: Sequence[str]) -> str:
        return workers[min(int(self.pick * len(workers)), len(workers) - 1)]


def kill_schedule(seed: int, case: str, kill_every: tuple[float, float], roles: Sequence[str]) -> Iterator[PlannedKill]:
    """The endless kill schedule of one case: gaps uniform in `kill_every`, roles chosen
    uniformly. Seeded by the seed and the case's name, so a case is killed the same way
    whichever other cases run with it."""
    low, high = kill_every
    rng = random.Random(f"{seed}/{case}")
    while True:
        yield PlannedKill(rng.uniform(low, high), rng.choice(list(roles)), rng.random())


@dataclass(frozen=True, slots=True)
class Kill:
    case: str
    number: int  # 1, 2, ... over the whole run
    role: str
    worker: str
    pid: int
    at: float  # seconds since the run started
    in_case: float  # seconds since the case's stack started


@dataclass(frozen=True, slots=True)
class Recovery:
    kill: Kill
    ending: str  # one of ENDINGS
    seconds: float  # from the kill to the ending

    @property
    def recovered(self) -> bool:
        return self.ending in (COMMITTED, IDLE)


@dataclass(frozen=True, slots=True)
class RoleStats:
    role: str
    kills: int
    recovered: int
    by_commit: int
    by_idle: int
    p50_s: float | None
    max_s: float | None
    unrecovered: dict[str, int]  # ending -> count, for kills that did not recover


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method: always a measured value."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def role_stats(roles: Sequence[str], kills: Sequence[Kill], recoveries: Sequence[Recovery]) -> list[RoleStats]:
    """Per role (in `roles` order), then "all": kills, and the recovery times of those
    that recovered."""
    rows = [_stats(role, [k for k in kills if k.role == role], [r for r in recoveries if r.kill.role == role])
            for role in roles]
    return rows + [_stats("all", kills, recoveries)]


def _stats(name: str, kills: Sequence[Kill], recoveries: Sequence[Recovery]) -> RoleStats:
    times = [r.seconds for r in recoveries if r.recovered]
    unrecovered: dict[str, int] = {}
    for r in recoveries:
        if not r.recovered:
            unrecovered[r.ending] = unrecovered.get(r.ending, 0) + 1
    return RoleStats(
        role=name,
        kills=len(kills),
        recovered=len(times),
        by_commit=sum(1 for r in recoveries if r.ending == COMMITTED),
        by_idle=sum(1 for r in recoveries if r.ending == IDLE),
        p50_s=percentile(times, 50) if times else None,
        max_s=max(times) if times else None,
        unrecovered=unrecovered,
    )


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def kill_line(kill: Kill, cases: int, case_index: int) -> str:
    return (f"[{_clock(kill.at)}] kill #{kill.number}: {kill.role} {kill.worker} pid {kill.pid} "
            f"(case {case_index}/{cases} {kill.case}, {kill.in_case:.1f}s in)")


def recovery_line(recovery: Recovery, now: float) -> str:
    kill = recovery.kill
    return (f"[{_clock(now)}] kill #{kill.number} {kill.worker}: "
            f"{ENDINGS[recovery.ending]} after {recovery.seconds:.1f}s")


def case_line(index: int, cases: int, name: str, kills_so_far: int, now: float) -> str:
    return f"[{_clock(now)}] case {index}/{cases} {name}: starting ({kills_so_far} kills so far)"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_summary(stats: Sequence[RoleStats], *, seed: int, kill_every: tuple[float, float], cases: int) -> list[str]:
    """The closing lines of a chaos run: kills per role and the recovery times."""
    total = sum(s.kills for s in stats if s.role != "all")
    lines = [
        f"chaos: {total} kills over {cases} case(s), seed {seed}, a kill every {kill_every[0]:g}-{kill_every[1]:g}s",
        "recovery: from the SIGKILL until the role's consumer group commits past its offsets at the kill",
        "(commit); with nothing to consume, until the new worker holds the group's partitions and the lag",
        "is 0 (idle). A broker that reports no assignments (the embedded one) gives, for idle, the time",
        "until the killed worker left the group: a lower bound, its partitions come after a rebalance.",
        f"{'role':<10} {'kills':>5} {'recovered':>9} {'p50 s':>6} {'max s':>6}  ended by",
    ]
    for s in stats:
        ended = f"commit {s.by_commit}, idle {s.by_idle}"
        if s.unrecovered:
            ended += "; not recovered: " + ", ".join(f"{ENDINGS[e]} {n}" for e, n in sorted(s.unrecovered.items()))
        lines.append(f"{s.role:<10} {s.kills:>5} {s.recovered:>9} {_seconds(s.p50_s):>6} {_seconds(s.max_s):>6}  {ended}")
    return lines
