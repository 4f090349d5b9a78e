"""The timeseries role killed at any record of any step ends exactly like an undisturbed run:
the same tables (each portfolio's key-days, days, cash flows, barrier marks, reference
data), the same rows for the sink (cash flows, position and portfolio series), and every
message the undisturbed run sent (the forwarder's changes, the series rows), restored from
the changelog or with its local tables kept.

Its inputs are what it reads in a deployment: the positions role's rows (the positions
story: a back-dated trade opening a new epoch, a duplicate, an amendment) and the
valuation role's (its story: snapshots, days with no position, a corrected price) on the
results topic, reference data, and the forwarder's own messages on portfolio-changes (as
an undisturbed forwarder sent them, so the series step reads them whatever the kill did to
the forwarder).
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.agents import timeseries_handler
from epochflow.agents.batching import encode_rows
from epochflow.agents.timeseries_handler import SeriesHandler
from epochflow.domain.cashflows import Cashflow
from epochflow.domain.series import SeriesMonth
from epochflow.domain.timeseries import KeyDay, KeyTrack, PortfolioDay, SeriesBook
from epochflow.schemas.results import HistoryCarryOver, SnapshotRow
from epochflow.tables.reference import Instrument, Months, Portfolio, ReferenceData
from tests.fixtures.faults import MemoryWorker
from tests.fixtures.kills import Role, disturbed, play, sent, sink_view, stores, tables
from tests.unit.faults.test_valuation_kills import KEYS, START, VALUATION, positions_rows, setup
from tests.unit.faults.test_valuation_kills import story as valuation_story

PARTITIONS = 2
TABLES = [("timeseries_keys", KeyTrack), ("timeseries_key_days", KeyDay), ("timeseries_days", PortfolioDay),
          ("timeseries_flows", Cashflow), ("timeseries_marks", tuple[int, ...]),
          ("timeseries_reference_portfolios", Portfolio), ("timeseries_reference_instruments", Instrument),
          ("timeseries_reference_series", SeriesMonth), ("timeseries_reference_series_index", Months),
          ("timeseries_reference_scalars", object)]


def _handler(worker: MemoryWorker, partition: int):
    from datetime import date

    kinds = [(name, date if kind is object else kind) for name, kind in TABLES]
    keys, key_days, days, flows, marks, *reference = caches = stores(worker, partition, kinds)
    handler = SeriesHandler(SeriesBook(keys, key_days, days, flows), marks, ReferenceData(*reference), PARTITIONS)
    return handler, caches


TIMESERIES = Role(b"timeseries", _handler, {
    "results": ("timeseries.forward", timeseries_handler.on_results),
    "reference": ("timeseries.reference", timeseries_handler.on_reference),
    "portfolio-changes": ("timeseries.apply", timeseries_handler.on_changes),
})


def results_inputs() -> list[tuple]:
    """The positions role's rows, then the valuation role's, as they are on results; then
    P1|S1 opens epoch 1 from its fourth day, which is valued again in that epoch."""
    valued = play(VALUATION, valuation_story(), [1])
    rows = [("results", r.partition, r.value, b"valuation") for r in valued.outputs() if r.table == "->results"]
    partition = KEYS["P1"][1]  # the key's results partition
    carry = HistoryCarryOver(portfolio_id="P1", security_id="S1", from_epoch=0, to_epoch=1,
                             before_date=START + timedelta(days=3))
    snapshot = SnapshotRow(portfolio_id="P1", security_id="S1", date=START + timedelta(days=3), epoch=1,
                           quantity=Decimal(12), cost_basis=Decimal(120), cost_basis_local=Decimal(120),
                           market_price=Decimal(11), market_value=Decimal(132), market_value_local=Decimal(132),
                           unrealized_gain_loss=Decimal(12), unrealized_gain_loss_local=Decimal(12), fx_rate=Decimal(1),
                           valuation_status="VALUED_CURRENT")
    bump = [("results", partition, encode_rows([carry]), b"positions"),
            ("results", partition, encode_rows([snapshot]), b"valuation")]
    return positions_rows() + rows + bump


def barrier(partition: int) -> tuple:
    row = {"kind": "barrier", "token": "t1", "stage": "positions.apply", "partition": partition}
    return ("results", partition, json.dumps([row]).encode(), b"positions")


def story() -> list[tuple]:
    """Reference data, the results rows with a barrier on each partition, then what the
    forwarder sent for them on portfolio-changes."""
    forwarded = results_inputs() + [barrier(0), barrier(1)]
    sent_on = play(TIMESERIES, forwarded, [100]).outputs()
    changes = [("portfolio-changes", r.partition, r.value, r.key) for r in sent_on if r.table == "->portfolio-changes"]
    return setup() + forwarded + changes


def test_the_story_exercises_the_series():
    worker = play(TIMESERIES, story(), [1])
    rows = list(sink_view(worker).values())
    kinds = {row["kind"] for row in rows}
    assert {"cashflow", "position_timeseries", "portfolio_timeseries", "barrier"} <= kinds
    assert any(r["kind"] == "position_timeseries" and r["epoch"] == 1 for r in rows)  # the back-dated trade's epoch
    assert {r["stage"] for r in rows if r["kind"] == "barrier"} == {"timeseries<-positions.apply"}


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
@pytest.mark.parametrize("sizes", [[1], [2, 3], [100]], ids=["one_by_one", "small_batches", "one_batch_per_topic"])
@pytest.mark.parametrize("uncommitted", [0, 3], ids=["committed_on_return", "last_3_returned_not_committed"])
def test_the_story_killed_at_every_record_ends_like_the_undisturbed_run(keep_local, sizes, uncommitted):
    inputs = story()
    undisturbed = play(TIMESERIES, inputs, sizes)
    expected_tables, expected_rows, expected_sent = tables(undisturbed), sink_view(undisturbed), set(sent(undisturbed))
    for disturbance, killed in disturbed(TIMESERIES, inputs, sizes, keep_local=keep_local, uncommitted=uncommitted):
        assert tables(killed) == expected_tables, f"tables differ after {disturbance}"
        assert sink_view(killed) == expected_rows, f"rows differ after {disturbance}"
        assert expected_sent <= set(sent(killed)), f"a message was lost after {disturbance}"


@st.composite
def workloads(draw) -> tuple[list[tuple], list[int]]:
    """The story's topics in any order, each topic-partition keeping its own order."""
    inputs = story()
    streams: dict[str, list[tuple]] = {}
    for item in inputs:
        streams.setdefault(item[0], []).append(item)
    names = sorted(streams)
    order = draw(st.permutations([name for name in names for _ in streams[name]]))
    taken = dict.fromkeys(names, 0)
    out = []
    for name in order:
        out.append(streams[name][taken[name]])
        taken[name] += 1
    return out, draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 10_000), st.booleans())
def test_any_order_killed_at_any_record_ends_like_the_undisturbed_run(workload, kill_seed, keep_local):
    inputs, sizes = workload
    undisturbed = play(TIMESERIES, inputs, sizes)
    k = kill_seed % (undisturbed.enqueued + 1)
    killed = play(TIMESERIES, inputs, sizes, kill_at=k, keep_local=keep_local)
    assert tables(killed) == tables(undisturbed)
    assert sink_view(killed) == sink_view(undisturbed)
    assert set(sent(undisturbed)) <= set(sent(killed))
