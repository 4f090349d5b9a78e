"""The valuation role killed at any record of any step ends exactly like an undisturbed run:
the same tables (its copy of each key's history, its reference data, the reference offset
it has read), the same snapshots for the sink, and every answer the undisturbed run sent,
restored from the changelog or with its local tables kept.

Its inputs are the positions role's own rows (the positions story), reference data
(portfolios, instruments, prices, an FX rate) and jobs, some sent before what they need has
arrived (answered NOT_READY or BLOCKED), some after.

A batch of reference data sends nothing, yet its table writes are what later jobs are
valued with. Before the redo journal its offset could be committed while those writes were
still in flight: killed then, the price was gone after the restart and nothing would bring
it back (`test_..._without_waiting_...` keeps that hole visible).
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.agents.valuation_handler import ValuationHandler, ValuationRole, on_job, on_reference, on_results
from epochflow.domain.history_copy import CachedKey, HistoryChunk
from epochflow.domain.series import SeriesMonth
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import JobOutcome
from epochflow.tables.reference import Instrument, Months, Portfolio, ReferenceData
from tests.fixtures.faults import MemoryWorker
from tests.fixtures.kills import ROWS, Role, disturbed, play, sent, sink_view, stores, tables
from tests.unit.faults.test_positions_kills import POSITIONS, STORY, inputs_of

TABLES = [("valuation_keys", CachedKey), ("valuation_history", HistoryChunk), ("valuation_progress", int),
          ("valuation_reference_portfolios", Portfolio), ("valuation_reference_instruments", Instrument),
          ("valuation_reference_series", SeriesMonth), ("valuation_reference_series_index", Months),
          ("valuation_reference_scalars", date), ("valuation_reference_tags", str)]


def _handler(worker: MemoryWorker, partition: int):
    caches = stores(worker, partition, TABLES)
    keys, history, progress, *reference = caches
    return ValuationRole(ValuationHandler(keys, history, ReferenceData(*reference)), progress), caches


VALUATION = Role(b"valuation", _handler, {
    "results": ("valuation.positions", on_results),
    "reference": ("valuation.reference", on_reference),
    "valuation-jobs": ("valuation.value", on_job),
})

START = date(2025, 3, 3)
KEYS = {"P1": ("S1", 0), "P2": ("S2", 1)}  # portfolio -> its security, the key's partition


def positions_rows() -> list[tuple]:
    worker = play(POSITIONS, inputs_of(STORY), [1])
    return [("results", r.partition, r.value, b"positions") for r in worker.outputs() if r.table == "->results"]


def on_both(event: dict) -> list[tuple]:
    return [("reference", p, json.dumps(event).encode()) for p in range(2)]


def setup() -> list[tuple]:
    """P2's base currency is EUR here: its USD security is valued with an FX rate too."""
    return (on_both({"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD"})
            + on_both({"type": "portfolio", "portfolio_id": "P2", "base_currency": "EUR"})
            + on_both({"type": "instrument", "security_id": "S1", "currency": "USD"})
            + on_both({"type": "instrument", "security_id": "S2", "currency": "USD"}))


def price(security: str, day: int, value: str) -> tuple:
    partition = 0 if security == "S1" else 1
    return ("reference", partition, json.dumps({
        "type": "market_price", "security_id": security, "price_date": (START + timedelta(days=day)).isoformat(),
        "price": value, "currency": "USD"}).encode())


def fx(day: int, rate: str) -> tuple:
    return ("reference", 1, json.dumps({"type": "fx_rate", "from_currency": "USD", "to_currency": "EUR",
                                        "rate_date": (START + timedelta(days=day)).isoformat(), "rate": rate}).encode())


def job(portfolio: str, day: int, *, version: int = 1, state_version: int = 0, ref_offset: int = -1) -> tuple:
    security, partition = KEYS[portfolio]
    value = ValuationJob(portfolio_id=portfolio, security_id=security, valuation_date=START + timedelta(days=day), epoch=0,
                         job_version=version, state_version=state_version, ref_offset=ref_offset)
    return ("valuation-jobs", partition, value.model_dump_json().encode())


