"""`epochflow replay` on the real embedded stack (Tansu + PostgreSQL + a worker per role).

A dataset (two portfolios, FIFO and AVCO, two securities, daily prices, business dates,
then a back-dated trade that bumps one key's epoch, then a corrected past price that the
fan-out turns into watermark resets) is settled and PostgreSQL's results snapshotted
(transactions, position history and state, snapshots, valuation jobs, reprocessing
triggers and jobs). Then a role is replayed the way an operator would: its worker stopped,
`replay` run (offsets back to the earliest, changelogs emptied, local stores removed),
the worker started again, the lag watched until it is zero, the pipeline settled; the
results must be exactly what they were. Replay must refuse while the role's worker runs,
whether the run file or the consumer group gives it away.

Rebuilt that way, valuation, the fan-out and the sink give back exactly the same rows.
Positions and the scheduler do not (hence `--force` for them): the test that shows it for
the scheduler runs first, on a stack of its own, which it leaves broken.

The supervisor has no "stop this worker, start it later": `stop_worker` marks the worker
stopped under the supervisor's lock (the monitor restarts only crashed workers) before it
terminates the process, and `restart` starts it again.
"""

from __future__ import annotations

import asyncio
import json
import pprint
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import select

from epochflow.client import NotQuiescent, Pipeline
from epochflow.devstack.broker import BrokerHandle
from epochflow.devstack.ports import port_open
from epochflow.devstack.process import terminate
from epochflow.devstack.stack import EmbeddedStack, read_run_file
from epochflow.domain.keys import position_key
from epochflow.ops.replay import ReplayPlan, ReplayRequest, WorkersRunning, replay, wait_caught_up
from epochflow.sinks.models import (
    daily_position_snapshots,
    portfolio_valuation_jobs,
    position_history,
    position_state,
    reprocessing_jobs,
    reprocessing_triggers,
    transactions,
)
from epochflow.sinks.reads.query import position
from epochflow.streams.admin import (
    changelog_topics,
    commit_group_offsets,
    create_topics,
    group_members,
    offsets_for_time,
    partitions_of,
    recreate_empty,
)
from epochflow.streams.highwater import fetch_highwaters
from epochflow.streams.names import TopicSpec, topic_name
from epochflow.streams.partitioning import partition_for
from epochflow.tables.journal import JOURNAL_TABLE
from epochflow.topology import ROLE_NAMES, ROLES, app_id
from tests.fixtures.stack import log_tail, running_stack, transaction
from tests.fixtures.valuation import DAY, Windows, business_dates, days, instrument, portfolio, price

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SETTLE_S = 180.0
STATELESS = {"sink"}  # roles without tables (nor changelogs)
WINDOWS = Windows(date(2026, 5, 4), length=30)


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(ROLE_NAMES) as running:
        yield running



# -- the stack's workers -------------------------------------------------------------------

def worker_of(stack: EmbeddedStack, role: str) -> str:
    return next(w.name for w in stack.workers if w.role == role)


def stop_worker(stack: EmbeddedStack, name: str) -> None:
    supervisor = stack.supervisor
    with supervisor._lock:  # noqa: SLF001 - see the module docstring
        worker = supervisor._workers[name]  # noqa: SLF001
        process, worker.process, worker.state = worker.process, None, "stopped"
    assert process is not None, f"{name} was not running"
    terminate([process], supervisor.stop_timeout_s)
    supervisor._changed()  # noqa: SLF001 - the run file shows the worker stopped


async def start_worker(stack: EmbeddedStack, name: str) -> None:
    stack.supervisor.restart(name)
    port = next(w.web_port for w in stack.workers if w.name == name)
    deadline = time.monotonic() + 90
    while not port_open(port):
        assert time.monotonic() < deadline, f"{name} not serving again:\n{log_tail(stack, name)}"
        await asyncio.sleep(0.2)


# -- data ------------------------------------------------------------------------------------

