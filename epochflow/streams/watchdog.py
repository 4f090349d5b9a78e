"""A worker's watch on its own progress, for what would otherwise stall a partition silently.

- An input partition assigned to the worker, its tables recovered and no rebalance under
  way, that stays paused: nobody consumes it and its lag only grows. Faust pauses every
  assigned partition at a rebalance and resumes them when recovery ends; a rebalance that
  lands in between can leave some paused. Logged with the consumer's state, counted
  (`epochflow_partitions_resumed_total`) and resumed.
- A step that runs for longer than STALL_S, or a message taken from the broker and not
  processed after STALL_S while no step took messages of its topic for as long: logged
  once per process with the stack of every task (what each waits for), and counted
  (`epochflow_stalls_total`, by kind). A restart clears it; the log says where to look.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time

from epochflow.agents import runner
from epochflow.app import app
from epochflow.metrics import PARTITIONS_RESUMED, STALLS

log = logging.getLogger("epochflow.watchdog")

INTERVAL_S = 2.0
PAUSED_S = 10.0  # a partition paused this long after recovery is resumed
STALL_S = 30.0  # a step, or an unprocessed message, this old is reported


class Since:
    """When each of a set of things was first seen, while it stays in the set."""

    def __init__(self) -> None:
        self.first: dict = {}

    def update(self, now: float, present: set) -> float:
        """Track `present`; returns how long the oldest of them has been there (0 if none)."""
        self.first = {item: self.first.get(item, now) for item in present}
        return now - min(self.first.values()) if self.first else 0.0

    def older_than(self, now: float, age: float) -> set:
        return {item for item, first in self.first.items() if now - first >= age}


_paused = Since()
_unprocessed = Since()
_reported: set[str] = set()


def task_stacks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}: {task!r:.300}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


def _report(kind: str, message: str) -> None:
    STALLS.labels(kind).inc()
    if kind in _reported:
        return
    _reported.add(kind)
    log.warning("%s; the worker's tasks:\n%s", message, task_stacks())


def _resume_paused(now: float) -> None:
    consumer = app.consumer
    quiet = app.tables.recovery.completed.is_set() and not app.rebalancing and app.flow_control.is_active()
    changelogs = set(app.tables._changelogs)
    assignment = consumer.assignment()
    paused = {tp for tp in consumer._paused_partitions if tp in assignment and tp.topic not in changelogs}
    _paused.update(now, paused if quiet else set())
    stuck = _paused.older_than(now, PAUSED_S)
    if stuck:
        log.warning("input partitions still paused %.0fs after recovery ended, resuming them: %s",
                    PAUSED_S, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(stuck)))
        PARTITIONS_RESUMED.inc(len(stuck))
        consumer.resume_partitions(stuck)


def _check_progress(now: float) -> None:
    step_since = runner.STEP.get("since")
    if step_since is not None and now - step_since > STALL_S:
        _report("step", f"step {runner.STEP.get('stage')} running for {now - step_since:.0f}s")
    _unprocessed.update(now, {(m.tp, m.offset) for m in list(app.consumer._unacked_messages)})
    stalled = sorted({tp for tp, _ in _unprocessed.older_than(now, STALL_S)
                      if now - runner.STEPPED.get(tp.topic, float("-inf")) > STALL_S})
    if stalled:
        _report("input", f"messages of {', '.join(f'{tp.topic}[{tp.partition}]' for tp in stalled)} taken from "
                         f"the broker over {STALL_S:.0f}s ago are not processed, and no step took any of them since")


@app.timer(interval=INTERVAL_S)
async def _watch() -> None:
    now = time.monotonic()
    _resume_paused(now)
    _check_progress(now)
