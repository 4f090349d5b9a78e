"""Choosing the cases of a scenario file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from epochflow.scenarios.runner import load_cases
from epochflow.schemas.events import InvalidEvent


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": [{"name": name, "events": []} for name in ("a", "b", "c")]}))
    return path


def test_every_case_in_file_order_or_only_the_named_ones(cases_file: Path) -> None:
    assert [c.name for c in load_cases(cases_file)] == ["a", "b", "c"]
    assert [c.name for c in load_cases(cases_file, ["c", "a"])] == ["a", "c"]


def test_a_name_not_in_the_file_is_refused(cases_file: Path) -> None:
    with pytest.raises(InvalidEvent, match="no case named 'x', 'y'"):
        load_cases(cases_file, ["a", "y", "x"])
