"""A worker's watch on its own progress, for what would otherwise stall a partition silently.

- An input partition assigned to the worker, its tables recovered and no rebalance under
  way, that stays paused: nobody consumes it and its lag only grows. Faust pauses every
  assigned partition at a rebalance and resumes them when recovery ends; a rebalance that
  lands in between can leave some paused. Logged with the consumer's state, counted
  (`epochflow_partitions_resumed_total`) and resumed.
- An input partition whose read offset has not moved for STALL_S while its log on the
  broker goes further: the client has stopped fetching it. Sought to its committed offset
  (the client fetches it again), logged and counted (`epochflow_stalls_total`, kind
  position).
- An input partition whose read offset has not moved for STALL_S while its consumer stands
  past inputs no step applied (the role's record of the last input applied says so): a
  hole with nothing after it, which no step would meet. Sent back to the hole's first input
  (epochflow.agents.holes), logged and counted (`epochflow_input_holes_total`).
- A step that runs for longer than STALL_S, or a message taken from the broker and not
  processed after STALL_S while no step took messages of its topic for as long: logged
  once with the chain of awaits of every task, and counted (kinds step, input). A restart
  clears it; the log says where to look.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time

from epochflow.agents import runner
from epochflow.agents.holes import passed_over
from epochflow.app import app
from epochflow.metrics import PARTITIONS_RESUMED, STALLS

log = logging.getLogger("epochflow.watchdog")

INTERVAL_S = 2.0
PAUSED_S = 10.0  # a partition paused this long after recovery is resumed
STALL_S = 30.0  # a step, or an unprocessed message, this old is reported
APPLIED_WAIT_S = 10.0  # at most this long to read a role's last applied inputs


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
_still: dict = {}  # input partition -> (its read offset, since when)
_reported: set[str] = set()


def _await_chain(awaitable) -> list[str]:
    """Where a suspended coroutine waits: its frames down the chain of awaits."""
    frames = []
    while awaitable is not None and len(frames) < 40:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            frames.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return frames


def task_stacks() -> str:
    """Every task's chain of awaits, then every suspended async generator's (an `async for`
    hides the generator it waits on), with the locals of Faust's batching generators."""
    import gc
    import inspect

    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}\n" + "\n".join(_await_chain(task.get_coro())) + "\n")
    for obj in gc.get_objects():
        if inspect.isasyncgen(obj) and obj.ag_frame is not None and obj.ag_frame.f_code.co_filename.endswith(
                ("faust/streams.py", "epochflow/agents/runner.py")):
            out.write(f"--- async generator {obj.ag_code.co_name}\n" + "\n".join(_await_chain(obj)) + "\n")
            if obj.ag_code.co_name == "take_events":
                local = obj.ag_frame.f_locals
                out.write(f"    buffer={len(local.get('buffer') or ())} full={local.get('buffer_full')} "
                          f"consumed={local.get('buffer_consumed')} consuming={local.get('buffer_consuming')}\n")
    return out.getvalue()


def _report(kind: str, message: str) -> None:
    """Count every finding; log each kind once per process, with the tasks."""
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


def _partition_state(tp) -> str:
    """What the consumer knows of an input partition: Faust's read and committed offsets and
    pause state, the Kafka client's position, pause state and last highwater."""
    consumer = app.consumer
    parts = [f"read={consumer._read_offset.get(tp)}", f"committed={consumer._committed_offset.get(tp)}",
             f"paused={tp in consumer._paused_partitions}"]
    try:
        kafka = consumer._thread._consumer
        state = kafka._subscription.subscription.assignment.state_value(tp)
        parts += [f"client_position={state._position}", f"client_paused={state.paused}",
                  f"awaiting_reset={state.awaiting_reset}", f"highwater={kafka.highwater(tp)}"]
    except Exception as error:  # the client's internals: a report must not fail on them
        parts.append(f"client state unknown ({error!r})")
    return " ".join(parts)


