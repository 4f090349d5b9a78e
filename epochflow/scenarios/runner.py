"""The runner of `epochflow scenario run FILE`: drive the real stack with each case's
events, wait for quiescence at every checkpoint, and compare the expected blocks with
PostgreSQL.

Each case runs on a fresh stack (business dates are global to an engine instance).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from epochflow.client import NotQuiescent, Pipeline
from epochflow.config import Settings
from epochflow.scenarios.checks import check_scenario_file
from epochflow.scenarios.expectations import Support, Verdict, check
from epochflow.schemas.events import CheckpointEvent, InvalidEvent, parse_event
from epochflow.sinks.reads.query import position
from epochflow.sinks.reads.scenario import (
    earliest_job_date,
    history_count,
    history_row,
    snapshot,
    snapshot_current_epoch,
    transaction,
    valuation_job,
)
from epochflow.sinks.reads.series import cashflow, portfolio_point, position_point

if TYPE_CHECKING:
    from epochflow.devstack.stack import EmbeddedStack

StackFactory = Callable[[], AbstractAsyncContextManager[Settings]]


@asynccontextmanager
async def fresh_embedded_stack(keep_logs: Path | None = None) -> AsyncIterator[EmbeddedStack]:
    """A new embedded stack in a temporary directory, removed with it; with `keep_logs`,
    its logs (the broker's and every worker's) are copied there first."""
    from epochflow.devstack.stack import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="epochflow-case-") as directory:
        try:
            async with EmbeddedStack(Path(directory), topic_prefix=f"case{Path(directory).name[-6:]}") as stack:
                yield stack
        finally:
            if keep_logs is not None:
                shutil.copytree(Path(directory) / "logs", keep_logs, dirs_exist_ok=True)


@asynccontextmanager
async def fresh_stack() -> AsyncIterator[Settings]:
    """A new embedded stack per case: business dates are global to an engine instance."""
    async with fresh_embedded_stack() as stack:
        yield stack.settings


def current_support() -> Support:
    """Blocks the engine does not build yet are reported as skipped, never as passed (every
    block of FORMAT.md is built now)."""
    return Support()


@dataclass
class Case:
    name: str
    events: list[Any]
    expected: dict[str, Any]
    business_date: str | None = None


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def line(self) -> str:
        if self.failures:
            return f"FAIL {self.name}: " + "; ".join(self.failures)
        if self.skips:
            return f"SKIP {self.name}: " + "; ".join(_dedupe(self.skips))
        return f"PASS {self.name}"


def _dedupe(items: list[str]) -> list[str]:
    reasons: dict[str, int] = {}
    for item in items:
        reasons[item] = reasons.get(item, 0) + 1
    return [k if n == 1 else f"{k} x{n}" for k, n in reasons.items()]


def load_cases(path: Path, only: Collection[str] | None = None) -> list[Case]:
    """The cases of a scenario file, in its order; only those named in `only` if given."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise InvalidEvent(f"{path}: not a scenario file (expected an object with a 'cases' list)")
    cases = []
    for i, raw in enumerate(doc["cases"]):
        name = raw.get("name") or f"case_{i}"
        if only and name not in only:
            continue
        events = []
        for j, event in enumerate(raw.get("events", [])):
            try:
                events.append(parse_event(event))
            except InvalidEvent as error:
                raise InvalidEvent(f"{name}: event #{j}: {error.reason}") from None
        cases.append(Case(name, events, raw.get("expected") or {}, raw.get("business_date")))
    missing = sorted(set(only or ()) - {case.name for case in cases})
    if missing:
        raise InvalidEvent(f"{path}: no case named {', '.join(map(repr, missing))}")
    return cases


