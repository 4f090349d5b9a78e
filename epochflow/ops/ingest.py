"""Reading input files: a scenario file (JSON with cases), a JSON list of events, JSON
Lines, or CSV (one event a row). Every event is validated before anything is published,
and every problem is reported with where it is (line, event index, case and index, or a
CSV file's row), the field and the reason.

JSON files are read with `schemas.documents.load_json`, the loader of `POST /ingest/`:
nesting is bounded and a JSON number with a fraction is refused by the event models
exactly as it is there. CSV files are read with `schemas.tabular.read_csv`, which that
route uses for a `text/csv` body; both end in the same event models.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epochflow.config import Settings
from epochflow.schemas.documents import DocumentError, json_kind, load_json
from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event
from epochflow.schemas.tabular import read_csv, type_of_name

FORMATS = ("json", "csv")  # json: a scenario file, a JSON list or JSON Lines


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where (`line 3`, `event #2`, `case NAME event #0`, or
    `file`) and what (`field: reason`)."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Reading:
    """A file read and validated: the events to publish (checkpoints left out), the
    checkpoints skipped, how many events the file has, and every problem found."""

    events: list = field(default_factory=list)
    checkpoints: int = 0
    total: int = 0
    problems: list[Problem] = field(default_factory=list)
    invalid_events: int = 0

    def counts_by_type(self) -> dict[str, int]:
        return dict(Counter(event.type for event in self.events))

    def add(self, other: Reading) -> None:
        """`other` (the next file's reading) appended to this one."""
        self.events += other.events
        self.checkpoints += other.checkpoints
        self.total += other.total
        self.problems += other.problems
        self.invalid_events += other.invalid_events


def format_of(path: Path, given: str | None = None) -> str:
    """`given`, else what the file's suffix says: `.csv` is CSV, anything else JSON."""
    if given is not None:
        return given
    return "csv" if Path(path).suffix.lower() == ".csv" else "json"


def read_raw_events(path: Path, case: str | None = None) -> tuple[list[tuple[str, Any]], list[Problem]]:
    """(where, raw event) pairs from a file, in order (a JSON Lines line that is not JSON
    as its DocumentError), and the problems of the file's shape (not JSON, nested too
    deep, `cases` or `events` not a list, no such case)."""
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            doc = load_json(text)
        except DocumentError as error:
            if _first_line_is_json(text):
                return _json_lines(text)
            return [], [Problem("file", str(error))]
        return _from_document(doc, case)
    return _json_lines(text)


def _first_line_is_json(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        load_json(first)
    except DocumentError:
        return False
    return True


def _json_lines(text: str) -> tuple[list[tuple[str, Any]], list[Problem]]:
    """Each line's event; a line that is not JSON stays in its place as its DocumentError."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((f"line {number}", load_json(line)))
        except DocumentError as error:
            out.append((f"line {number}", error))
    return out, []


def _from_document(doc: Any, case: str | None) -> tuple[list[tuple[str, Any]], list[Problem]]:
    if isinstance(doc, dict) and "cases" in doc:
        cases = doc["cases"]
        if not isinstance(cases, list):
            return [], [Problem("file", "cases: must be a list of cases")]
        out, problems, found = [], [], False
        for number, raw_case in enumerate(cases):
            if not isinstance(raw_case, dict):
                problems.append(Problem(f"case #{number}", f"must be an object, not {json_kind(raw_case)}"))
                continue
            name = raw_case.get("name")
            if case and name != case:
                continue
            found = True
            events = raw_case.get("events", [])
            if not isinstance(events, list):
                problems.append(Problem(f"case {name}", f"events: must be a list, not {json_kind(events)}"))
                continue
            out += [(f"case {name} event #{i}", event) for i, event in enumerate(events)]
        if case and not found:
            problems.append(Problem("file", f"no case named {case!r}"))
        return out, problems
    if isinstance(doc, dict) and "events" in doc:
        events = doc["events"]
        if not isinstance(events, list):
            return [], [Problem("file", f"events: must be a list, not {json_kind(events)}")]
        return [(f"event #{i}", event) for i, event in enumerate(events)], []
    if isinstance(doc, list):
        return [(f"event #{i}", event) for i, event in enumerate(doc)], []
    return [("event #0", doc)], []


def read_raw_csv(path: Path, event_type: str | None = None) -> tuple[list[tuple[str, Any]], list[Problem], int, int]:
    """(where, raw event) pairs of a CSV file (`FILE row N`), the problems of its header and
    of rows that are no event, its event rows and how many of them those problems refused.
    Rows without a `type` cell are of `event_type`, else of the type the file's name says."""
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    table = read_csv(text, event_type or type_of_name(Path(path).name))
    events = [(f"{path} row {row}", raw) for row, raw in table.events]
    problems = [Problem(f"{path} row {p.row}" if p.row else str(path), p.reason) for p in table.problems]
    return events, problems, table.rows, table.invalid_rows


def read_files(paths: list[Path], case: str | None = None, format: str | None = None,
               event_type: str | None = None) -> Reading:
    """Every file read (each in its format: `format`, else its suffix) and validated, in
    order; where a problem is names the file when there are several (a CSV's always)."""
    reading = Reading()
    for path in paths:
        reading.add(read_events(path, case, format, event_type, named=len(paths) > 1))
    return reading


def read_events(path: Path, case: str | None = None, format: str | None = None, event_type: str | None = None,
                named: bool = False) -> Reading:
    """The file read and every event validated; never raises for what is in the file."""
    if format_of(path, format) == "csv":
        raw_events, problems, rows, refused = read_raw_csv(path, event_type)
        reading = Reading(total=rows, problems=problems, invalid_events=refused)
    else:
        raw_events, problems = read_raw_events(path, case)
        if named:
            raw_events = [(f"{path} {where}", raw) for where, raw in raw_events]
            problems = [Problem(str(path) if p.where == "file" else f"{path} {p.where}", p.reason) for p in problems]
        reading = Reading(total=len(raw_events), problems=problems)
    for where, raw in raw_events:
        if isinstance(raw, DocumentError):
            reading.problems.append(Problem(where, str(raw)))
            reading.invalid_events += 1
            continue
        if not isinstance(raw, dict):
            reading.problems.append(Problem(where, f"an event must be a JSON object, not {json_kind(raw)}"))
            reading.invalid_events += 1
            continue
        try:
            event = parse_event(raw)
        except InvalidEvent as error:
            reading.problems += [Problem(where, problem) for problem in error.problems]
            reading.invalid_events += 1
            continue
        if isinstance(event, CheckpointEvent):
            reading.checkpoints += 1
        else:
            reading.events.append(event)
    return reading


def problem_count(reading: Reading) -> str:
    """`3 problems in 2 of 5 events` (the closing line of a listing; a problem of the
    file's shape is in no event)."""
    problems = len(reading.problems)
    noun = "problem" if problems == 1 else "problems"
    events = f" in {reading.invalid_events} of {reading.total} events" if reading.invalid_events else ""
    return f"{problems} {noun}{events}"


def running_roles(settings: Settings) -> tuple[str, ...]:
    """The roles whose barriers to wait for: those of the stack's run file (a stack may run
    only some roles), else every role (a deployment found through the environment)."""
    from epochflow.devstack.stack import read_run_file
    from epochflow.topology import ROLE_NAMES

    run = read_run_file(settings.data_dir)
    running = {worker["role"] for worker in run["workers"]} if run else set()
    return tuple(role for role in ROLE_NAMES if role in running) or ROLE_NAMES