def ref_offset(inputs: list[tuple], partition: int) -> int:
    """The offset of the last reference message of the partition so far."""
    return sum(1 for i in inputs if i[0] == "reference" and i[1] == partition) - 1


# -- a fixed story -----------------------------------------------------------------------------
def story() -> list[tuple]:
    """Jobs before the positions rows (not ready), rows, reference data, a job before the
    key held anything (skipped), jobs blocked on
    S2's missing price and FX rate, the price and rate, the same jobs again, a corrected
    price and jobs valued with it."""
    rows = positions_rows()  # 0-3, 6: P1|S1 on partition 0; 4, 5: P2|S2
    inputs = [job("P1", 2, state_version=1)] + rows[:2] + [rows[4]] + setup()
    inputs += [price("S1", 1, "10"), price("S1", 3, "11")]
    inputs += [job("P1", d, state_version=2, ref_offset=ref_offset(inputs, 0)) for d in (0, 1, 2, 3, 4)]
    inputs += [job("P2", 4, state_version=1), job("P2", 5, state_version=1)]  # no S2 price, no FX rate: blocked
    inputs += rows[2:4] + [rows[5], price("S2", 3, "20"), fx(3, "0.9"), rows[6]]
    inputs += [job("P2", d, version=2, state_version=2, ref_offset=ref_offset(inputs, 1)) for d in (4, 5)]
    inputs += [price("S1", 3, "12")]  # a correction
    inputs += [job("P1", d, version=2, state_version=4, ref_offset=ref_offset(inputs, 0)) for d in (3, 4, 5)]
    return inputs


def outcomes(worker: MemoryWorker) -> list[JobOutcome]:
    return [row for r in worker.outputs() if r.table == "->results" for row in ROWS.validate_json(r.value)
            if isinstance(row, JobOutcome)]


def test_the_story_exercises_the_valuation():
    worker = play(VALUATION, story(), [1])
    answers = {o.outcome for o in outcomes(worker)}
    assert {"NOT_READY", "BLOCKED", "COMPLETE", "SKIPPED_NO_POSITION"} <= answers
    snapshots = [row for row in sink_view(worker).values() if row["kind"] == "snapshot"]
    assert any(s["fx_rate"] == Decimal("0.9") for s in snapshots)
    assert any(s["market_price"] == Decimal("12") for s in snapshots)


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
@pytest.mark.parametrize("sizes", [[1], [2, 3], [100]], ids=["one_by_one", "small_batches", "one_batch_per_topic"])
@pytest.mark.parametrize("uncommitted", [0, 3], ids=["committed_on_return", "last_3_returned_not_committed"])
def test_the_story_killed_at_every_record_ends_like_the_undisturbed_run(keep_local, sizes, uncommitted):
    inputs = story()
    undisturbed = play(VALUATION, inputs, sizes)
    expected_tables, expected_rows, expected_sent = tables(undisturbed), sink_view(undisturbed), set(sent(undisturbed))
    for disturbance, killed in disturbed(VALUATION, inputs, sizes, keep_local=keep_local, uncommitted=uncommitted):
        assert tables(killed) == expected_tables, f"tables differ after {disturbance}"
        assert sink_view(killed) == expected_rows, f"rows differ after {disturbance}"
        assert expected_sent <= set(sent(killed)), f"a message was lost after {disturbance}"


# -- hole 3: reference data alone ----------------------------------------------------------------
def price_then_job() -> list[tuple]:
    """P1's positions, then a batch of reference data alone (no output), then a job that
    needs its price."""
    inputs = positions_rows()[:2] + setup()[::2] + [price("S1", 2, "13")]
    return inputs + [job("P1", 2, state_version=2, ref_offset=ref_offset(inputs, 0))]


def valued_with_the_price(worker: MemoryWorker) -> bool:
    answers = {o.outcome for o in outcomes(worker)}  # sent again by a redo: the same answer
    snapshots = [row for row in sink_view(worker).values() if row["kind"] == "snapshot"]
    return answers == {"COMPLETE"} and [s["market_price"] for s in snapshots] == [Decimal("13")]


