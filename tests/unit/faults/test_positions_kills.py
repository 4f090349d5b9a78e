"""The positions role killed at any record of any step ends exactly like an undisturbed run:
the same tables and the same rows for the sink, restored from the changelog or with its
local tables kept, whatever arrives late, twice or amended.

Before the redo journal a step wrote the key's state, its history and the transaction's
fingerprint to three changelogs with nothing making them land together: killed after the
state and before the fingerprint, the worker applied the re-delivered trade a second time
(`test_..._without_the_journal_...` keeps that hole visible).
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epochflow.agents import positions_handler
from epochflow.agents.positions_handler import PositionsHandler
from epochflow.domain.model import Bucket, PositionState, TxnRef
from epochflow.domain.series import SeriesMonth
from epochflow.tables.index import KeySet
from epochflow.tables.position_state import PositionBook, state_store
from epochflow.tables.reference import Instrument, Months, Portfolio, ReferenceData
from epochflow.tables.store import CachedStore
from tests.fixtures.faults import MemoryWorker, any_order
from tests.fixtures.kills import Role, direct, disturbed, play, sent, sink_view, stores, tables

TABLES = [("position_state", PositionState), ("position_book", PositionBook), ("position_history", Bucket), ("position_txn_refs", TxnRef),
          ("position_key_index", KeySet), ("portfolios", Portfolio), ("instruments", Instrument),
          ("series", SeriesMonth), ("series_index", Months), ("scalars", date)]


def _handler(worker: MemoryWorker, partition: int):
    caches = stores(worker, partition, TABLES)
    from datetime import UTC, datetime

    # the key's state over its two records, as the role keeps it
    state = CachedStore(state_store(caches[0].backing, caches[1].backing))
    caches = [state, *caches[2:]]
    handler = PositionsHandler(*caches[:4], ReferenceData(*caches[4:]), clock=lambda: datetime(2025, 6, 1, tzinfo=UTC))
    return handler, caches


POSITIONS = Role(b"positions", _handler, {
    "transactions": ("positions.apply", positions_handler.on_transaction),
    "reference": ("positions.reference", positions_handler.on_reference),
    "position-commands": ("positions.commands", positions_handler.on_command),
})

START = date(2025, 3, 3)


def reference(partitions: int) -> list[tuple[str, int, bytes]]:
    events = [{"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD"},
              {"type": "portfolio", "portfolio_id": "P2", "base_currency": "USD", "cost_basis_method": "AVCO"},
              {"type": "instrument", "security_id": "S1", "currency": "USD"},
              {"type": "instrument", "security_id": "S2", "currency": "USD"},
              {"type": "business_date", "date": (START + timedelta(days=30)).isoformat()}]
    return [("reference", p, json.dumps(e).encode()) for e in events for p in range(partitions)]


def trade(transaction_id: str, portfolio: str, security: str, day: int, kind: str, quantity: int, price: str = "10") -> dict:
    gross = str(quantity * int(price))
    return {"type": "transaction", "transaction_id": transaction_id, "portfolio_id": portfolio, "security_id": security,
            "transaction_type": kind, "transaction_date": f"{(START + timedelta(days=day)).isoformat()}T10:00:00Z",
            "quantity": str(quantity), "price": price, "gross_amount": gross, "trade_currency": "USD"}


def partition_of(t: dict) -> int:
    return (t["portfolio_id"] == "P2") * 1  # two keys' partitions, as the router would spread them


def inputs_of(trades: list[dict]) -> list[tuple[str, int, bytes]]:
    return reference(2) + [("transactions", partition_of(t), json.dumps(t).encode()) for t in trades]


# -- a fixed story: a late BUY of 7 units, a duplicate, an amendment --------------------------
STORY = [trade("T1", "P1", "S1", 1, "BUY", 5), trade("T2", "P1", "S1", 4, "BUY", 3),
         trade("T3", "P1", "S1", 2, "BUY", 7),  # booked late: back-dated, epoch 0 -> 1
         trade("T2", "P1", "S1", 4, "BUY", 3),  # the same again
         trade("T4", "P2", "S2", 3, "BUY", 9), trade("T4", "P2", "S2", 3, "BUY", 4),  # amended
         trade("T5", "P1", "S1", 5, "SELL", 6)]


def records_in(inputs, sizes, commit=None) -> int:
    return play(POSITIONS, inputs, sizes, **({"commit": commit} if commit else {})).enqueued


@pytest.mark.parametrize("keep_local", [False, True], ids=["restored_from_changelog", "local_state_kept"])
@pytest.mark.parametrize("sizes", [[1], [2, 3], [100]], ids=["one_by_one", "small_batches", "one_batch_per_topic"])
@pytest.mark.parametrize("uncommitted", [0, 3], ids=["committed_on_return", "last_3_returned_not_committed"])
def test_the_story_killed_at_every_record_ends_like_the_undisturbed_run(keep_local, sizes, uncommitted):
    inputs = inputs_of(STORY)
    undisturbed = play(POSITIONS, inputs, sizes)
    expected_tables, expected_rows = tables(undisturbed), sink_view(undisturbed)
    assert expected_rows, "the story sends rows"
    for disturbance, killed in disturbed(POSITIONS, inputs, sizes, keep_local=keep_local, uncommitted=uncommitted):
        assert tables(killed) == expected_tables, f"tables differ after {disturbance}"
        assert sink_view(killed) == expected_rows, f"rows differ after {disturbance}"
        assert set(sent(undisturbed)) <= set(sent(killed)), f"a message was lost after {disturbance}"


def test_without_the_journal_a_kill_between_a_steps_records_changes_the_result():
    """The hole of the old write path: a step's state can land without its fingerprint."""
    inputs = inputs_of(STORY)
    expected = tables(play(POSITIONS, inputs, [1], commit=direct))
    outcomes = [tables(play(POSITIONS, inputs, [1], kill_at=k, commit=direct))
                for k in range(records_in(inputs, [1], direct) + 1)]
    assert any(outcome != expected for outcome in outcomes)


