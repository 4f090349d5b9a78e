"""The runnable examples (`examples/*/run.py`) stay runnable: each script imports without
running, builds its events with `build_events()`, and every event is one the ingest API
accepts (validated with the input event models). Running them needs a live stack; their
READMEs show a real run."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from epochflow.schemas.events import InstrumentEvent, PortfolioEvent, TransactionEvent, parse_event

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*/run.py"))


def load(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{script.parent.name}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # main() is guarded: importing runs nothing
    return module


def test_both_examples_are_there() -> None:
    assert {s.parent.name for s in SCRIPTS} >= {"backdated_trade", "price_correction"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.parent.name)
def test_an_example_has_a_readme_and_uses_only_the_standard_library(script: Path) -> None:
    assert (script.parent / "README.md").is_file()
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names - {"__future__"} == set()


@pytest.mark.parametrize("run_id", ["example", "123456"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.parent.name)
def test_an_example_builds_valid_events(script: Path, run_id: str) -> None:
    module = load(script)
    phases = module.build_events(run_id)
    assert len(phases) >= 2 and all(phases.values()), "a phase before and one after the late data"
    events = [event for phase in phases.values() for event in phase]
    parsed = [parse_event(json.loads(json.dumps(event))) for event in events]  # as POST /ingest/ gets them
    assert not any(event.type == "checkpoint" for event in parsed)
    # every trade is on a portfolio and an instrument the example declares first
    first = list(phases.values())[0]
    portfolios = {e.portfolio_id for e in map(parse_event, first) if isinstance(e, PortfolioEvent)}
    instruments = {e.security_id for e in map(parse_event, first) if isinstance(e, InstrumentEvent)}
    trades = [e for e in parsed if isinstance(e, TransactionEvent)]
    assert trades and all(t.portfolio_id in portfolios and t.security_id in instruments for t in trades)
    assert len({t.transaction_id for t in trades}) == len(trades)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.parent.name)
def test_runs_get_ids_of_their_own(script: Path) -> None:
    """An example can run again on the same stack: another run id, other portfolios."""
    module = load(script)

    def portfolio_ids(run_id: str) -> set[str]:
        return {e["portfolio_id"] for phase in module.build_events(run_id).values() for e in phase
                if "portfolio_id" in e}

    assert portfolio_ids("one").isdisjoint(portfolio_ids("two"))
