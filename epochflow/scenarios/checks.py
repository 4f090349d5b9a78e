"""Checking a scenario file's shape (`shared/acceptance/FORMAT.md`) before any stack starts.

A file is other people's work: a block written as an object instead of a list of rows, a
case without a name or a misspelt block would otherwise surface minutes later, after a
stack was started, as a TypeError or as a block silently never checked. Every problem is
named at once, as `case NAME: block BLOCK: row N: reason`.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path
from typing import Any

from epochflow.scenarios.expectations import IDENTITY
from epochflow.schemas.documents import DocumentError, json_kind, load_json
from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event

CASE_FIELDS = ("name", "description", "business_date", "events", "expected")
# fields a row needs besides those that identify it (FORMAT.md's table)
NEEDED: dict[str, tuple[str, ...]] = {
    "position_history_count": ("count",),
    "valuation_jobs_absent": ("valuation_date_before",),
}
# identifying fields a row may leave out: a snapshot without an epoch is in the current one
OPTIONAL: dict[str, tuple[str, ...]] = {"snapshots": ("epoch",)}
# fields the runner reads as a day or as an epoch to find the row
DAYS = ("date", "valuation_date", "valuation_date_before")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class ScenarioFileError(ValueError):
    """A scenario file of the wrong shape; `problems` lists every one."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{path}: not a valid scenario file, {len(problems)} {noun}; no case was run:\n{listed}")


def check_scenario_file(path: Path) -> None:
    """Raise ScenarioFileError naming every problem of the file's shape; return when none."""
    try:
        doc = load_json(Path(path).read_bytes())
    except DocumentError as error:
        raise ScenarioFileError(path, [f"file: {error}"]) from None
    problems = scenario_problems(doc)
    if problems:
        raise ScenarioFileError(path, problems)


def scenario_problems(doc: Any) -> list[str]:
    """Every problem of a parsed scenario document, in file order."""
    if not isinstance(doc, dict) or "cases" not in doc:
        return ["file: not a scenario file (expected an object with a 'cases' list)"]
    if not isinstance(doc["cases"], list):
        return [f"file: cases: must be a list of cases, not {json_kind(doc['cases'])}"]
    problems: list[str] = []
    for number, case in enumerate(doc["cases"]):
        problems += _case_problems(number, case)
    return problems


def _case_problems(number: int, case: Any) -> list[str]:
    if not isinstance(case, dict):
        return [f"case #{number}: must be an object, not {json_kind(case)}"]
    name = case.get("name")
    problems = []
    if isinstance(name, str) and name.strip():
        where = f"case {name}"
    else:
        where = f"case #{number}"
        problems.append(f"{where}: name: " + ("missing" if name is None else "must be a non-empty string"))
    for field in case:
        if field not in CASE_FIELDS and not str(field).startswith("_"):
            problems.append(f"{where}: {field}: unknown field{_nearest(field, CASE_FIELDS)}")
    if "business_date" in case and not _is_day(case["business_date"]):
        problems.append(f"{where}: business_date: must be a date YYYY-MM-DD")
    events = case.get("events")
    if not isinstance(events, list):
        problems.append(f"{where}: events: " + ("missing" if events is None else f"must be a list, not {json_kind(events)}"))
    else:
        for index, raw in enumerate(events):
            problems += _event_problems(f"{where}: event #{index}", raw)
    if "expected" in case:
        problems += expected_problems(where, case["expected"])
    return problems


def _event_problems(where: str, raw: Any) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}: an event must be a JSON object, not {json_kind(raw)}"]
    try:
        event = parse_event(raw)
    except InvalidEvent as error:
        return [f"{where}: {problem}" for problem in error.problems]
    if isinstance(event, CheckpointEvent):
        return expected_problems(f"{where} (checkpoint {event.name})", raw.get("expected", {}))
    return []


def expected_problems(where: str, expected: Any) -> list[str]:
    """The problems of an `expected` object (a case's or a checkpoint's): blocks known,
    each a list of row objects with the fields the block needs."""
    if not isinstance(expected, dict):
        return [f"{where}: expected: must be an object of blocks, not {json_kind(expected)}"]
    problems = []
    for block, rows in expected.items():
        at = f"{where}: block {block}"
        if block not in IDENTITY:
            problems.append(f"{at}: unknown block{_nearest(block, tuple(IDENTITY))}")
            continue
        if not isinstance(rows, list):
            problems.append(f"{at}: must be a list of rows, not {json_kind(rows)}")
            continue
        for number, row in enumerate(rows):
            problems += [f"{at}: row {number}: {reason}" for reason in row_problems(block, row)]
    return problems


def row_problems(block: str, row: Any) -> list[str]:
    """What is wrong with one expected row of `block`."""
    if not isinstance(row, dict):
        return [f"must be an object, not {json_kind(row)}"]
    reasons = []
    optional = OPTIONAL.get(block, ())
    for field in IDENTITY[block] + NEEDED.get(block, ()):
        if field not in row:
            if field not in optional:
                reasons.append(f"{field}: missing (the block needs it)")
            continue
        value = row[field]
        if field in DAYS and not _is_day(value):
            reasons.append(f"{field}: must be a date YYYY-MM-DD, not {value!r}")
        elif field in ("epoch", "count") and not _is_whole(value):
            reasons.append(f"{field}: must be a whole number, not {value!r}")
        elif field.endswith("_id") and not (isinstance(value, str) and value):
            reasons.append(f"{field}: must be a non-empty string, not {value!r}")
    if "epoch_in" in row and not (isinstance(row["epoch_in"], list) and all(_is_whole(e) for e in row["epoch_in"])):
        reasons.append("epoch_in: must be a list of whole numbers")
    if "absent" in row and not isinstance(row["absent"], bool):
        reasons.append("absent: must be true or false")
    if "absent_or_valuation_status_not_in" in row and not isinstance(row["absent_or_valuation_status_not_in"], list):
        reasons.append("absent_or_valuation_status_not_in: must be a list of statuses")
    return reasons


def _is_day(value: Any) -> bool:
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit())


def _nearest(name: Any, known: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(known)})"