# -- random workloads --------------------------------------------------------------------------
@st.composite
def workloads(draw) -> tuple[list[dict], list[int]]:
    trades: list[dict] = []
    for n in range(draw(st.integers(1, 7))):
        portfolio = draw(st.sampled_from(["P1", "P2"]))
        trades.append(trade(f"T{n}", portfolio, draw(st.sampled_from(["S1", "S2"])), draw(st.integers(0, 20)),
                            "BUY", draw(st.integers(1, 9)), draw(st.sampled_from(["10", "12"]))))
    for t in list(trades):
        if draw(st.integers(0, 4)) == 0:  # delivered twice
            trades.append(dict(t))
        if draw(st.integers(0, 5)) == 0:  # amended later
            trades.append({**t, "quantity": str(draw(st.integers(1, 9))), "gross_amount": "50", "price": "5"})
    order = draw(st.permutations(range(len(trades))))  # any arrival order
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return [trades[i] for i in order], sizes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 10_000), st.booleans(), st.randoms(use_true_random=False))
def test_any_workload_killed_at_any_record_ends_like_the_undisturbed_run(workload, kill_seed, keep_local, rnd):
    """Killed at a random record, with the records in flight landing in any order (each
    topic-partition's in order)."""
    trades, sizes = workload
    inputs = inputs_of(trades)
    undisturbed = play(POSITIONS, inputs, sizes)
    k = kill_seed % (undisturbed.enqueued + 1)
    killed = play(POSITIONS, inputs, sizes, kill_at=k, keep_local=keep_local, landing=any_order(rnd))
    assert tables(killed) == tables(undisturbed)
    assert sink_view(killed) == sink_view(undisturbed)
    assert set(sent(undisturbed)) <= set(sent(killed))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 10_000), st.booleans())
def test_any_workload_with_a_record_batch_refused_ends_like_the_undisturbed_run(workload, refuse_seed, keep_local):
    """A random record batch refused for good by the broker, the ones after it landing."""
    trades, sizes = workload
    inputs = inputs_of(trades)
    undisturbed = play(POSITIONS, inputs, sizes)
    refused = play(POSITIONS, inputs, sizes, refuse=refuse_seed % undisturbed.batches, keep_local=keep_local)
    assert tables(refused) == tables(undisturbed)
    assert sink_view(refused) == sink_view(undisturbed)
    assert set(sent(undisturbed)) <= set(sent(refused))