async def book(pipeline: Pipeline, tag: str) -> date:
    """Two portfolios (FIFO, AVCO) x two securities, a few trades each over ten days,
    daily prices (one day missing: a stale valuation), all valued; then a BUY dated in the
    middle of the valued days: back-dated, so its key moves to epoch 1; then a corrected
    price of a past day, which the fan-out turns into watermark resets of its holders."""
    w = WINDOWS.take()
    last = w + 9 * DAY
    pf, pa, s1, s2 = f"{tag}_PF", f"{tag}_PA", f"{tag}_S1", f"{tag}_S2"
    events: list[Any] = [instrument(s1), instrument(s2), portfolio(pf, w - 5 * DAY),
                         portfolio(pa, w - 5 * DAY, method="AVCO")]
    events += [price(s1, d, 20 + n) for n, d in enumerate(days(w, last)) if n != 4]
    events += [price(s2, d, Decimal("7.5") + n) for n, d in enumerate(days(w, last))]
    trades = [(0, "BUY", 10, "20"), (2, "BUY", 5, "22"), (5, "SELL", 8, "25"), (7, "BUY", 4, "27")]
    for p in (pf, pa):
        for s in (s1, s2):
            events += [transaction(f"{p}-{s}-{n}", p, s, kind, w + day * DAY, q, px, fee=1)
                       for n, (day, kind, q, px) in enumerate(trades)]
    events += business_dates(w, last)
    await pipeline.publish(events)
    await pipeline.settle(SETTLE_S)
    await pipeline.publish([transaction(f"{pf}-{s1}-late", pf, s1, "BUY", w + 3 * DAY, 3, "23", hour=9)])
    await pipeline.settle(SETTLE_S)
    await pipeline.publish([price(s2, w + 2 * DAY, "9.75")])  # was 9.5: the fan-out resets every holder
    await pipeline.settle(SETTLE_S)
    return w


TABLES = {  # table, columns left out (when a row is written again, updated_at may move)
    "transactions": (transactions, ()),
    "position_history": (position_history, ()),
    "position_state": (position_state, ("updated_at",)),
    "daily_position_snapshots": (daily_position_snapshots, ("updated_at",)),
    "portfolio_valuation_jobs": (portfolio_valuation_jobs, ("updated_at",)),
    "reprocessing_triggers": (reprocessing_triggers, ("updated_at",)),
    "reprocessing_jobs": (reprocessing_jobs, ("updated_at",)),
}


async def results(pipeline: Pipeline) -> dict[str, dict[tuple, dict[str, Any]]]:
    """Every result row PostgreSQL holds, by table and primary key."""
    found: dict[str, dict[tuple, dict[str, Any]]] = {}
    async with pipeline.engine.connect() as conn:
        for name, (table, skipped) in TABLES.items():
            keys = list(table.primary_key.columns)
            columns = [c for c in table.c if c.name not in skipped]
            rows = (await conn.execute(select(*columns).order_by(*keys))).mappings().all()
            found[name] = {tuple(r[k.name] for k in keys): dict(r) for r in rows}
    return found


def differences(before: dict[str, dict[tuple, dict]], after: dict[str, dict[tuple, dict]],
                ignored: dict[str, set[str]] | None = None, shown: int = 5) -> dict[str, Any]:
    """Per table: rows only before, only after, and the columns that changed (but for the
    `ignored` columns of a table); the first `shown` of each."""
    diff: dict[str, Any] = {}
    for name in before:
        b, a, skip = before[name], after[name], (ignored or {}).get(name, set())
        changed = {key: {c: (b[key][c], a[key][c]) for c in b[key] if c not in skip and b[key][c] != a[key][c]}
                   for key in b.keys() & a.keys() if b[key] != a[key]}
        changed = {key: columns for key, columns in changed.items() if columns}
        gone, new = sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys())
        if gone or new or changed:
            diff[name] = {"before only": gone[:shown], "after only": new[:shown],
                          "changed": dict(list(changed.items())[:shown]), "counts": (len(b), len(a))}
    return diff


