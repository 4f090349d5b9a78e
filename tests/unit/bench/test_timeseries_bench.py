"""`epochflow bench timeseries` on a small portfolio: the two runs agree, and the figures
it prints are there."""

from __future__ import annotations

from epochflow.bench.timeseries import run


def test_a_small_run_agrees_with_the_recomputation() -> None:
    lines: list[str] = []
    figures = run(5, 15, lines.append)
    assert figures["position_rows"] == 15 and figures["portfolio_rows"] == 5  # 10 kept, 5 rebuilt
    assert figures["incremental_s"] > 0 and figures["from_scratch_s"] > 0
    assert lines[-1].startswith("ratio: ")
