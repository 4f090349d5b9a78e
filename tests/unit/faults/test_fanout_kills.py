"""The fan-out role killed at any record of any step ends exactly like an undisturbed run:
the same tables (triggers, reset jobs, holders, reference data), the same rows for the sink,
and every watermark reset the undisturbed run sent, restored from the changelog or with its
local tables kept. A restart also loses what the role keeps in its process (rate limiter,
in-flight window, the jobs it is working on, the holders it has seen): the harness builds
those anew in every restarted worker.

Its reference agent and its tick agent share the tables. Before the redo journal and the
worker's step lock, the tick wrote its cached tables after awaiting delivery, overwriting a
trigger the reference agent had written meanwhile: the correction was lost. The last tests
run the two agents' steps concurrently, interleaved at every await, with the runner's lock
(nothing is lost) and without it (the lost trigger).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.agents import fanout_handler
from epochflow.agents.batching import encode_rows
from epochflow.agents.fanout_handler import FanoutHandler
from epochflow.domain.fanout import FanoutConfig, InFlight, SubjectState, pace_limiter
from epochflow.domain.series import SeriesMonth
from epochflow.schemas.jobs import Tick
from epochflow.schemas.results import PositionStateRow
from epochflow.tables.codec import decode
from epochflow.tables.index import KeySet
from epochflow.tables.reference import Instrument, Months, Portfolio, ReferenceData
from tests.fixtures.faults import MemoryWorker
from tests.fixtures.kills import (
    FixedDatetime,
    Role,
    batches,
    direct,
    disturbed,
    events_of,
    journalled,
    play,
    sent,
    sink_view,
    step,
    stores,
    tables,
)

TABLES = [("fanout_subjects", SubjectState), ("fanout_index", KeySet), ("fanout_reference_portfolios", Portfolio),
          ("fanout_reference_instruments", Instrument), ("fanout_reference_series", SeriesMonth),
          ("fanout_reference_series_index", Months), ("fanout_reference_scalars", date)]
# one job PROCESSING per partition at a time; a job resets all its holders in one cycle
CONFIG = FanoutConfig(claim_batch=1, keys_per_cycle=500, rate_per_s=2000.0, max_in_flight=32, in_flight_timeout_s=60.0,
                      max_attempts=5)
TICK_S = 0.25
NOW = 1_750_000_000.0


@pytest.fixture(autouse=True, scope="module")
def wall_clock():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fanout_handler, "datetime", FixedDatetime)  # the rows' updated_at
        yield


def _handler(worker: MemoryWorker, partition: int):
    caches = stores(worker, partition, TABLES)
    subjects, index, *reference = caches
    # the agent module's globals (LIMITER, SEEN, WORKING, IN_FLIGHT): the process's own
    process = worker.process
    if not process:
        process.update(limiter=pace_limiter(CONFIG, TICK_S, now=NOW), seen=set(), working=set(),
                       in_flight=InFlight(CONFIG.max_in_flight, CONFIG.in_flight_timeout_s))
    handler = FanoutHandler(subjects, index, ReferenceData(*reference), CONFIG, process["limiter"], process["seen"],
                            process["working"], process["in_flight"])
    return handler, caches


FANOUT = Role(b"fanout", _handler, {
    "reference": ("fanout.reference", fanout_handler.on_reference),
    "results": ("fanout.holders", fanout_handler.on_results),
    "fanout-ticks": ("fanout.tick", fanout_handler.on_tick),
}, now=NOW, step_s=1.0, ticks=frozenset({"fanout-ticks"}))

START = date(2025, 3, 3)
HOLDERS = [("P1", "S1", 0), ("P3", "S1", 0), ("P4", "S1", 0), ("P3", "S3", 0), ("P2", "S2", 1)]


def on_both(event: dict) -> list[tuple]:
    return [("reference", p, json.dumps(event).encode()) for p in range(2)]


def setup() -> list[tuple]:
    """P2's base currency is EUR: its USD security makes it a holder of the USD/EUR rate."""
    out = on_both({"type": "business_date", "date": (START + timedelta(days=10)).isoformat()})
    for portfolio in ("P1", "P3", "P4", "P2"):
        out += on_both({"type": "portfolio", "portfolio_id": portfolio, "base_currency": "EUR" if portfolio == "P2" else "USD"})
    for security in ("S1", "S2", "S3"):
        out += on_both({"type": "instrument", "security_id": security, "currency": "USD"})
    return out


def states(holders=HOLDERS, at: float = NOW, ref_floor: int = -1) -> list[tuple]:
    """The positions role's state rows (CURRENT) of the keys, one message per partition."""
    out = []
    for partition in (0, 1):
        rows = [PositionStateRow(portfolio_id=p, security_id=s, epoch=0, version=1, status="CURRENT", watermark_date=None,
                                 quantity=1, cost_basis=None, cost_basis_local=1, held_since_date=START, first_open_date=START,
                                 last_transaction_date=START, updated_at=datetime.fromtimestamp(at, UTC), ref_floor=ref_floor)
                for p, s, q in holders if q == partition]
        if rows:
            out.append(("results", partition, encode_rows(rows), b"positions"))
    return out