async def committed(stack: EmbeddedStack, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {tp: found[tp].offset for tp in partitions if tp in found}


async def changelog_ends(stack: EmbeddedStack, role: str) -> dict[str, int]:
    """Records in each changelog topic of the role (its log end, summed over partitions)."""
    bootstrap = stack.settings.kafka_bootstrap
    topics = await changelog_topics(bootstrap, app_id(stack.settings, role))
    ends = await fetch_highwaters(bootstrap, [TopicPartition(t, p) for t, n in topics.items() for p in range(n)])
    totals: dict[str, int] = {t: 0 for t in topics}
    for tp, end in ends.items():
        totals[tp.topic] += end
    return totals


# -- the replay, as an operator runs it ------------------------------------------------------

async def replay_role(stack: EmbeddedStack, pipeline: Pipeline, request: ReplayRequest,
                      settle: bool = True) -> tuple[ReplayPlan, list[tuple[int, int]]]:
    """Stop the role's worker, replay it, check what the replay reset, start the worker,
    wait until it has caught up, settle (or, with `settle` False, only wait until what
    was published has reached PostgreSQL)."""
    role = request.role
    name = worker_of(stack, role)
    state_dir = next(w.data_dir for w in stack.workers if w.name == name) / name
    assert state_dir.is_dir(), f"{name} has no local state at {state_dir}"
    stateful = role not in STATELESS
    ends_before = await changelog_ends(stack, role)
    assert any(ends_before.values()) is stateful, f"{role}: changelogs {ends_before}"

    stop_worker(stack, name)
    lines: list[str] = []
    plan = await replay(stack.settings, request, read_run_file(stack.data_dir), data_dir=stack.data_dir, echo=lines.append)
    assert plan is not None
    text = "\n".join(lines)
    assert f"replay {role} from {request.start}" in text and f"offsets of {plan.group} reset" in text, text

    # what the replay reset, before anything runs again
    assert await committed(stack, plan.group, list(plan.targets)) == plan.targets
    if request.to_datetime is None:
        assert set(plan.targets.values()) == {0}  # Tansu never truncates a log
    ends = await changelog_ends(stack, role)
    if request.resets_state:
        assert plan.local_dirs == [state_dir.resolve()], plan.local_dirs
        assert not state_dir.exists()
        assert ends.keys() == plan.changelogs.keys() and bool(plan.changelogs) is stateful, (ends, plan.changelogs)
        assert not any(ends.values()), f"changelogs not empty after the replay: {ends}"
    else:  # tables kept: only the journal's applied-input marks are forgotten (a tombstone each)
        journal = f"{plan.group}-{JOURNAL_TABLE}-changelog"
        assert state_dir.is_dir()
        assert {t: n for t, n in ends.items() if t != journal} == {t: n for t, n in ends_before.items() if t != journal}
        if stateful:
            assert ends[journal] == ends_before[journal] + len(plan.targets), (ends, ends_before)

    await start_worker(stack, name)
    progress: list[tuple[int, int]] = []
    await wait_caught_up(stack.settings, plan, lambda done, total: progress.append((done, total)), timeout_s=240, poll_s=0.5)
    if settle:
        await pipeline.settle(SETTLE_S)
    else:
        await pipeline.quiesce(SETTLE_S)
    assert any((await changelog_ends(stack, role)).values()) is stateful, f"{role} rebuilt no table"
    assert plan.backlog > 0
    assert progress and progress[-1][0] == progress[-1][1] >= plan.backlog, progress[-3:]
    return plan, progress


def assert_same_results(before: dict, after: dict, ignored: dict[str, set[str]] | None = None) -> None:
    """Every row of every table the same, but for the `ignored` columns of a table."""
    diff = differences(before, after, ignored)
    assert not diff, pprint.pformat(diff, width=160)


async def results_before_replay(pipeline: Pipeline) -> dict:
    before = await results(pipeline)
    assert before["daily_position_snapshots"] and before["position_history"]
    assert {key[2] for key in before["position_history"]} >= {0, 1}, "the dataset should have a bumped epoch"
    return before


# -- why the scheduler needs --force: on a stack of its own, left broken ---
# (first in the module: it runs before the shared stack starts, never beside it)
# (positions needs it too: a replay reads its transactions and commands in another order,
# so its epochs are not reproduced; see the README)

async def test_rebuilding_the_scheduler_by_replay_leaves_phantom_processing_jobs() -> None:
    """The replayed scheduler values the same days to the same figures, but jobs it
    dispatches again and then drops (the replayed position states move past their days)
    stay PROCESSING in PostgreSQL for good."""
    with running_stack(ROLE_NAMES) as own:
        async with await Pipeline.connect(own.settings) as pipeline:
            await book(pipeline, "RC")
            before = await results_before_replay(pipeline)
            await replay_role(own, pipeline, ReplayRequest("scheduler"), settle=False)  # what --force runs
            after = await results(pipeline)
    # the figures: the same (a job valued again may move a key's reset generation on, and
    # records itself as the job that valued the day: see below)
    figures = {name: rows for name, rows in after.items() if name != "portfolio_valuation_jobs"}
    assert_same_results({n: before[n] for n in figures}, figures,
                        {"position_state": {"version", "generation", "changed_from"},
                         "daily_position_snapshots": {"job_version"}})
    jobs = differences({"jobs": before["portfolio_valuation_jobs"]}, {"jobs": after["portfolio_valuation_jobs"]})
    revalued = differences({"snapshots": before["daily_position_snapshots"]},
                           {"snapshots": after["daily_position_snapshots"]})
    if not jobs and not revalued:
        return
    pytest.xfail("the scheduler rebuilt by replay dispatches jobs again (known, hence --force): some stay PROCESSING, "
                 f"some value again a day a new epoch carried over (the same figures, by a job now): {jobs} {revalued}")


# -- the shared stack ------------------------------------------------------------------------

async def test_replay_refuses_while_the_role_s_worker_runs(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    await book(pipeline, "RF")
    group = app_id(stack.settings, "positions")
    ends_before = await changelog_ends(stack, "positions")
    inputs = await partitions_of(stack.settings.kafka_bootstrap,
                                 [topic_name(stack.settings, t) for t in ROLES["positions"].inputs])
    offsets_before = await committed(stack, group, inputs)
    name = worker_of(stack, "positions")

    with pytest.raises(WorkersRunning, match=rf"positions workers are running: {name} \(pid \d+\), under `epochflow up`"):
        await replay(stack.settings, ReplayRequest("positions"), read_run_file(stack.data_dir), data_dir=stack.data_dir)
    # without the run file (workers that run elsewhere), the consumer group gives it away
    with pytest.raises(WorkersRunning, match=rf"consumer group {group} still has 1 active member"):
        await replay(stack.settings, ReplayRequest("positions"), None, data_dir=stack.data_dir, grace_s=2)

    assert await changelog_ends(stack, "positions") == ends_before
    offsets_after = await committed(stack, group, inputs)  # the live worker may have moved them on, never back
    assert all(offsets_after[tp] >= offset for tp, offset in offsets_before.items()), (offsets_before, offsets_after)
    assert (next(w.data_dir for w in stack.workers if w.name == name) / name).is_dir()
    assert stack.supervisor.status(name).state == "running"


async def test_replaying_valuation_from_earliest_rebuilds_the_same_results(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    await book(pipeline, "RV")
    before = await results_before_replay(pipeline)
    await replay_role(stack, pipeline, ReplayRequest("valuation"))
    assert_same_results(before, await results(pipeline))


async def test_replaying_the_sink_from_earliest_rewrites_the_same_rows(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    await book(pipeline, "RS")
    before = await results_before_replay(pipeline)
    await replay_role(stack, pipeline, ReplayRequest("sink"))
    assert_same_results(before, await results(pipeline))


async def test_replaying_the_fanout_from_earliest_rebuilds_the_same_results(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """The replayed fan-out runs the price correction's RESET_WATERMARKS job again, under
    the same id: the keys remember it and are not reset twice, but the job's row records
    when it ran, this time."""
    await book(pipeline, "RO")
    before = await results_before_replay(pipeline)
    await replay_role(stack, pipeline, ReplayRequest("fanout"))
    assert_same_results(before, await results(pipeline),
                        {"reprocessing_jobs": {"created_at", "last_attempted_at", "finished_at"},
                         "reprocessing_triggers": {"created_at"}})


async def test_replaying_positions_over_its_state_re_sends_the_same_results(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """--keep-state: every transaction is a duplicate of one it has applied, so it re-sends
    the rows it sent; old commands are fenced off or change nothing. The figures are the
    same; what a re-send changes is when and by which step it was sent: a transaction or
    history row re-sent carries the key's current state version (and a transaction the
    time of the re-send), and a transaction dated before a back-dated trade, which kept the
    epoch it was costed under in PostgreSQL (the epoch bump re-sent only what followed the
    trade), carries the key's current epoch."""
    await book(pipeline, "RK")
    before = await results_before_replay(pipeline)
    await replay_role(stack, pipeline, ReplayRequest("positions", keep_state=True))
    assert_same_results(before, await results(pipeline),
                        {"transactions": {"epoch", "updated_at", "version"}, "position_history": {"version"}})


async def test_replaying_the_sink_from_a_datetime_rewrites_what_came_after(stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """--to-datetime: each partition of the results topic is read again from its first
    record published at or after T (Tansu's own answer to that question is wrong)."""
    w = await book(pipeline, "RT")
    mark = datetime.now(UTC)
    await pipeline.publish([price("RT_S1", w + 6 * DAY, "26.5")])  # was 26: RT_S1's holders are valued again
    await pipeline.settle(SETTLE_S)
    before = await results_before_replay(pipeline)

    plan, _ = await replay_role(stack, pipeline, ReplayRequest("sink", to_datetime=mark))

    results_topic = topic_name(stack.settings, "results")
    assert plan.topics == [results_topic] and not plan.changelogs and not plan.local_dirs
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:  # every record before a target is older than T, the record at it is not
        first_after: dict[TopicPartition, int] = {}
        consumer.assign(list(plan.targets))
        await consumer.seek_to_beginning()
        ends = await fetch_highwaters(stack.settings.kafka_bootstrap, list(plan.targets))
        while [tp for tp in plan.targets if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if record.timestamp >= mark.timestamp() * 1000 and tp not in first_after:
                        first_after[tp] = record.offset
    finally:
        await consumer.stop()
    assert plan.targets == {tp: first_after.get(tp, ends[tp]) for tp in plan.targets}
    assert any(offset > 0 for offset in plan.targets.values())
    assert_same_results(before, await results(pipeline))


async def test_a_barrier_held_up_by_a_stopped_role_is_named_with_the_lag_in_its_way(
        stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """When quiescence times out, the message says which stage and partition a barrier is
    missing at, and how far behind the consumers on its way are: here the valuation role,
    stopped, has the positions role's rows (and the barrier) left to read."""
    w = WINDOWS.take()
    name = worker_of(stack, "valuation")
    stop_worker(stack, name)
    try:
        await pipeline.publish([transaction("RQ-1", "RQ_P", "RQ_S", "BUY", w, 5, "10")])
        partition = partition_for(position_key("RQ_P", "RQ_S"), stack.settings.partitions)
        with pytest.raises(NotQuiescent) as raised:
            await pipeline.quiesce(10.0)
        message = str(raised.value)
        assert f"valuation<-positions.apply partitions [{', '.join(map(str, range(stack.settings.partitions)))}]" \
            in message, message
        lag = re.search(rf"valuation on results {{[^}}]*\b{partition}: (\d+)", message)
        assert lag and int(lag.group(1)) >= 2, message  # the positions stages' barriers, at least
        assert re.search(rf"sink on results {{[^}}]*\b{partition}: \d+", message), message
    finally:
        await start_worker(stack, name)
    await pipeline.quiesce(SETTLE_S)


async def _bought(pipeline: Pipeline, tag: str) -> date:
    """Portfolio `{tag}_P` bought 5 of `{tag}_S` (trade `{tag}-1`) and it is settled;
    returns the trade's day."""
    w = WINDOWS.take()
    await pipeline.publish([instrument(f"{tag}_S"), portfolio(f"{tag}_P", w - 5 * DAY),
                            transaction(f"{tag}-1", f"{tag}_P", f"{tag}_S", "BUY", w, 5, "10")])
    await pipeline.settle(SETTLE_S)
    return w


async def _positions_restarted_past(stack: EmbeddedStack, pipeline: Pipeline, tag: str,
                                    past: int) -> tuple[str, TopicPartition, int]:
    """`_bought`; then, while the positions worker is
    stopped, two more trades (7 then 11) and the group's offset moved `past` inputs beyond
    where the worker stopped. Returns the worker, the partition and the first offset
    skipped, the worker started again."""
    w = await _bought(pipeline, tag)
    settings = stack.settings
    portfolio_id, security_id = f"{tag}_P", f"{tag}_S"
    name = worker_of(stack, "positions")
    tp = TopicPartition(topic_name(settings, "transactions"),
                        partition_for(position_key(portfolio_id, security_id), settings.partitions))
    stop_worker(stack, name)
    try:
        skipped = (await fetch_highwaters(settings.kafka_bootstrap, [tp]))[tp]
        await pipeline.publish([transaction(f"{tag}-2", portfolio_id, security_id, "BUY", w + DAY, 7, "11"),
                                transaction(f"{tag}-3", portfolio_id, security_id, "BUY", w + 2 * DAY, 11, "12")])
        assert (await fetch_highwaters(settings.kafka_bootstrap, [tp]))[tp] == skipped + 2
        await commit_group_offsets(settings.kafka_bootstrap, app_id(settings, "positions"), {tp: skipped + past})
    finally:
        await start_worker(stack, name)
    return name, tp, skipped


async def test_an_input_the_consumer_skipped_is_read_again_not_stepped_over(
        stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """The positions worker stopped, and its group's offset on a transactions partition moved
    one input past where it stopped: what a consumer that dropped a fetched record and
    committed past it leaves. Restarted, the worker finds the hole (its journal records
    the last input it applied), reads the skipped trade again and applies every trade."""
    name, tp, skipped = await _positions_restarted_past(stack, pipeline, "HL", 1)
    await pipeline.settle(SETTLE_S)
    state = await position(pipeline.engine, "HL_P", "HL_S")
    assert state is not None and state["quantity"] == Decimal(23), (state, log_tail(stack, name))
    log = stack.supervisor.status(name).log_path.read_text(errors="replace")
    assert f"positions.apply: {tp.topic}[{tp.partition}]: input {skipped} did not arrive before input {skipped + 1}; " \
        f"reading again from {skipped}" in log, log_tail(stack, name)


async def test_inputs_the_consumer_skipped_with_nothing_after_them_are_read_again(
        stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """As above, but the group's offset moved past the last inputs of the partition, and
    nothing is published after them (no barrier either): no step meets the hole. The
    worker's watchdog finds the partition standing past inputs its journal never applied,
    and sends the consumer back to them."""
    name, tp, skipped = await _positions_restarted_past(stack, pipeline, "HT", 2)
    deadline = time.monotonic() + 150  # the watchdog looks at a partition standing still for 30 s
    while (state := await position(pipeline.engine, "HT_P", "HT_S")) is None or state["quantity"] != Decimal(23):
        assert time.monotonic() < deadline, (state, log_tail(stack, name))
        await asyncio.sleep(1.0)
    log = stack.supervisor.status(name).log_path.read_text(errors="replace")
    assert f"input {tp.topic}[{tp.partition}] stands at {skipped + 2} for 30s, but the last input applied is " \
        f"{skipped - 1}: inputs from {skipped} were handed to no step" in log, log_tail(stack, name)


async def test_a_results_message_the_sink_s_consumer_skipped_is_written_not_stepped_over(
        stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """The sink stopped, a trade's results sent meanwhile, and the sink group's offset moved
    just past them: what a consumer that dropped fetched records and committed past them
    leaves. Restarted, the sink finds the hole (`sink_offsets` holds the last message it
    wrote of each partition), reads the skipped messages again and writes their rows."""
    w = await _bought(pipeline, "HS")
    settings = stack.settings
    name = worker_of(stack, "sink")
    results_topic = topic_name(settings, "results")
    tps = [TopicPartition(results_topic, p) for p in range(settings.partitions)]
    stop_worker(stack, name)
    try:
        before = await fetch_highwaters(settings.kafka_bootstrap, tps)
        await pipeline.publish([transaction("HS-2", "HS_P", "HS_S", "BUY", w + DAY, 7, "11")])
        tp, offset = await _first_message_with(settings.kafka_bootstrap, before, b'"HS-2"')
        await commit_group_offsets(settings.kafka_bootstrap, app_id(settings, "sink"), {tp: offset + 1})
    finally:
        await start_worker(stack, name)
    await pipeline.settle(SETTLE_S)
    assert await _quantity_of(pipeline, "HS-2") == Decimal(7), log_tail(stack, name)
    state = await position(pipeline.engine, "HS_P", "HS_S")
    assert state is not None and state["quantity"] == Decimal(12), (state, log_tail(stack, name))
    log = stack.supervisor.status(name).log_path.read_text(errors="replace")
    assert re.search(rf"sink\.write: {re.escape(tp.topic)}\[{tp.partition}\]: input \d+ did not arrive before input "
                     rf"{offset + 1}; reading again", log), log_tail(stack, name)


async def test_results_messages_the_sink_s_consumer_skipped_with_nothing_after_them_are_written(
        stack: EmbeddedStack, pipeline: Pipeline) -> None:
    """The sink's group offset moved past the last messages of a results partition: no
    batch meets the hole. The sink's watchdog compares the partition, standing still, with
    `sink_offsets` and sends the consumer back."""
    w = await _bought(pipeline, "HU")
    settings = stack.settings
    name = worker_of(stack, "sink")
    tps = [TopicPartition(topic_name(settings, "results"), p) for p in range(settings.partitions)]
    stop_worker(stack, name)
    try:
        before = await fetch_highwaters(settings.kafka_bootstrap, tps)
        await pipeline.publish([transaction("HU-2", "HU_P", "HU_S", "BUY", w + DAY, 7, "11")])
        tp, _ = await _first_message_with(settings.kafka_bootstrap, before, b'"HU-2"')
        end = await _settled_end(settings.kafka_bootstrap, tp)  # what the other roles send after it, too
        await commit_group_offsets(settings.kafka_bootstrap, app_id(settings, "sink"), {tp: end})
    finally:
        await start_worker(stack, name)
    deadline = time.monotonic() + 150  # the watchdog looks at a partition standing still for 30 s
    while await _quantity_of(pipeline, "HU-2") != Decimal(7):
        assert time.monotonic() < deadline, log_tail(stack, name)
        await asyncio.sleep(1.0)
    log = stack.supervisor.status(name).log_path.read_text(errors="replace")
    watched = f"input {tp.topic}[{tp.partition}] stands at {end} for 30s"
    if (await fetch_highwaters(settings.kafka_bootstrap, [tp]))[tp] == end:  # nothing came after: only the watchdog
        assert watched in log, log_tail(stack, name)
    else:  # a later message showed the hole to a batch first
        assert watched in log or f"sink.write: {tp.topic}[{tp.partition}]: input" in log, log_tail(stack, name)


async def _quantity_of(pipeline: Pipeline, transaction_id: str) -> Decimal | None:
    async with pipeline.engine.connect() as conn:
        return (await conn.execute(select(transactions.c.quantity).where(
            transactions.c.transaction_id == transaction_id))).scalar()


async def _settled_end(bootstrap: str, tp: TopicPartition, quiet_s: float = 5.0, timeout_s: float = 60.0) -> int:
    """The end of `tp`'s log once it has not grown for `quiet_s`."""
    deadline = time.monotonic() + timeout_s
    end, since = (await fetch_highwaters(bootstrap, [tp]))[tp], time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"{tp} kept growing"
        await asyncio.sleep(0.5)
        now = (await fetch_highwaters(bootstrap, [tp]))[tp]
        if now != end:
            end, since = now, time.monotonic()
    return end


async def _first_message_with(bootstrap: str, start: dict[TopicPartition, int], text: bytes,
                              timeout_s: float = 60.0) -> tuple[TopicPartition, int]:
    """The partition and offset of the first message from `start` that holds `text`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if text in record.value:
                        return tp, record.offset
        raise AssertionError(f"no message with {text!r} after {start}")
    finally:
        await consumer.stop()


# -- the admin operations underneath, on a bare broker ---------------------------------------

async def test_offsets_for_a_time_are_the_first_records_stamped_at_or_after_it(broker: BrokerHandle, topic_prefix: str) -> None:
    """Tansu answers ListOffsets by timestamp with offset 0 whatever the time: the answer is
    checked against the records and the partition scanned when it does not hold."""
    topic = f"{topic_prefix}.timed"
    await create_topics(broker.url, [TopicSpec(topic, 3, "test")])
    base = int(time.time() * 1000) - 3_600_000
    producer = AIOKafkaProducer(bootstrap_servers=broker.url, linger_ms=20)  # several records per batch
    await producer.start()
    try:
        sends = [await producer.send(topic, b"%d" % i, partition=p, timestamp_ms=base + i * 1000)
                 for p in (0, 1) for i in range(10)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(3)]  # partition 2 stays empty

    assert await offsets_for_time(broker.url, tps, base - 1) == {tps[0]: 0, tps[1]: 0, tps[2]: 0}
    assert await offsets_for_time(broker.url, tps, base + 3000) == {tps[0]: 3, tps[1]: 3, tps[2]: 0}
    assert await offsets_for_time(broker.url, tps, base + 3500) == {tps[0]: 4, tps[1]: 4, tps[2]: 0}
    assert await offsets_for_time(broker.url, tps, base + 60_000) == {tps[0]: 10, tps[1]: 10, tps[2]: 0}


async def test_a_group_s_offsets_are_committed_as_a_member_and_its_changelogs_emptied(
    broker: BrokerHandle, topic_prefix: str
) -> None:
    group, topic = f"{topic_prefix}-role", f"{topic_prefix}.input"
    changelog = f"{group}-table-changelog"
    await create_topics(broker.url, [TopicSpec(topic, 2, "test"), TopicSpec(changelog, 2, "test"),
                                     TopicSpec(f"{group}-__assignor-__leader", 1, "not a changelog")])
    producer = AIOKafkaProducer(bootstrap_servers=broker.url)
    await producer.start()
    try:
        for p in (0, 1):
            for i in range(5):
                await producer.send_and_wait(topic, b"x", partition=p)
                await producer.send_and_wait(changelog, b"v", key=b"k%d" % i, partition=p)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]

    # a consumer of the group, gone: Tansu keeps listing it until its session lapses
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.url, group_id=group, enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=500)
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    assert len(await group_members(broker.url, group)) == 1
    await consumer.stop()
    deadline = time.monotonic() + 15
    while await group_members(broker.url, group):
        assert time.monotonic() < deadline, "a departed member is still listed after its session timeout"
        await asyncio.sleep(0.5)

    await commit_group_offsets(broker.url, group, {tps[0]: 2, tps[1]: 5})
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.url)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    assert {tp: found[tp].offset for tp in tps} == {tps[0]: 2, tps[1]: 5}

    assert await changelog_topics(broker.url, group) == {changelog: 2}
    await recreate_empty(broker.url, {changelog: 2}, {"cleanup.policy": "compact"})
    assert await changelog_topics(broker.url, group) == {changelog: 2}
    ends = await fetch_highwaters(broker.url, [TopicPartition(changelog, p) for p in (0, 1)])
    assert set(ends.values()) == {0}


# -- reads as at an earlier time, and why a day changed, before and after a sink replay ------

def _read(stack: EmbeddedStack, path: str) -> tuple[bytes, str]:
    """The body and `Epochflow-As-At` of a GET on the api worker."""
    port = next(w.web_port for w in stack.workers if w.role == "api")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read(), response.headers["Epochflow-As-At"] or ""


def _at(path: str, as_at: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}as_at={quote(as_at, safe='')}"


async def test_reads_as_at_an_earlier_time_answer_what_they_answered_then_even_after_a_sink_replay(
    stack: EmbeddedStack, pipeline: Pipeline
) -> None:
    """Read everything, book a back-dated trade, read again, correct a price, read again:
    each read asked for again `as_at` its own time answers byte for byte what it answered
    then, and `changes/` names why the corrected day changed; a replay of the sink from the
    earliest changes neither."""
    w = WINDOWS.take()
    last = w + 9 * DAY
    pf, sec = "AS_PF", "AS_S1"
    await pipeline.publish([
        instrument(sec), portfolio(pf, w - 5 * DAY), *(price(sec, d, 20 + n) for n, d in enumerate(days(w, last))),
        transaction(f"{pf}-1", pf, sec, "BUY", w, 10, "20", fee=1),
        transaction(f"{pf}-2", pf, sec, "BUY", w + 5 * DAY, 5, "25"), *business_dates(w, last),
    ])
    await pipeline.settle(SETTLE_S)
    paths = [f"/positions/{pf}/{sec}/snapshots/", f"/positions/{pf}/{sec}/history/", f"/portfolios/{pf}/positions/",
             f"/portfolios/{pf}/positions/?as_of={w + 3 * DAY}", f"/positions/{pf}/{sec}/timeseries/",
             f"/portfolios/{pf}/timeseries/", f"/portfolios/{pf}/cashflows/", f"/portfolios/{pf}/transactions/"]
    stages = [{path: await asyncio.to_thread(_read, stack, path) for path in paths}]
    await pipeline.publish([transaction(f"{pf}-late", pf, sec, "BUY", w + 2 * DAY, 3, "22")])  # back-dated
    await pipeline.settle(SETTLE_S)
    stages.append({path: await asyncio.to_thread(_read, stack, path) for path in paths})
    corrected = w + 6 * DAY
    await pipeline.publish([price(sec, corrected, "99")])  # was 26
    await pipeline.settle(SETTLE_S)
    stages.append({path: await asyncio.to_thread(_read, stack, path) for path in paths})
    snapshots = paths[0]
    assert len({stage[snapshots][0] for stage in stages}) == 3, "each stage should change the snapshots"

    changes_path = f"/positions/{pf}/{sec}/changes/?date={corrected}"
    changes, _ = await asyncio.to_thread(_read, stack, changes_path)
    found = json.loads(changes)["changes"]
    kinds = [c["cause"]["kind"] for c in found]
    assert kinds[0] == "first_valuation" and kinds[-1] == "price_correction", kinds
    assert "backdated_transaction" in kinds and all(k in ("backdated_transaction",) for k in kinds[1:-1]), kinds
    assert {c["cause"]["transaction_id"] for c in found if c["cause"]["kind"] == "backdated_transaction"} == {f"{pf}-late"}
    assert found[-1]["differences"]["market_price"] == {"before": "26", "after": "99"}
    assert found[-1]["figures"]["market_price"] == "99"

    async def check_as_at() -> None:
        for stage in stages:
            for path, (body, as_at) in stage.items():
                again, answered_at = await asyncio.to_thread(_read, stack, _at(path, as_at))
                assert (again, answered_at) == (body, as_at), path
        assert (await asyncio.to_thread(_read, stack, changes_path))[0] == changes

    await check_as_at()
    await replay_role(stack, pipeline, ReplayRequest("sink"))
    await check_as_at()
