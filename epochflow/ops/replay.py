"""What `epochflow replay ROLE --to-earliest | --to-datetime T` does: make a role read its
input topics again by moving its consumer group's committed offsets back.

What a replay does, in order, and only once the role's workers are known to be stopped
(no live worker of the role in the run file of `epochflow up`, and no member left in its
consumer group; it never stops anything itself):

1. works out the target offsets: each input partition's log start (`--to-earliest`), or
   its first record stamped at or after T (`--to-datetime`; record timestamps are the
   time an event was published, not a business date);
2. commits them for the role's consumer group, as a member of the group (Tansu refuses
   AlterConsumerGroupOffsets from outside a group; a member's commit works everywhere);
3. with `--to-earliest`, resets the role's table state so the replay rebuilds it from the
   inputs alone: the changelog topics of its tables (`{group}-{table}-changelog`) are
   deleted and created again empty, and the RocksDB directories of its workers under
   EPOCHFLOW_DATA_DIR are removed. (`--keep-state` skips this step. `--to-datetime` always
   keeps the state: a table rebuilt from part of its input would be wrong.)

Then the role's workers are started by whoever runs them (`docker compose up -d
--force-recreate ROLE`, a supervisor, ...) and, with `--wait`, the command shows the
replay's progress until the group has caught up with its input topics again.

Rebuilt from empty tables, valuation, fanout and sink give back exactly what they gave
the first time (PostgreSQL ends row for row the same). Positions and the scheduler do
not (found on the embedded stack, see tests/integration/test_replay.py; the topology's
`rebuild_differs` says why): they are replayed with `--keep-state`, or rebuilt with
`--force` by someone who knows what will differ.

A step that fails says so and leaves the earlier steps done; running the same command
again does every step again.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from epochflow.config import Settings
from epochflow.devstack.process import pid_alive
from epochflow.streams.admin import (
    changelog_topics,
    commit_group_offsets,
    consumer_lag,
    group_members,
    log_starts,
    offsets_for_time,
    partitions_of,
    recreate_empty,
)
from epochflow.streams.highwater import fetch_highwaters
from epochflow.streams.names import topic_name
from epochflow.streams.producer import Producer
from epochflow.streams.security import client_options
from epochflow.tables.journal import JOURNAL_TABLE, applied_key
from epochflow.topology import REPLAYABLE, ROLES

# What Faust asks for when it declares a table's changelog (compacting, not deleting).
CHANGELOG_CONFIGS = {"cleanup.policy": "compact"}

Echo = Callable[[str], None]
Progress = Callable[[int, int], None]  # (records replayed, records to replay)


class ReplayError(RuntimeError):
    """The replay cannot (or did not) go ahead; the message says why and what to do."""


class WorkersRunning(ReplayError):
    """The role's workers still run: a replay would pull offsets from under them."""


# -- the request -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReplayRequest:
    role: str
    to_datetime: datetime | None = None  # None: from the earliest offsets
    keep_state: bool = False

    @property
    def resets_state(self) -> bool:
        return self.to_datetime is None and not self.keep_state

    @property
    def start(self) -> str:
        if self.to_datetime is None:
            return "the earliest offsets"
        return f"the first records published at or after {self.to_datetime.isoformat()}"


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date and time with its UTC offset (`Z` or `+01:00`)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReplayError(f"--to-datetime {text!r} is not an ISO 8601 date and time "
                          "(e.g. 2026-11-24T09:30:00+01:00)") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReplayError(f"--to-datetime {text!r} has no UTC offset: write it as e.g. "
                          f"{value.isoformat()}Z or {value.isoformat()}+01:00")
    return value


def replay_request(role: str, to_earliest: bool, to_datetime: str | None, keep_state: bool = False,
                   force: bool = False, now: datetime | None = None) -> ReplayRequest:
    """Validate the command line; every refusal says what to write instead."""
    if role not in REPLAYABLE:
        raise ReplayError(f"cannot replay {role!r}: ROLE is one of {', '.join(REPLAYABLE)} "
                          "(the api role consumes no topic)")
    if to_earliest == (to_datetime is not None):
        raise ReplayError("give exactly one of --to-earliest or --to-datetime T")
    if to_datetime is None:
        differs = ROLES[role].rebuild_differs
        if not keep_state and not force and differs is not None:
            raise ReplayError(
                f"replaying {role} with its tables reset does not rebuild the same results: "
                f"{differs}. Use --keep-state to make it re-read its inputs over the "
                "state it has (it re-sends its results), or --force to rebuild it anyway."
            )
        return ReplayRequest(role, None, keep_state)
    when = parse_datetime(to_datetime)
    now = now or datetime.now(UTC)
    if when > now:
        raise ReplayError(f"--to-datetime {when.isoformat()} is in the future (it is now "
                          f"{now.isoformat(timespec='seconds')}): there is nothing to replay")
    return ReplayRequest(role, when, keep_state)


# -- what would happen ---------------------------------------------------------------------

