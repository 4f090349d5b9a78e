"""`epochflow bench versions` at a small size: its book is what it says (a new epoch on
every other revision, every day revalued on each), and its figures add up."""

from __future__ import annotations

import pytest

from epochflow.bench.versions import _book, run
from epochflow.schemas.results import HistoryCarryOver, SnapshotRow

pytestmark = pytest.mark.integration


def test_each_revision_revalues_every_day_and_every_other_one_opens_an_epoch() -> None:
    for round_, epoch in ((0, 0), (1, 0), (2, 1), (3, 1), (4, 2)):
        rows = _book(3, 5, round_)
        snapshots = [r for r in rows if isinstance(r, SnapshotRow)]
        assert len(snapshots) == 15 and {s.epoch for s in snapshots} == {epoch}
        carries = [r for r in rows if isinstance(r, HistoryCarryOver)]
        assert len(carries) == (3 if round_ and round_ % 2 == 0 else 0)


def test_a_small_run_counts_every_version() -> None:
    lines: list[str] = []
    figures = run(4, 3, 2, lines.append)
    per = figures["per_table"]
    # 4 keys x 3 days, valued 3 times (round 2 in epoch 1): 24 snapshots now (epochs 0 and 1),
    # 12 + 12 (epoch 0 repriced) + 12 (epoch 1) versions
    assert per["daily_position_snapshots"]["rows"] == 24
    assert per["daily_position_snapshots"]["versions"] == 36
    assert per["position_state"]["versions"] == 12  # 3 state versions per key
    assert figures["versions"] == sum(t["versions"] for t in per.values())
    assert figures["write_s"] > 0 and figures["read_as_at_ms"] > 0
    assert any("overhead" in line for line in lines)
