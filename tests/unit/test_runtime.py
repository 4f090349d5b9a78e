"""The interpreter settings of the workers and of the benchmarks' floor."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from epochflow import runtime
from epochflow.cli.main import cli


@pytest.fixture
def collector_restored():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_collector_runs_less_often_and_skips_what_exists_at_start(collector_restored):
    gc.unfreeze()
    made_at_start = [[n] for n in range(100)]  # containers the collector tracks
    runtime.tune_collector()
    assert gc.get_threshold() == runtime.COLLECTOR_THRESHOLDS
    assert gc.get_threshold()[0] >= 10_000
    assert gc.get_freeze_count() >= len(made_at_start)


def test_the_benchmarks_tune_the_collector_as_the_workers_do(monkeypatch, collector_restored):
    calls = []
    monkeypatch.setattr(runtime, "tune_collector", lambda: calls.append("tuned"))

    async def no_bench(*args, **kwargs):
        calls.append("bench")
        return {}

    monkeypatch.setattr("epochflow.bench.runner.bench_ingest", no_bench)
    result = CliRunner().invoke(cli, ["bench", "ingest"])
    assert result.exit_code == 0, result.output
    assert calls == ["tuned", "bench"]  # before the floor's work
