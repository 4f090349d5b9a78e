"""`epochflow chaos` refuses bad arguments before it starts anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from epochflow.cli.main import cli


@pytest.mark.parametrize("args, message, status", [
    (["--kill-every", "9", "3"], "expected 0 < MIN <= MAX", 2),
    (["--kill-every", "0", "3"], "expected 0 < MIN <= MAX", 2),
    (["--roles", "positions,nosuchrole"], "nosuchrole: roles are positions, scheduler, valuation, fanout, timeseries, sink", 2),
    (["--roles", "api"], "api: roles are", 2),
    (["--case", "a,nosuchcase"], "no case named 'nosuchcase'", 1),
])
def test_bad_arguments_are_refused(tmp_path: Path, args: list[str], message: str, status: int) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cases": [{"name": "a", "events": []}]}))

    result = CliRunner().invoke(cli, ["chaos", str(cases), *args])

    assert result.exit_code == status
    assert message in result.output
