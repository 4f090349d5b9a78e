"""The step budget (epochflow.metrics.StepBudget): phases added up during a step, the
domain's share derived from the handling time, one observation per phase per step."""

from __future__ import annotations

import pytest

from epochflow import metrics
from epochflow.metrics import StepBudget


def observed(stage: str, phase: str) -> tuple[float, float]:
    """(sum, count) of the stage's phase histogram so far."""
    labels = {"stage": stage, "phase": phase}
    return (metrics.REGISTRY.get_sample_value("epochflow_step_phase_seconds_sum", labels) or 0.0,
            metrics.REGISTRY.get_sample_value("epochflow_step_phase_seconds_count", labels) or 0.0)


def test_the_domain_is_the_handling_time_the_other_phases_do_not_account_for() -> None:
    budget = StepBudget()
    budget.begin()
    budget.add("produce", 0.5)  # before the handling (a redo): not part of it
    budget.computing()
    budget.add("decode", 0.25)
    budget.add("table_read", 0.125)
    budget.computed(1.0)
    assert budget.seconds["domain"] == pytest.approx(0.625)
    assert budget.seconds["produce"] == 0.5


def test_a_step_observes_each_phase_once_and_starts_the_next_from_zero() -> None:
    stage = "test.budget"
    budget = StepBudget()
    budget.begin()
    budget.computing()
    budget.add("table_write", 0.25)
    budget.changelog_bytes += 300
    budget.computed(0.75)
    budget.observe(stage)
    assert observed(stage, "table_write") == (0.25, 1.0)
    assert observed(stage, "domain") == (0.5, 1.0)
    assert observed(stage, "sink") == (0.0, 0.0)  # the sink observes its own
    assert metrics.REGISTRY.get_sample_value("epochflow_step_changelog_bytes_sum", {"stage": stage}) == 300.0
    assert budget.seconds == dict.fromkeys(metrics.PHASES, 0.0) and budget.changelog_bytes == 0


def test_decode_returns_what_it_parsed_and_counts_its_time() -> None:
    metrics.BUDGET.begin()
    assert metrics.decode(lambda raw: raw.upper(), b"x") == b"X"
    assert metrics.BUDGET.seconds["decode"] > 0
    with pytest.raises(ValueError):
        metrics.decode(lambda raw: int(raw), b"not a number")
    metrics.BUDGET.begin()
