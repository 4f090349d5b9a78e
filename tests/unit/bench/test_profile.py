"""`bench ... --profile`: the budget is the difference of the workers' phase histograms
before and after the timed run, by stage, shaped into a table."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from epochflow.bench.profile import BYTES_METRIC, PHASE_METRIC, budget, sums, table
from epochflow.metrics import PHASES


def worker_metrics(steps: dict[tuple[str, str], list[float]], changelog: dict[str, list[int]]) -> str:
    """A worker's /metrics text with the budget's histograms observed as given."""
    registry = CollectorRegistry()
    phases = Histogram(PHASE_METRIC, "phase", ["stage", "phase"], registry=registry)
    written = Histogram(BYTES_METRIC, "bytes", ["stage"], registry=registry)
    for (stage, phase), values in steps.items():
        for value in values:
            phases.labels(stage, phase).observe(value)
    for stage, values in changelog.items():
        for value in values:
            written.labels(stage).observe(value)
    return generate_latest(registry).decode()


def test_the_budget_is_what_the_run_added_per_stage_and_phase_busiest_first() -> None:
    before = sums([
        worker_metrics({("positions.apply", "domain"): [1.0]}, {"positions.apply": [1000]}),
        worker_metrics({("sink.write", "sink"): [0.5]}, {}),
    ])
    after = sums([
        worker_metrics({("positions.apply", "domain"): [1.0, 0.25, 0.25], ("positions.apply", "decode"): [0.0, 0.125],
                        ("positions.apply", "produce"): [0.5, 0.5]},
                       {"positions.apply": [1000, 3000, 4000]}),
        worker_metrics({("sink.write", "sink"): [0.5, 2.0], ("sink.write", "decode"): [0.25]}, {}),
    ])
    rows = budget(before, after)
    assert [row.stage for row in rows] == ["sink.write", "positions.apply"]
    sink, positions = rows
    assert sink.seconds["sink"] == 2.0 and sink.seconds["decode"] == 0.25 and sink.total_s == 2.25
    assert positions.seconds == {**dict.fromkeys(PHASES, 0.0), "domain": 0.5, "decode": 0.125, "produce": 1.0}
    assert positions.steps == 2 and positions.changelog_bytes == 7000
    assert positions.as_dict()["total_s"] == 1.625


def test_the_budget_leaves_out_stages_the_run_did_not_touch() -> None:
    text = worker_metrics({("valuation.value", "domain"): [1.0]}, {})
    assert budget(sums([text]), sums([text])) == []


def test_the_table_has_a_line_per_stage_a_total_and_each_phases_share() -> None:
    after = sums([worker_metrics({("positions.apply", "domain"): [3.0], ("sink.write", "sink"): [1.0]},
                                 {"positions.apply": [2_000_000]})])
    lines = table(budget({}, after))
    assert lines[0].split() == ["stage", "steps", *PHASES, "total", "s", "changelog", "MB"]
    assert lines[1].split() == ["positions.apply", "1", "0.000", "3.000", "0.000", "0.000", "0.000", "0.000", "3.000", "2.00"]
    assert lines[2].split()[0] == "sink.write"
    assert lines[3].split() == ["all", "stages", "2", "0.000", "3.000", "0.000", "0.000", "0.000", "1.000", "4.000", "2.00"]
    assert lines[4].split() == ["share", "0%", "75%", "0%", "0%", "0%", "25%"]


def test_an_empty_budget_is_a_header_and_a_zero_total() -> None:
    lines = table([])
    assert len(lines) == 2 and lines[1].split()[-2:] == ["0.000", "0.00"]
