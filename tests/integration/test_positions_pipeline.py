"""The positions role end to end on the real embedded stack: broker, PostgreSQL, a
positions worker and a sink worker as separate processes (no scheduler: the tests advance
watermarks themselves with the command the scheduler would send).

One stack serves the whole module; every test works on keys of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from epochflow.client import Pipeline
from epochflow.devstack.stack import EmbeddedStack
from epochflow.schemas.events import TransactionEvent, parse_event
from epochflow.sinks.reads import scenario as scenario_reads
from epochflow.sinks.reads.api import fetch_position_history
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.scenario import count_position_history
from epochflow.streams.partitioning import partition_for
from tests.fixtures.stack import (
    POSITIONS_ONLY,
    advance_to,
    key_of,
    read_dead_letters,
    running_stack,
    transaction,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

D = Decimal
CASES = Path(__file__).resolve().parents[3] / "shared" / "acceptance" / "public_cases.json"


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedStack]:
    with running_stack(POSITIONS_ONLY) as running:
        yield running



def history_view(rows) -> list[tuple]:
    """(transaction_id, position_date, quantity, cost_basis, cost_basis_local) in seq order."""
    return [(r.transaction_id, r.position_date, r.quantity, r.cost_basis, r.cost_basis_local) for r in rows]


# ---- a. back-dated transaction after the watermark: epoch bump and full replay -------------


def acceptance_case(name: str) -> dict:
    doc = json.loads(CASES.read_text())
    return next(case for case in doc["cases"] if case["name"] == name)


def public_case_plan() -> dict:
    """`backdated_transaction_epoch_bump`: everything before its checkpoint is the initial
    load, the rest is the back-dated SELL."""
    case = acceptance_case("backdated_transaction_epoch_bump")
    events = case["events"]
    cut = next(i for i, e in enumerate(events) if e["type"] == "checkpoint")
    initial = [parse_event(e) for e in events[:cut]]
    late = [parse_event(e) for e in events[cut + 1:]]
    return dict(
        portfolio="E2E_REPRO_01", security="SEC_REPRO_AAPL",
        initial=initial, late=late,
        advance_to=date(2025, 9, 3),
        epoch0=[  # history of epoch 0 as it was before the bump
            ("REPRO_BUY_DAY1", date(2025, 9, 1), D(100), D(20000), D(20000)),
            ("REPRO_BUY_DAY3", date(2025, 9, 3), D(150), D(31000), D(31000)),
        ],
        epoch1=[
            ("REPRO_BUY_DAY1", date(2025, 9, 1), D(100), D(20000), D(20000)),
            ("REPRO_SELL_DAY2", date(2025, 9, 2), D(60), D(12000), D(12000)),
            ("REPRO_BUY_DAY3", date(2025, 9, 3), D(110), D(23000), D(23000)),
        ],
        watermark=date(2025, 9, 1),
        final=(D(110), D(23000)),
        # transaction_id -> (net_cost, realized_gain_loss) after the replay
        sells={"REPRO_SELL_DAY2": (D(-8000), D(600))},
    )


def later_sells_plan() -> dict:
    """A back-dated SELL ahead of two later SELLs: FIFO consumes the first lot earlier, so
    the cost and realized P&L of every later SELL change in the replay.

    epoch 0: BUY 100@10 (08-01), BUY 100@20 (08-03), SELL 50@30 (08-05): cogs 500,
             realized 1000; SELL 100@30 (08-07): cogs 50x10 + 50x20 = 1500, realized 1500.
    late:    SELL 30@25 (08-02): cogs 300, realized 450; then 08-05: cogs 500 (the
             first lot still), realized 1000; 08-07: cogs 20x10 + 80x20 = 1800, realized 1200.
    """
    p, s = "IT_PF_SELLS", "IT_SEC_SELLS"
    initial = [
        parse_event({"type": "portfolio", "portfolio_id": p, "base_currency": "USD", "open_date": "2025-01-01"}),
        parse_event({"type": "instrument", "security_id": s, "currency": "USD"}),
        transaction("LS_BUY_1", p, s, "BUY", "2025-08-01", 100, 10),
        transaction("LS_BUY_3", p, s, "BUY", "2025-08-03", 100, 20),
        transaction("LS_SELL_5", p, s, "SELL", "2025-08-05", 50, 30),
        transaction("LS_SELL_7", p, s, "SELL", "2025-08-07", 100, 30),
    ]
    return dict(
        portfolio=p, security=s,
        initial=initial, late=[transaction("LS_SELL_2", p, s, "SELL", "2025-08-02", 30, 25)],
        advance_to=date(2025, 8, 7),
        epoch0=[
            ("LS_BUY_1", date(2025, 8, 1), D(100), D(1000), D(1000)),
            ("LS_BUY_3", date(2025, 8, 3), D(200), D(3000), D(3000)),
            ("LS_SELL_5", date(2025, 8, 5), D(150), D(2500), D(2500)),
            ("LS_SELL_7", date(2025, 8, 7), D(50), D(1000), D(1000)),
        ],
        epoch1=[
            ("LS_BUY_1", date(2025, 8, 1), D(100), D(1000), D(1000)),
            ("LS_SELL_2", date(2025, 8, 2), D(70), D(700), D(700)),
            ("LS_BUY_3", date(2025, 8, 3), D(170), D(2700), D(2700)),
            ("LS_SELL_5", date(2025, 8, 5), D(120), D(2200), D(2200)),
            ("LS_SELL_7", date(2025, 8, 7), D(20), D(400), D(400)),
        ],
        watermark=date(2025, 8, 1),
        final=(D(20), D(400)),
        sells={
            "LS_SELL_2": (D(-300), D(450)),
            "LS_SELL_5": (D(-500), D(1000)),
            "LS_SELL_7": (D(-1800), D(1200)),
        },
    )


async def publish_in_order(pipeline: Pipeline, events: list) -> None:
    """Reference data first, then the transactions: they travel on different topics, and
    the tests want one deterministic path (the positions role also copes with the other
    order, by re-costing when the portfolio arrives)."""
    transactions = [e for e in events if isinstance(e, TransactionEvent)]
    for part in ([e for e in events if not isinstance(e, TransactionEvent)], transactions):
        if part:
            await pipeline.publish(part)
            await pipeline.quiesce(60)


async def bump_epoch(pipeline: Pipeline, plan: dict) -> None:
    """Load the key, advance its watermark (epoch 0), then deliver the back-dated event."""
    p, s = plan["portfolio"], plan["security"]
    await publish_in_order(pipeline, plan["initial"])
    assert history_view(await fetch_position_history(pipeline.engine, p, s, epoch=0)) == plan["epoch0"]

    before = await advance_to(pipeline, p, s, plan["advance_to"])
    assert before["epoch"] == 0
    await pipeline.quiesce(60)
    advanced = await position(pipeline.engine, p, s)
    assert (advanced["epoch"], advanced["watermark_date"]) == (0, plan["advance_to"])

    await pipeline.publish(plan["late"])
    await pipeline.quiesce(60)


@pytest.mark.parametrize("make_plan", [public_case_plan, later_sells_plan], ids=["public_case", "later_sells"])
async def test_backdated_transaction_bumps_the_epoch_and_rewrites_the_full_history(pipeline: Pipeline, make_plan) -> None:
    plan = make_plan()
    p, s = plan["portfolio"], plan["security"]
    await bump_epoch(pipeline, plan)

    state = await position(pipeline.engine, p, s)
    assert (state["epoch"], state["status"], state["watermark_date"]) == (1, "REPROCESSING", plan["watermark"])
    assert (state["quantity"], state["cost_basis"], state["cost_basis_local"]) == (*plan["final"], plan["final"][1])

    # the whole history in the new epoch, every transaction, in order (seq)
    epoch1 = await fetch_position_history(pipeline.engine, p, s, epoch=1)
    assert history_view(epoch1) == plan["epoch1"]
    assert await count_position_history(pipeline.engine, p, s, epoch=1) == len(plan["epoch1"])
    assert [r.seq for r in epoch1] == sorted(r.seq for r in epoch1)
    # reads without an epoch return the current one
    assert history_view(await fetch_position_history(pipeline.engine, p, s)) == plan["epoch1"]

    # the old epoch's rows are kept as they were
    assert history_view(await fetch_position_history(pipeline.engine, p, s, epoch=0)) == plan["epoch0"]

    # realized P&L of every SELL, FIFO, base and local (USD portfolio, USD trades)
    for transaction_id, (net_cost, realized) in plan["sells"].items():
        row = await scenario_reads.transaction(pipeline.engine, transaction_id)
        assert row["epoch"] == 1, transaction_id
        assert (row["net_cost"], row["net_cost_local"]) == (net_cost, net_cost), transaction_id
        assert (row["realized_gain_loss"], row["realized_gain_loss_local"]) == (realized, realized), transaction_id


# ---- b. a command computed for the old epoch is fenced ------------------------------------


async def test_advance_for_the_old_epoch_is_dropped_after_the_bump(pipeline: Pipeline) -> None:
    p, s = "IT_PF_STALE", "IT_SEC_STALE"
    await bump_epoch(pipeline, dict(
        portfolio=p, security=s,
        initial=[
            parse_event({"type": "portfolio", "portfolio_id": p, "base_currency": "USD"}),
            transaction("ST_BUY_1", p, s, "BUY", "2025-07-01", 10, 5),
            transaction("ST_BUY_3", p, s, "BUY", "2025-07-03", 10, 6),
        ],
        late=[transaction("ST_BUY_2", p, s, "BUY", "2025-07-02", 10, 7)],
        advance_to=date(2025, 7, 3),
        epoch0=[
            ("ST_BUY_1", date(2025, 7, 1), D(10), D(50), D(50)),
            ("ST_BUY_3", date(2025, 7, 3), D(20), D(110), D(110)),
        ],
    ))
    bumped = await position(pipeline.engine, p, s)
    assert (bumped["epoch"], bumped["status"], bumped["watermark_date"]) == (1, "REPROCESSING", date(2025, 7, 1))

    # what a scheduler that had not seen the bump yet would send: epoch 0, the new generation
    await advance_to(pipeline, p, s, date(2025, 7, 3), epoch=0)
    await pipeline.quiesce(60)  # the command's partition has passed a barrier: it was consumed
    assert await position(pipeline.engine, p, s) == bumped

    # the same advance for the current epoch goes through (so the one above was fenced,
    # not merely lost)
    await advance_to(pipeline, p, s, date(2025, 7, 3))
    await pipeline.quiesce(60)
    advanced = await position(pipeline.engine, p, s)
    assert (advanced["epoch"], advanced["watermark_date"]) == (1, date(2025, 7, 3))
    assert advanced["version"] > bumped["version"]


# ---- c. bad input is dead-lettered and does not stop the partition -----------------------


async def test_malformed_transactions_go_to_the_dead_letter_topic_and_the_partition_goes_on(pipeline: Pipeline) -> None:
    p, s = "IT_PF_DLQ", "IT_SEC_DLQ"
    key = key_of(p, s)
    partition = partition_for(key, pipeline.settings.partitions)
    marker = "dlq-marker-7f3a"
    not_json = b'{"type": "transaction", "transaction_id": "' + marker.encode() + b'-A", oops'
    missing_fields = json.dumps({
        "type": "transaction", "transaction_id": f"{marker}-B", "portfolio_id": p, "security_id": s,
        "transaction_type": "BUY", "quantity": "1", "price": "1", "gross_amount": "1",
        # no transaction_date, no trade_currency
    }).encode()
    await publish_in_order(pipeline, [parse_event({"type": "portfolio", "portfolio_id": p, "base_currency": "USD"})])
    await pipeline.send_raw("transactions", partition, key.encode(), not_json)
    await pipeline.send_raw("transactions", partition, key.encode(), missing_fields)
    await pipeline.publish([transaction("DLQ_OK", p, s, "BUY", "2025-06-02", 3, 4)])  # right behind them
    await pipeline.quiesce(60)
    await pipeline.quiesce(60)

    # the valid transaction behind the bad ones on the same partition was processed
    row = await scenario_reads.transaction(pipeline.engine, "DLQ_OK")
    assert row is not None and (row["quantity"], row["net_cost_local"]) == (D(3), D(12))
    assert history_view(await fetch_position_history(pipeline.engine, p, s)) == [
        ("DLQ_OK", date(2025, 6, 2), D(3), D(12), D(12))
    ]
    assert await scenario_reads.transaction(pipeline.engine, f"{marker}-B") is None

    letters = {doc["raw"]: doc for doc in await read_dead_letters(pipeline, 2, marker)}
    bad_json, incomplete = letters[not_json.decode()], letters[missing_fields.decode()]
    for doc in (bad_json, incomplete):
        assert doc["stage"] == "positions.apply"
        assert doc["topic"] == f"{pipeline.settings.topic_prefix}.transactions"
        assert doc["partition"] == partition
    assert "json" in bad_json["reason"].lower(), bad_json["reason"]
    assert "transaction_date" in incomplete["reason"] and "trade_currency" in incomplete["reason"], incomplete["reason"]
    assert incomplete["offset"] == bad_json["offset"] + 1


# ---- d. duplicates and amendments ---------------------------------------------------------


async def test_a_duplicate_changes_nothing_and_an_amendment_recomputes_the_later_rows(pipeline: Pipeline) -> None:
    p, s = "IT_PF_AMEND", "IT_SEC_AMEND"
    buy1 = transaction("AM_BUY_1", p, s, "BUY", "2025-05-01", 100, 10)
    buy2 = transaction("AM_BUY_2", p, s, "BUY", "2025-05-02", 50, 12)
    sell = transaction("AM_SELL_3", p, s, "SELL", "2025-05-03", 30, 15)
    await publish_in_order(pipeline, [
        parse_event({"type": "portfolio", "portfolio_id": p, "base_currency": "USD"}),
        buy1, buy2, sell,
    ])
    original = [
        ("AM_BUY_1", date(2025, 5, 1), D(100), D(1000), D(1000)),
        ("AM_BUY_2", date(2025, 5, 2), D(150), D(1600), D(1600)),
        ("AM_SELL_3", date(2025, 5, 3), D(120), D(1300), D(1300)),  # FIFO: cogs 30 x 10
    ]
    assert history_view(await fetch_position_history(pipeline.engine, p, s)) == original
    state = await position(pipeline.engine, p, s)
    sell_row = await scenario_reads.transaction(pipeline.engine, "AM_SELL_3")
    assert (sell_row["net_cost"], sell_row["realized_gain_loss"]) == (D(-300), D(150))

    # the same transaction again: one history row each, numbers and state untouched
    await pipeline.publish([buy2])
    await pipeline.quiesce(60)
    assert history_view(await fetch_position_history(pipeline.engine, p, s)) == original
    assert await count_position_history(pipeline.engine, p, s) == 3
    after_duplicate = await position(pipeline.engine, p, s)
    assert {k: v for k, v in after_duplicate.items() if k != "updated_at"} == {
        k: v for k, v in state.items() if k != "updated_at"
    }

    # an amended first BUY (same id, 80 instead of 100): it is replaced and every later
    # row is recomputed; no watermark yet, so it is not back-dated (same epoch)
    await pipeline.publish([transaction("AM_BUY_1", p, s, "BUY", "2025-05-01", 80, 10)])
    await pipeline.quiesce(60)
    assert history_view(await fetch_position_history(pipeline.engine, p, s)) == [
        ("AM_BUY_1", date(2025, 5, 1), D(80), D(800), D(800)),
        ("AM_BUY_2", date(2025, 5, 2), D(130), D(1400), D(1400)),
        ("AM_SELL_3", date(2025, 5, 3), D(100), D(1100), D(1100)),
    ]
    assert await count_position_history(pipeline.engine, p, s) == 3
    amended = await scenario_reads.transaction(pipeline.engine, "AM_BUY_1")
    assert (amended["quantity"], amended["gross_amount"], amended["net_cost"]) == (D(80), D(800), D(800))
    final = await position(pipeline.engine, p, s)
    assert (final["epoch"], final["quantity"], final["cost_basis"]) == (0, D(100), D(1100))
    sell_row = await scenario_reads.transaction(pipeline.engine, "AM_SELL_3")
    assert (sell_row["net_cost"], sell_row["realized_gain_loss"]) == (D(-300), D(150))