@dataclass(slots=True)
class ReplayPlan:
    request: ReplayRequest
    group: str
    topics: list[str]
    targets: dict[TopicPartition, int]  # offset each input partition is read again from
    backlog: int  # records between the targets and the ends of the logs
    changelogs: dict[str, int] = field(default_factory=dict)  # to empty (name -> partitions)
    local_dirs: list[Path] = field(default_factory=list)  # to remove

    def describe(self) -> str:
        by_topic: dict[str, int] = {}
        for tp in self.targets:
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + 1
        lines = [
            f"replay {self.request.role} from {self.request.start}",
            f"  consumer group  {self.group} (no active members)",
            "  input topics    " + ", ".join(f"{t} ({n} partitions)" for t, n in sorted(by_topic.items())),
            f"  to replay       {self.backlog} records",
        ]
        if not self.request.resets_state:
            lines.append("  table state     kept (changelogs and local stores untouched)")
            return "\n".join(lines)
        lines.append(f"  changelogs      {len(self.changelogs)} to empty: " + (", ".join(sorted(self.changelogs)) or "none yet"))
        if self.local_dirs:
            lines.append("  local stores    to remove: " + ", ".join(str(d) for d in self.local_dirs))
        else:
            lines.append("  local stores    none found here: workers that run elsewhere must start with an "
                         "empty EPOCHFLOW_DATA_DIR (e.g. docker compose up -d --force-recreate)")
        return "\n".join(lines)


async def check_stopped(settings: Settings, role: str, run: Mapping[str, Any] | None = None,
                        grace_s: float | None = None) -> None:
    """Refuse (WorkersRunning) while any worker of `role` runs.

    The run file of `epochflow up` names its workers; the consumer group covers workers
    wherever they run. A stopped worker may stay a member until its session times out,
    so members get `grace_s` (default: the session timeout and a little more) to go."""
    group = ROLES[role].app_id(settings)
    if run is not None:
        live = [w for w in run.get("workers", []) if w.get("role") == role and pid_alive(w.get("pid") or 0)]
        if live:
            names = ", ".join(f"{w['name']} (pid {w['pid']})" for w in live)
            raise WorkersRunning(
                f"the {role} workers are running: {names}, under `epochflow up` (pid {run.get('pid')}), which "
                f"restarts any worker that stops; stop it first (replay does not stop workers by surprise)"
            )
    grace_s = settings.session_timeout_s + 2.0 if grace_s is None else grace_s
    deadline = time.monotonic() + grace_s
    while True:
        members = await group_members(settings.kafka_bootstrap, group)
        if not members:
            return
        if time.monotonic() >= deadline:
            who = ", ".join(sorted({f"{m.client_id or '?'}@{m.client_host or '?'}" for m in members}))
            raise WorkersRunning(
                f"consumer group {group} still has {len(members)} active member(s) ({who}): the {role} workers "
                f"are running. Stop them (e.g. `docker compose stop {role}`) and run replay again; "
                f"replay does not stop workers by surprise."
            )
        await asyncio.sleep(1.0)


def local_state_dirs(data_dir: Path, role: str, run: Mapping[str, Any] | None = None) -> list[Path]:
    """The RocksDB directories (`{EPOCHFLOW_DATA_DIR}/{role}-{worker_id}`) of the role's
    workers that this machine can see: a worker's own data dir (`data_dir` holds
    `{role}-*`), the workers of an `epochflow up` stack (`data_dir/workers/{role}-*`), and
    those its run file names. Only directories laid out as Faust lays out its data dir
    (`v<N>/` inside, or nothing yet) qualify."""
    roots = {Path(data_dir)}
    roots.update(p for p in (Path(data_dir) / "workers").glob(f"{role}-*") if p.is_dir())
    if run is not None:
        roots.update(Path(w["data_dir"]) for w in run.get("workers", []) if w.get("role") == role and w.get("data_dir"))
    pattern = re.compile(rf"^{re.escape(role)}-[A-Za-z0-9_.-]+$")
    found = {
        child.resolve()
        for root in roots if root.is_dir()
        for child in root.iterdir()
        if pattern.match(child.name) and child.is_dir() and not child.is_symlink() and _faust_data_dir(child)
    }
    return sorted(found)


def _faust_data_dir(directory: Path) -> bool:
    children = list(directory.iterdir())
    return not children or any(c.is_dir() and re.fullmatch(r"v\d+", c.name) for c in children)


async def plan_replay(settings: Settings, request: ReplayRequest, run: Mapping[str, Any] | None = None,
                      data_dir: Path | None = None) -> ReplayPlan:
    """The target offsets and the state a replay would reset; changes nothing."""
    bootstrap = settings.kafka_bootstrap
    group = ROLES[request.role].app_id(settings)
    topics = [topic_name(settings, short) for short in ROLES[request.role].inputs]
    partitions = await partitions_of(bootstrap, topics)
    missing = sorted(set(topics) - {tp.topic for tp in partitions})
    if missing:
        raise ReplayError(f"input topics of {request.role} not found on {settings.kafka_url}: {missing} "
                          "(is EPOCHFLOW_TOPIC_PREFIX right?)")
    if request.to_datetime is None:
        targets = await log_starts(bootstrap, partitions)
    else:
        targets = await offsets_for_time(bootstrap, partitions, int(request.to_datetime.timestamp() * 1000))
    ends = await fetch_highwaters(bootstrap, partitions)
    plan = ReplayPlan(request, group, topics, targets, sum(max(0, ends[tp] - targets[tp]) for tp in partitions))
    if request.resets_state:
        plan.changelogs = await changelog_topics(bootstrap, group)
        plan.local_dirs = local_state_dirs(data_dir or settings.data_dir, request.role, run)
    return plan


