"""Reading input files: a scenario file (JSON with cases), a JSON list of events, or JSON
Lines. Every event is validated before anything is published; the first problems are
reported with their line or position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event


def read_raw_events(path: Path, case: str | None = None) -> list[tuple[str, Any]]:
    """(where, raw event) pairs from a file, in order."""
    text = Path(path).read_text()
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None  # maybe JSON Lines whose first line is an object
        if isinstance(doc, dict) and "cases" in doc:
            out = []
            for c in doc["cases"]:
                if case and c.get("name") != case:
                    continue
                out += [(f"case {c.get('name')} event #{i}", e) for i, e in enumerate(c.get("events", []))]
            if case and not out:
                raise InvalidEvent(f"{path}: no case named {case!r}")
            return out
        if isinstance(doc, dict) and "events" in doc:
            return [(f"event #{i}", e) for i, e in enumerate(doc["events"])]
        if isinstance(doc, list):
            return [(f"event #{i}", e) for i, e in enumerate(doc)]
        if isinstance(doc, dict):
            return [("event #0", doc)]
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((f"line {number}", json.loads(line)))
        except ValueError as error:
            raise InvalidEvent(f"{path}: line {number}: not JSON ({error.msg})") from None
    return out


def load_events(path: Path, case: str | None = None) -> list:
    """Validated events (checkpoints dropped: they only mean something to the scenario runner)."""
    events, problems = [], []
    for where, raw in read_raw_events(path, case):
        try:
            event = parse_event(raw)
        except InvalidEvent as error:
            problems.append(f"{where}: {error.reason}")
            continue
        if not isinstance(event, CheckpointEvent):
            events.append(event)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvalidEvent(f"{path}: {len(problems)} invalid event(s), nothing was published:\n  {shown}{more}")
    return events