def ticks() -> list[tuple]:
    value = Tick(at=0.0).model_dump_json().encode()
    return [("fanout-ticks", p, value, b"tick") for p in range(2)]


def price(security: str, day: int, value: str) -> tuple:
    partition = 1 if security == "S2" else 0
    return ("reference", partition, json.dumps({
        "type": "market_price", "security_id": security, "price_date": (START + timedelta(days=day)).isoformat(),
        "price": value, "currency": "USD"}).encode())


def fx(day: int, rate: str) -> tuple:
    return ("reference", 1, json.dumps({"type": "fx_rate", "from_currency": "USD", "to_currency": "EUR",
                                        "rate_date": (START + timedelta(days=day)).isoformat(), "rate": rate}).encode())


# -- a fixed story -----------------------------------------------------------------------------
def story() -> list[tuple]:
    """Prices first seen (no correction yet: nothing changed), holders, back-dated
    corrections of S1 and S3 on the same partition (one job at a time: S3's waits), an
    earlier-dated one of S1 while its trigger is pending, an FX correction, a price of the
    business date (not a correction), and the keys CURRENT again."""
    inputs = setup() + [price("S1", 3, "10"), price("S3", 4, "10"), price("S2", 2, "10")] + states() + ticks()
    inputs += [price("S1", 3, "11"), price("S3", 4, "11")] + ticks()
    inputs += [price("S1", 2, "12"), price("S1", 5, "12")] + [fx(5, "0.9")] + ticks()
    inputs += [price("S1", 10, "13"), fx(5, "0.91")] + ticks()
    inputs += states(at=NOW + 100, ref_floor=100) + ticks() + [price("S3", 1, "9")] + ticks()
    return inputs


def subjects(worker: MemoryWorker) -> dict[str, SubjectState]:
    return {key.decode(): decode(raw, SubjectState) for (_, key), raw in worker.local.get("fanout_subjects", {}).items()}


def resets(worker: MemoryWorker) -> list[dict]:
    return [json.loads(r.value) for r in worker.outputs() if r.table == "->position-commands"]


def test_the_story_exercises_the_fanout():
    worker = play(FANOUT, story(), [1])
    jobs = {s.job.job_id: s.job.status.value for s in subjects(worker).values() if s.job is not None}
    assert set(jobs.values()) == {"COMPLETE"} and len(jobs) >= 3
    assert not any(s.open for s in subjects(worker).values())
    assert {(r["portfolio_id"], r["security_id"]) for r in resets(worker)} == {(p, s) for p, s, _ in HOLDERS}
    kinds = {row["kind"] for row in sink_view(worker).values()}
    assert {"reprocessing_trigger", "reprocessing_job"} <= kinds


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
@pytest.mark.parametrize("sizes", [[1], [2, 3], [100]], ids=["one_by_one", "small_batches", "one_batch_per_topic"])
@pytest.mark.parametrize("uncommitted", [0, 3], ids=["committed_on_return", "last_3_returned_not_committed"])
def test_the_story_killed_at_every_record_ends_like_the_undisturbed_run(keep_local, sizes, uncommitted):
    inputs = story()
    undisturbed = play(FANOUT, inputs, sizes)
    expected_tables, expected_rows, expected_sent = tables(undisturbed), sink_view(undisturbed), set(sent(undisturbed))
    for disturbance, killed in disturbed(FANOUT, inputs, sizes, keep_local=keep_local, uncommitted=uncommitted):
        assert tables(killed) == expected_tables, f"tables differ after {disturbance}"
        assert sink_view(killed) == expected_rows, f"rows differ after {disturbance}"
        assert expected_sent <= set(sent(killed)), f"a message was lost after {disturbance}"


def test_without_the_journal_a_kill_between_a_steps_records_changes_the_result():
    """The old write path: a step's subject record, index and rows land in part."""
    inputs = story()
    expected = tables(play(FANOUT, inputs, [1], commit=direct))
    outcomes = [tables(play(FANOUT, inputs, [1], kill_at=k, commit=direct))
                for k in range(play(FANOUT, inputs, [1], commit=direct).enqueued + 1)]
    assert any(outcome != expected for outcome in outcomes)


# -- random workloads --------------------------------------------------------------------------
@st.composite
def workloads(draw) -> tuple[list[tuple], list[int]]:
    """Holders, prices and rates for any day (corrections or not) and ticks, in any order
    after the portfolios and instruments."""
    pieces = [states(), ticks(), ticks(), ticks()]
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 4)) == 0:
            pieces.append([fx(draw(st.integers(0, 12)), draw(st.sampled_from(["0.9", "0.8"])))])
        else:
            pieces.append([price(draw(st.sampled_from(["S1", "S2", "S3"])), draw(st.integers(0, 12)),
                                 draw(st.sampled_from(["10", "11", "12"])))])
    order = draw(st.permutations(range(len(pieces))))
    inputs = setup() + [item for i in order for item in pieces[i]] + ticks()
    return inputs, draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 10_000), st.booleans())
