"""The timeseries role's handler without Faust: what the forwarder sends where, and a
barrier going on from the series step only once every results partition's mark is in."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from epochflow.agents.timeseries_handler import SeriesHandler, changes_of, forward
from epochflow.domain.timeseries import SeriesBook
from epochflow.schemas.results import Barrier, HistoryCarryOver, JobOutcome, SnapshotRow
from epochflow.schemas.series import CHANGES, BarrierMark, CarryChange, SnapshotChange, encode_changes
from epochflow.streams.partitioning import partition_for
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore

DAY = date(2025, 6, 2)


def snapshot(portfolio: str) -> SnapshotRow:
    return SnapshotRow(portfolio_id=portfolio, security_id="S", date=DAY, epoch=0, quantity=Decimal(1),
                       cost_basis=Decimal(1), cost_basis_local=Decimal(1), market_price=Decimal(2),
                       market_value=Decimal(2), market_value_local=Decimal(2), unrealized_gain_loss=Decimal(1),
                       unrealized_gain_loss_local=Decimal(1), fx_rate=Decimal(1), valuation_status="VALUED_CURRENT")


def test_changes_of_the_rows_the_series_need() -> None:
    rows = [snapshot("P1"),
            HistoryCarryOver(portfolio_id="P1", security_id="S", from_epoch=0, to_epoch=1, before_date=DAY),
            JobOutcome(portfolio_id="P1", security_id="S", valuation_date=DAY, epoch=1, outcome="SKIPPED_NO_POSITION"),
            JobOutcome(portfolio_id="P1", security_id="S", valuation_date=DAY, epoch=1, outcome="COMPLETE"),
            Barrier(token="t", stage="valuation<-positions.apply", partition=0)]
    changes = changes_of(rows, version=42)
    assert [type(c) for c in changes] == [SnapshotChange, CarryChange, SnapshotChange]
    assert changes[0].version == 42 and changes[2].quantity is None  # no position that day


def test_forward_one_message_per_portfolio_and_marks_to_every_partition() -> None:
    rows = [snapshot("P1"), snapshot("P2"), snapshot("P1"), Barrier(token="t", stage="positions.apply", partition=3)]
    messages = forward(rows, version=7, partitions=4)
    by_key = {m.key: m for m in messages if m.key != b"barrier"}
    assert set(by_key) == {b"P1", b"P2"}
    assert by_key[b"P1"].partition == partition_for("P1", 4) and len(CHANGES.validate_json(by_key[b"P1"].value)) == 2
    marks = [m for m in messages if m.key == b"barrier"]
    assert sorted(m.partition for m in marks) == [0, 1, 2, 3]
    assert CHANGES.validate_json(marks[0].value) == [BarrierMark(token="t", stage="positions.apply", source_partition=3)]


def test_a_barrier_goes_on_once_every_partition_marked_it() -> None:
    handler = SeriesHandler(SeriesBook(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore()), MemoryStore(),
                            ReferenceData(*(MemoryStore() for _ in range(5))), partitions=3)

    def mark(source: int) -> list:
        return handler.on_changes(encode_changes([BarrierMark(token="t", stage="positions.apply",
                                                              source_partition=source)]), 1, source)

    assert mark(0) == [] and mark(2) == [] and mark(0) == []
    assert mark(1) == [Barrier(token="t", stage="timeseries<-positions.apply", partition=1)]
    assert handler.marks.get("barrier|t|positions.apply|p1") is None  # nothing left behind
