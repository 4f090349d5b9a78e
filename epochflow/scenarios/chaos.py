"""`epochflow chaos FILE`: the scenario cases of FILE, each on a fresh embedded stack as
`epochflow scenario run` runs them, while a killer SIGKILLs a random worker of the chosen
roles every uniform(MIN, MAX) seconds (seeded) and the supervisor restarts it.

Recovery is measured on the broker, from each SIGKILL until the role's consumer group
commits an offset past where it was at the kill (the restarted worker processes again);
when the role has nothing to consume, until the new worker holds the group's partitions
and the group's lag is zero (on the embedded broker, which reports no assignments: until
the killed worker has left the group, a lower bound). The chaos stack runs one worker per
role, so nobody but the restarted worker commits for the group meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from epochflow.config import Settings
from epochflow.devstack.stack import EmbeddedStack
from epochflow.scenarios.chaos_report import (
    CASE_ENDED,
    COMMITTED,
    IDLE,
    KILLED_AGAIN,
    Kill,
    Recovery,
    case_line,
    kill_line,
    kill_schedule,
    recovery_line,
    render_summary,
    role_stats,
)
from epochflow.scenarios.runner import Case, CaseResult, fresh_embedded_stack, run_file
from epochflow.streams.admin import AdminError, GroupMember, GroupReader, consumer_lag, partitions_of
from epochflow.streams.names import topic_name
from epochflow.topology import ROLES

log = logging.getLogger("epochflow.chaos")

DEFAULT_ROLES: tuple[str, ...] = ("positions", "scheduler", "valuation", "fanout", "timeseries", "sink")
KILLABLE: tuple[str, ...] = tuple(name for name, role in ROLES.items() if role.inputs)  # recovery is read off the group
POLL_S = 0.25  # how often the committed offsets of a group with a pending measurement are read
MEMBERS_EVERY_S = 1.0  # how often its members and lag are (the idle ending)


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    kill_every: tuple[float, float] = (6.0, 15.0)
    roles: tuple[str, ...] = DEFAULT_ROLES
    seed: int = 0
    timeout: float = 120.0  # quiescence wait per checkpoint
    only: Collection[str] | None = None  # case names
    logs: Path | None = None  # where each case's logs are kept (a directory per case)


@dataclass
class _Measurement:
    """A kill whose recovery is being watched."""

    kill: Kill
    killed_at: float  # monotonic
    group: str
    topics: list[str]
    partitions: list[TopicPartition]
    baseline: dict[TopicPartition, int]  # the group's committed offsets just after the kill
    members_at_kill: set[str]
    next_members_check: float = 0.0


@dataclass
class ChaosRun:
    """The kills and recoveries of one run, over all its cases."""

    options: ChaosOptions
    echo: Callable[[str], None] = print
    kills: list[Kill] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic)
    _case: Case | None = None
    _case_index: int = 0
    _case_count: int = 0
    _pending: dict[str, _Measurement] = field(default_factory=dict)  # by worker name

    def begin_case(self, index: int, count: int, case: Case) -> None:
        self._case, self._case_index, self._case_count = case, index, count
        self.echo(case_line(index, count, case.name, len(self.kills), self._now()))

    @asynccontextmanager
    async def stack(self) -> AsyncIterator[Settings]:
        """A fresh embedded stack with the killer and the recovery watcher running on it
        (the scenario runner's stack factory)."""
        case = self._case.name if self._case is not None else "case"
        keep = self.options.logs / case if self.options.logs is not None else None
        async with fresh_embedded_stack(keep) as stack, GroupReader(stack.settings.kafka_bootstrap) as groups:
            case_started = time.monotonic()
            partitions = {role: await partitions_of(stack.settings.kafka_bootstrap, _topics(stack.settings, role))
                          for role in self.options.roles}
            tasks = [
                asyncio.create_task(self._kill(stack, groups, case, case_started, partitions), name="chaos.kill"),
                asyncio.create_task(self._watch(stack.settings, groups), name="chaos.watch"),
            ]
            try:
                yield stack.settings
            finally:
                for task in tasks:
                    task.cancel()
                for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                    if isinstance(outcome, Exception):
                        self.echo(f"chaos: {outcome!r}")
                now = time.monotonic()
                for name in list(self._pending):
                    self._end(self._pending.pop(name), CASE_ENDED, now)

    def summary(self, cases: int) -> list[str]:
        stats = role_stats(self.options.roles, self.kills, self.recoveries)
        return render_summary(stats, seed=self.options.seed, kill_every=self.options.kill_every, cases=cases)

    # -- the killer -------------------------------------------------------------------------

    async def _kill(self, stack: EmbeddedStack, groups: GroupReader, case: str, case_started: float,
                    partitions: dict[str, list[TopicPartition]]) -> None:
        for planned in kill_schedule(self.options.seed, case, self.options.kill_every, self.options.roles):
            await asyncio.sleep(planned.gap_s)
            workers = sorted(w.name for w in stack.workers if w.role == planned.role)
            name = planned.worker(workers)
            try:
                pid = stack.supervisor.kill(name)
            except RuntimeError as error:  # between its exit and its restart
                self.echo(f"no kill of {name}: {error}")
                continue
            killed_at = time.monotonic()
            kill = Kill(case, len(self.kills) + 1, planned.role, name, pid, killed_at - self._started,
                        killed_at - case_started)
            self.kills.append(kill)
            self.echo(kill_line(kill, self._case_count, self._case_index))
            if name in self._pending:
                self._end(self._pending.pop(name), KILLED_AGAIN, killed_at)
            group = ROLES[planned.role].app_id(stack.settings)
            try:
                baseline = await groups.committed(group, partitions[planned.role])
                members = {m.member_id for m in await groups.members(group)}
            except (KafkaError, AdminError, OSError) as error:
                log.warning("chaos.measure_failed kill=%d error=%r", kill.number, error)
                self.echo(f"kill #{kill.number}: recovery not measured ({error!r})")
                continue
            self._pending[name] = _Measurement(kill, killed_at, group, _topics(stack.settings, planned.role),
                                               partitions[planned.role], baseline, members)

    # -- the recovery watcher ---------------------------------------------------------------

    async def _watch(self, settings: Settings, groups: GroupReader) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            for name, measurement in list(self._pending.items()):
                try:
                    ending = await _check(measurement, groups, settings.kafka_bootstrap)
                except (TimeoutError, KafkaError, AdminError, OSError) as error:
                    log.warning("chaos.check_failed worker=%s error=%r", name, error)  # the next poll tries again
                    continue
                if ending is not None and self._pending.get(name) is measurement:
                    self._end(self._pending.pop(name), ending, time.monotonic())

    def _end(self, measurement: _Measurement, ending: str, at: float) -> None:
        recovery = Recovery(measurement.kill, ending, at - measurement.killed_at)
        self.recoveries.append(recovery)
        self.echo(recovery_line(recovery, self._now()))

    def _now(self) -> float:
        return time.monotonic() - self._started


async def _check(m: _Measurement, groups: GroupReader, bootstrap: str) -> str | None:
    """COMMITTED or IDLE once the role recovered from the kill, else None."""
    committed = await groups.committed(m.group, m.partitions)
    if any(committed[tp] > m.baseline.get(tp, -1) for tp in m.partitions):
        return COMMITTED
    now = time.monotonic()
    if now < m.next_members_check:
        return None
    m.next_members_check = now + MEMBERS_EVERY_S
    if not holds_partitions(await groups.members(m.group), m.members_at_kill):
        return None
    lag = await consumer_lag(bootstrap, m.group, m.topics)
    return IDLE if all(n <= 0 for partitions in lag.values() for n in partitions.values()) else None


def holds_partitions(members: Sequence[GroupMember], at_kill: set[str]) -> bool:
    """Whether a member that joined after the kill holds the group's partitions. Where the
    broker reports assignments (Kafka), one of the new members must have some. Tansu
    reports none; there the best it tells is that none of the members at the kill is left
    (the killed worker's lingers until its session times out): the rebalance that gives the
    new member the partitions comes after that, so this ends the measurement early."""
    new = [m for m in members if m.member_id not in at_kill]
    if not new:
        return False
    if any(m.partitions for m in members):
        return any(m.partitions for m in new)
    return len(new) == len(members)


def _topics(settings: Settings, role: str) -> list[str]:
    return [topic_name(settings, short) for short in ROLES[role].inputs]


async def run_chaos(path: Path, options: ChaosOptions, echo: Callable[[str], None] = print) -> list[CaseResult]:
    """Run the cases of `path` under the killer; prints the kills, recoveries and verdicts
    as they happen, then the summary. Returns the cases' results."""
    chaos = ChaosRun(options, echo)
    results = await run_file(path, chaos.stack, options.only, options.timeout, echo, on_case=chaos.begin_case)
    for line in chaos.summary(len(results)):
        echo(line)
    return results