async def _check_positions(now: float) -> None:
    """An input partition whose read offset has not moved for STALL_S is compared with the
    end of its log on the broker; behind it, the client has stopped fetching it (seen on the
    embedded broker after a restart: its position and highwater frozen while new messages
    wait). Reported, counted, and the partition is sought to its committed offset, which
    drops the client's fetch state for it and fetches again from there (nothing skipped;
    what was applied already is skipped by the steps, see epochflow.tables.journal)."""
    from aiokafka import TopicPartition

    from epochflow.app import settings
    from epochflow.streams.highwater import fetch_highwaters
    from epochflow.streams.security import client_options

    consumer = app.consumer
    changelogs = set(app.tables._changelogs)
    still = []
    for tp in consumer.assignment():
        if tp.topic in changelogs or tp.topic.endswith("__assignor-__leader") or tp in consumer._paused_partitions:
            continue
        read = consumer._read_offset.get(tp)
        last, since = _still.get(tp, (None, now))
        if read != last or tp not in _still:
            _still[tp] = (read, now)
        elif now - since > STALL_S:
            still.append(tp)
            _still[tp] = (read, now)  # looked at: the next look is STALL_S later
    if not still:
        return
    sought = await _seek_to_passed_over(still)
    still = [tp for tp in still if tp not in sought]
    if not still:
        return
    ends = await fetch_highwaters(settings.kafka_bootstrap, [TopicPartition(tp.topic, tp.partition) for tp in still],
                                  timeout_s=10.0, **client_options(settings))
    for tp in still:
        # from its committed offset (`_position`): anything read since that offset and
        # applied is recognised by the journal (epochflow.tables.journal)
        position = _position(tp)
        end = ends.get(TopicPartition(tp.topic, tp.partition))
        if position is None or end is None or end <= position:
            continue  # idle: nothing newer on the broker
        STALLS.labels("position").inc()
        log.warning("input %s[%d] stood at %d for %.0fs while its log ends at %d, fetching it again from there: %s",
                    tp.topic, tp.partition, position, STALL_S, end, _partition_state(tp))
        await consumer.seek(tp, position)


def _position(tp) -> int | None:
    """The next offset the consumer reads of an input partition: its committed offset
    (after a seek, the read offset is the next one to read, not the last one read)."""
    consumer = app.consumer
    read, committed = consumer._read_offset.get(tp), consumer._committed_offset.get(tp)
    return committed if committed is not None else None if read is None else read + 1


async def _seek_to_passed_over(still: list) -> set:
    """Of the input partitions standing still, those whose consumer stands past inputs no
    step applied (a hole with nothing after it, so no step meets it: see
    epochflow.agents.holes) are sent back to the first of them. Returns those."""
    quiet = app.tables.recovery.completed.is_set() and not app.rebalancing
    # where each consumer stands, taken before the applied offsets are read: a committed
    # offset only grows, so a step that ends meanwhile cannot make a hole appear
    committed = {tp: app.consumer._committed_offset.get(tp) for tp in still if tp.topic not in runner.SAMPLED_TOPICS}
    if not quiet or not committed:
        return set()
    try:
        applied = await asyncio.wait_for(runner.applied_offsets(list(committed)), APPLIED_WAIT_S)
    except Exception as error:  # the sink's database down or slow: the next look tries again
        log.warning("watchdog: could not read the last inputs applied: %r", error)
        return set()
    sought: set = set()
    for tp, position in committed.items():
        hole = passed_over(tp.topic, tp.partition, applied.get(tp, -1), position)
        if hole is None:
            continue
        stage = next((agent.name for agent in app.agents.values()
                      if tp.topic in getattr(agent.channel, "topics", ())), tp.topic)
        runner.HOLES.resume_at(stage, hole)
        due = runner.HOLES.take_due()
        if (tp.topic, tp.partition) in due:  # else sent back lately, or its inputs are gone from the broker
            log.warning("input %s[%d] stands at %d for %.0fs, but the last input applied is %d: inputs from %d were "
                        "handed to no step", tp.topic, tp.partition, position, STALL_S, hole.offset - 1, hole.offset)
            sought.add(tp)
        await runner.seek_back(stage, due)  # with any other hole's seek that fell due
    return sought


@app.timer(interval=INTERVAL_S)
async def _watch() -> None:
    now = time.monotonic()
    _resume_paused(now)
    _check_progress(now)
    try:
        await _check_positions(now)
    except Exception as error:  # the broker may be restarting: the next look tries again
        log.warning("watchdog: could not compare input positions with the broker: %r", error)