SERIES = "valuation_reference_series"


def prices_not_landed(pending: list) -> list:
    """At the kill, the records still in flight for the prices' changelog never land
    (records of different changelogs land in any order)."""
    return [record for record in pending if record.table != SERIES]


@pytest.mark.parametrize("landing", [None, prices_not_landed], ids=["in_order", "prices_in_flight_lost"])
@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
def test_a_kill_in_a_batch_of_reference_data_keeps_the_price(keep_local, landing):
    inputs = price_then_job()
    sizes = [100]  # the reference data is one batch
    assert valued_with_the_price(play(VALUATION, inputs, sizes))
    for k in range(play(VALUATION, inputs, sizes).enqueued + 1):
        killed = play(VALUATION, inputs, sizes, kill_at=k, keep_local=keep_local, landing=landing)
        assert valued_with_the_price(killed), f"the price is lost after a kill at record {k}"


async def without_waiting(worker: MemoryWorker, entries) -> None:
    """The old path for a batch without output: table writes enqueued, the step done (its
    offset committed on the consumer's own schedule) without waiting for them to land."""
    for partition, entry in entries.items():
        for write in entry.writes:
            worker.apply(partition, write)
        for output in entry.outputs:
            worker.send(output)


def play_without_waiting(inputs: list[tuple], kill_at: int | None = None) -> MemoryWorker:
    """What the worker enqueued after its last restart lands in the end."""
    worker = play(VALUATION, inputs, [100], kill_at=kill_at, commit=without_waiting, landing=prices_not_landed)
    asyncio.run(worker.delivered())
    return worker


def test_without_waiting_for_its_writes_a_kill_loses_the_price():
    """A kill while the reference batch's price is still in flight (the job's step) loses
    it, and its input, whose offset was committed, is not delivered again: the job is
    answered without the price."""
    inputs = price_then_job()
    assert valued_with_the_price(play_without_waiting(inputs))
    lost = [k for k in range(play_without_waiting(inputs).enqueued + 1)
            if not valued_with_the_price(play_without_waiting(inputs, k))]
    assert lost
    answers = {o.outcome for o in outcomes(play_without_waiting(inputs, lost[-1]))}
    assert "COMPLETE" not in answers


# -- random workloads --------------------------------------------------------------------------
@st.composite
def workloads(draw) -> tuple[list[tuple], list[int]]:
    """The positions rows, reference data and jobs (for any day, with any expectations) in
    any order, keeping each topic-partition's own order."""
    rows = positions_rows()
    reference = setup() + [price(draw(st.sampled_from(["S1", "S2"])), draw(st.integers(0, 6)), draw(st.sampled_from(["9", "10"])))
                           for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):
        reference.append(fx(draw(st.integers(0, 6)), "0.9"))
    jobs = [job(draw(st.sampled_from(["P1", "P2"])), draw(st.integers(0, 8)), version=n,
                state_version=draw(st.integers(0, 2)), ref_offset=draw(st.integers(-1, 5)))
            for n in range(draw(st.integers(1, 6)))]
    streams = [rows, reference, jobs]
    order = draw(st.permutations([i for i, s in enumerate(streams) for _ in s]))
    inputs, taken = [], [0, 0, 0]
    for i in order:
        inputs.append(streams[i][taken[i]])
        taken[i] += 1
    return inputs, draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 10_000), st.booleans())
def test_any_workload_killed_at_any_record_ends_like_the_undisturbed_run(workload, kill_seed, keep_local):
    inputs, sizes = workload
    undisturbed = play(VALUATION, inputs, sizes)
    k = kill_seed % (undisturbed.enqueued + 1)
    killed = play(VALUATION, inputs, sizes, kill_at=k, keep_local=keep_local)
    assert tables(killed) == tables(undisturbed)
    assert sink_view(killed) == sink_view(undisturbed)
    assert set(sent(undisturbed)) <= set(sent(killed))