def fetchers(pipeline: Pipeline) -> dict:
    engine = pipeline.engine
    return {
        "positions": lambda row: position(engine, row["portfolio_id"], row["security_id"]),
        "transactions": lambda row: transaction(engine, row["transaction_id"]),
        "position_history": lambda row: history_row(
            engine, row["portfolio_id"], row["security_id"], int(row["epoch"]), row["transaction_id"]
        ),
        "position_history_count": lambda row: history_count(
            engine, row["portfolio_id"], row["security_id"], int(row["epoch"])
        ),
        "snapshots": lambda row: snapshot(
            engine, row["portfolio_id"], row["security_id"], _day(row["date"]), int(row["epoch"])
        ) if "epoch" in row else snapshot_current_epoch(engine, row["portfolio_id"], row["security_id"], _day(row["date"])),
        "snapshots_current_epoch": lambda row: snapshot_current_epoch(
            engine, row["portfolio_id"], row["security_id"], _day(row["date"])
        ),
        "valuation_jobs": lambda row: valuation_job(
            engine, row["portfolio_id"], row["security_id"], _day(row["valuation_date"]), int(row["epoch"])
        ),
        "valuation_jobs_absent": lambda row: _no_job_before(engine, row),
        "cashflows": lambda row: cashflow(engine, row["transaction_id"]),
        "position_timeseries": lambda row: position_point(
            engine, row["portfolio_id"], row["security_id"], _day(row["date"])
        ),
        "portfolio_timeseries": lambda row: portfolio_point(engine, row["portfolio_id"], _day(row["date"])),
    }


def _day(text: str):
    from datetime import date

    return date.fromisoformat(str(text)[:10])


async def _no_job_before(engine, row: dict) -> dict:
    """Passes (echoes the row) when no job exists before `valuation_date_before`."""
    earliest = await earliest_job_date(engine, row["portfolio_id"], row["security_id"])
    limit = _day(row["valuation_date_before"])
    if earliest is None or earliest >= limit:
        return dict(row)
    return {**row, "valuation_date_before": f"a job exists for {earliest}"}


async def run_case(case: Case, stack: StackFactory, support: Support, timeout: float, log: Callable[[str], None]) -> CaseResult:
    result = CaseResult(case.name)
    started = time.monotonic()
    async with stack() as settings:
        pipeline = await Pipeline.connect(settings)
        try:
            pending: list[Any] = []
            for event in case.events:
                if isinstance(event, CheckpointEvent):
                    await pipeline.publish(pending)
                    pending = []
                    await _check_point(pipeline, f"checkpoint {event.name}", event.expected, support, timeout, result)
                else:
                    pending.append(event)
            await pipeline.publish(pending)
            await _check_point(pipeline, "final", case.expected, support, timeout, result)
        finally:
            await pipeline.close()
    result.seconds = time.monotonic() - started
    return result


async def _check_point(pipeline: Pipeline, label: str, expected: dict, support: Support, timeout: float, result: CaseResult) -> None:
    try:
        await pipeline.settle(timeout)
    except NotQuiescent as error:
        result.failures.append(f"{label}: {error}")
        return
    verdict: Verdict = await check(expected, fetchers(pipeline), support)
    result.failures.extend(f"{label}: {f}" for f in verdict.failures)
    result.skips.extend(verdict.skips)


async def run_file(path: Path, stack: StackFactory, only: Collection[str] | None = None, timeout: float = 120.0,
                   echo: Callable[[str], None] = print,
                   on_case: Callable[[int, int, Case], None] | None = None) -> list[CaseResult]:
    """Run each case (those named in `only` if given) on a stack from `stack`, printing
    its verdict line, then the totals; `on_case(index, count, case)` before each case."""
    check_scenario_file(path)  # every problem of the file's shape, before any stack starts
    support = current_support()
    results = []
    cases = load_cases(path, only)
    for index, case in enumerate(cases, 1):
        if on_case is not None:
            on_case(index, len(cases), case)
        try:
            result = await run_case(case, stack, support, timeout, echo)
        except Exception as error:  # a broken stack fails the case, not the whole run
            result = CaseResult(case.name, failures=[f"could not run: {error!r}"])
        echo(result.line)
        results.append(result)
    passed = sum(1 for r in results if not r.failures and not r.skips)
    failed = sum(1 for r in results if r.failures)
    skipped = len(results) - passed - failed
    echo(f"{passed} passed, {failed} failed, {skipped} skipped")
    return results