async def apply_plan(settings: Settings, plan: ReplayPlan, echo: Echo = print) -> None:
    """Offsets first (on their own they only make the role re-read what it has applied),
    then the state; each step is reported as it completes."""
    bootstrap = settings.kafka_bootstrap
    await commit_group_offsets(bootstrap, plan.group, plan.targets)
    echo(f"offsets of {plan.group} reset to {plan.request.start} ({len(plan.targets)} partitions)")
    if not plan.request.resets_state:
        forgotten = await forget_applied_offsets(settings, plan)
        if forgotten:
            echo(f"applied-input marks forgotten: {forgotten} (the kept tables take the inputs again)")
        return
    try:
        await recreate_empty(bootstrap, plan.changelogs, CHANGELOG_CONFIGS)
    except Exception as exc:
        raise ReplayError(f"offsets were reset, but emptying the changelog topics failed ({exc}); "
                          "do not start the workers: run the same replay again") from exc
    echo(f"changelog topics emptied: {len(plan.changelogs)}")
    for directory in plan.local_dirs:
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ReplayError(f"offsets and changelogs were reset, but {directory} could not be removed ({exc}); "
                              "remove it before starting the workers") from exc
    if plan.local_dirs:
        echo(f"local stores removed: {len(plan.local_dirs)}")


async def forget_applied_offsets(settings: Settings, plan: ReplayPlan) -> int:
    """With its tables kept, a role would skip every replayed input as applied already (each
    step records the last input offset it applied, see epochflow.tables.journal): tombstones
    for those marks in the journal table's changelog make the restarted workers, which
    read their changelogs on start, take the inputs again."""
    changelog = f"{plan.group}-{JOURNAL_TABLE}-changelog"
    if changelog not in await changelog_topics(settings.kafka_bootstrap, plan.group):
        return 0  # a role without steps of its own (the sink)
    async with Producer(settings.kafka_bootstrap, **client_options(settings)) as producer:
        for tp in plan.targets:
            await producer.send(changelog, tp.partition, applied_key(tp.topic, tp.partition), None)
    return len(plan.targets)


async def replay(settings: Settings, request: ReplayRequest, run: Mapping[str, Any] | None = None, *,
                 data_dir: Path | None = None, echo: Echo = print,
                 confirm: Callable[[ReplayPlan], bool] | None = None, grace_s: float | None = None) -> ReplayPlan | None:
    """Check, plan, (confirm,) check again and apply. Returns the plan applied, or None
    when `confirm` declined."""
    if not settings.kafka_url:
        raise ReplayError("no running stack found: set EPOCHFLOW_KAFKA_URL (or run from the data dir of `epochflow up`)")
    await check_stopped(settings, request.role, run, grace_s)
    plan = await plan_replay(settings, request, run, data_dir)
    echo(plan.describe())
    if confirm is not None and not confirm(plan):
        return None
    await check_stopped(settings, request.role, run, 0.0)  # nobody started one meanwhile
    await apply_plan(settings, plan, echo)
    return plan


# -- until caught up -----------------------------------------------------------------------

async def wait_caught_up(settings: Settings, plan: ReplayPlan, progress: Progress | None = None,
                         timeout_s: float | None = None, poll_s: float = 1.0) -> float:
    """Poll the group's lag (committed offsets against the ends of the logs) until it is
    zero on every input partition; returns the seconds waited. `progress` gets (records
    replayed, records to replay) on every poll: the total grows with live traffic."""
    started = time.monotonic()
    total = plan.backlog
    while True:
        lag = await consumer_lag(settings.kafka_bootstrap, plan.group, plan.topics)
        behind = sum(n for parts in lag.values() for n in parts.values())
        total = max(total, behind)
        if progress is not None:
            progress(total - behind, total)
        if behind <= 0:
            return time.monotonic() - started
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise ReplayError(f"{plan.group} still {behind} records behind after {timeout_s:.0f}s; "
                              "are its workers running? (`epochflow status`)")
        await asyncio.sleep(poll_s)


def start_hint(role: str, run: Mapping[str, Any] | None) -> str:
    if run is not None:
        return f"start the {role} workers again"
    return f"start the {role} workers again (e.g. `docker compose up -d --force-recreate {role}`)"


def summarize(plan: ReplayPlan, seconds: float) -> str:
    return f"{plan.group} caught up: {plan.backlog} records replayed in {seconds:.1f}s"