def test_any_workload_killed_at_any_record_ends_like_the_undisturbed_run(workload, kill_seed, keep_local):
    inputs, sizes = workload
    undisturbed = play(FANOUT, inputs, sizes)
    k = kill_seed % (undisturbed.enqueued + 1)
    killed = play(FANOUT, inputs, sizes, kill_at=k, keep_local=keep_local)
    assert tables(killed) == tables(undisturbed)
    assert sink_view(killed) == sink_view(undisturbed)
    assert set(sent(undisturbed)) <= set(sent(killed))


# -- two agents of the role on one worker: the reference agent and the tick agent ----------------
@dataclass
class YieldingWorker(MemoryWorker):
    """A worker whose deliveries take time: the n-th `delivered()` gives the event loop
    `schedule[n]` turns (0 once the schedule is used up) before its records land, so the
    other agent's step runs in between."""

    schedule: list[int] = field(default_factory=list)
    calls: int = 0

    async def delivered(self) -> None:
        turns = self.schedule[self.calls] if self.calls < len(self.schedule) else 0
        self.calls += 1
        for _ in range(turns):
            await asyncio.sleep(0)
        await super().delivered()


def race_inputs() -> tuple[list[tuple], tuple, tuple]:
    """Holders and a pending trigger for S1 on partition 0; then, at once, the tick (which
    turns the trigger into a job and runs it) and an earlier-dated correction of S1."""
    prefix = setup() + [price("S1", 3, "10")] + states() + ticks() + [price("S1", 3, "11")]
    return prefix, ("fanout-ticks", 0, ticks()[0][2], b"tick"), price("S1", 2, "12")


def run_race(schedule: list[int], tick_first: bool, lock: asyncio.Lock | None) -> YieldingWorker:
    prefix, tick, correction = race_inputs()
    events = events_of(prefix + [tick, correction])
    worker = YieldingWorker()

    async def agent(topic: str, event, now: float) -> None:
        if lock is None:
            await step(worker, FANOUT, topic, [event], journalled, now)
        else:
            async with lock:  # the runner's STEP_LOCK: redo, compute, commit, one step at a time
                await step(worker, FANOUT, topic, [event], journalled, now)

    async def go() -> None:
        for n, (topic, indexes) in enumerate(batches(prefix, [1])):
            await step(worker, FANOUT, topic, [events[i] for i in indexes], journalled, NOW + n)
        worker.schedule, worker.calls = schedule, 0
        now = NOW + 100
        agents = [agent("fanout-ticks", events[-2], now), agent("reference", events[-1], now)]
        await asyncio.gather(*(agents if tick_first else agents[::-1]))

    asyncio.run(go())
    return worker


def s1(worker: MemoryWorker) -> SubjectState:
    return subjects(worker)["price|S1|p0"]


def serial_outcomes() -> list[dict]:
    """The tables after the two steps one after the other, in either order."""
    return [tables(run_race([], tick_first, asyncio.Lock())) for tick_first in (True, False)]


SCHEDULES = [list(s) for s in itertools.product(range(3), repeat=4)]


def correction_kept(state: SubjectState) -> bool:
    """The day-2 correction is in a pending trigger or in the job that reset the holders."""
    return ((state.trigger is not None and state.trigger.earliest == START + timedelta(days=2))
            or (state.job is not None and state.job.earliest == START + timedelta(days=2)))


def test_the_race_inputs_make_the_tick_run_a_job_while_a_correction_arrives():
    for tick_first in (True, False):
        state = s1(run_race([], tick_first, asyncio.Lock()))
        assert state.job is not None and state.job.status.value == "COMPLETE"
        assert correction_kept(state)


@pytest.mark.parametrize("tick_first", [True, False], ids=["tick_starts", "reference_starts"])
def test_with_the_step_lock_the_two_agents_interleaved_at_every_await_lose_nothing(tick_first):
    expected = serial_outcomes()
    for schedule in SCHEDULES:
        worker = run_race(schedule, tick_first, asyncio.Lock())
        assert tables(worker) in expected, f"schedule {schedule}"
        assert correction_kept(s1(worker))


def test_without_the_step_lock_a_correction_written_during_the_tick_is_lost():
    """The tick's step reads the subject, awaits its journal's delivery; the reference
    agent's step meanwhile reads the same record and writes the new trigger; the tick's
    writes, computed before, then land over it (or the other way round)."""
    expected = serial_outcomes()
    outcomes = [run_race(schedule, tick_first, None) for schedule in SCHEDULES for tick_first in (True, False)]
    assert any(tables(worker) not in expected for worker in outcomes)
    assert any(not correction_kept(s1(worker)) for worker in outcomes), "the day-2 correction is lost"
