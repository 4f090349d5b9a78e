"""A scenario file's shape is checked before any stack starts: every problem named as
`case NAME: block BLOCK: row N: reason`, exit status 2."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from epochflow.cli.main import cli
from epochflow.scenarios.checks import ScenarioFileError, check_scenario_file, scenario_problems
from epochflow.scenarios.runner import run_file

PUBLIC_CASES = Path(__file__).resolve().parents[3].parent / "shared" / "acceptance" / "public_cases.json"
PORTFOLIO = {"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD"}
POSITION = {"portfolio_id": "P1", "security_id": "S1", "quantity": "10"}


def case(name: str = "c", events: list | None = None, **fields) -> dict:
    return {"name": name, "business_date": "2025-08-01", "events": [PORTFOLIO] if events is None else events,
            **fields}


def test_a_block_that_is_an_object_names_case_and_block() -> None:
    doc = {"cases": [case("one", expected={"positions": POSITION})]}
    assert scenario_problems(doc) == ["case one: block positions: must be a list of rows, not an object"]


def test_rows_name_their_number_and_what_the_block_needs() -> None:
    doc = {"cases": [case("one", expected={
        "positions": [POSITION, {"portfolio_id": "P1", "quantity": "1"}, "row"],
        "snapshots": [{"portfolio_id": "P1", "security_id": "S1", "date": "2025-13-01", "epoch": "x"}],
        "position_history_count": [{"portfolio_id": "P1", "security_id": "S1", "epoch": 0}],
    })]}
    assert scenario_problems(doc) == [
        "case one: block positions: row 1: security_id: missing (the block needs it)",
        "case one: block positions: row 2: must be an object, not a string",
        "case one: block snapshots: row 0: date: must be a date YYYY-MM-DD, not '2025-13-01'",
        "case one: block snapshots: row 0: epoch: must be a whole number, not 'x'",
        "case one: block position_history_count: row 0: count: missing (the block needs it)",
    ]


def test_a_missing_name_an_unknown_block_and_a_bad_event_are_all_reported() -> None:
    doc = {"cases": [
        {"events": [PORTFOLIO]},
        case("two", expected={"position": [POSITION]}),
        case("three", events=[PORTFOLIO, {**PORTFOLIO, "base_currency": "usd", "fee": 1}]),
        case("four", events={"type": "portfolio"}, expect={}),
        "five",
    ]}
    assert scenario_problems(doc) == [
        "case #0: name: missing",
        "case two: block position: unknown block (did you mean positions?)",
        "case three: event #1: portfolio.base_currency: String should match pattern '^[A-Z]{3}$'",
        "case three: event #1: portfolio.fee: unknown field",
        "case four: expect: unknown field (did you mean expected?)",
        "case four: events: must be a list, not an object",
        "case #4: must be an object, not a string",
    ]


def test_checkpoint_blocks_are_checked_too() -> None:
    checkpoint = {"type": "checkpoint", "name": "cp", "expected": {"transactions": {"transaction_id": "T1"}}}
    doc = {"cases": [case("one", events=[PORTFOLIO, checkpoint])]}
    assert scenario_problems(doc) == [
        "case one: event #1 (checkpoint cp): block transactions: must be a list of rows, not an object"]


def test_a_document_that_is_no_scenario_file() -> None:
    assert scenario_problems([PORTFOLIO]) == ["file: not a scenario file (expected an object with a 'cases' list)"]
    assert scenario_problems({"cases": {"name": "x"}}) == ["file: cases: must be a list of cases, not an object"]


def test_the_public_cases_pass_including_the_blocks_not_built_yet() -> None:
    doc = json.loads(PUBLIC_CASES.read_text())
    blocks = {block for c in doc["cases"] for block in c.get("expected", {})}
    assert {"cashflows", "position_timeseries", "portfolio_timeseries"} <= blocks
    assert "timeseries_worked_example" in {c["name"] for c in doc["cases"]}
    check_scenario_file(PUBLIC_CASES)


def test_the_runner_checks_the_file_before_starting_a_stack(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": [case("one", expected={"positions": POSITION})]}))
    started = []

    @asynccontextmanager
    async def stack():
        started.append(True)
        yield None

    with pytest.raises(ScenarioFileError) as refused:
        asyncio.run(run_file(path, stack, echo=lambda line: None))
    assert refused.value.problems == ["case one: block positions: must be a list of rows, not an object"]
    assert started == []


def test_scenario_run_exits_2_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": [case("one", expected={"positions": POSITION}), {"events": []}]}))
    result = CliRunner().invoke(cli, ["scenario", "run", str(path)])
    assert result.exit_code == 2
    assert "case one: block positions: must be a list of rows, not an object" in result.stderr
    assert "case #1: name: missing" in result.stderr
    assert "TypeError" not in result.output
