"""Comparing a scenario's expected blocks with what PostgreSQL holds (FORMAT.md).

Numbers compare as Decimal, exactly; `null` means NULL/absent; keys starting with `_` are
informational. A block or field the engine does not support yet is reported as a skip,
never as a pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# block -> fields identifying a row
IDENTITY: dict[str, tuple[str, ...]] = {
    "positions": ("portfolio_id", "security_id"),
    "snapshots": ("portfolio_id", "security_id", "date", "epoch"),  # epoch may be left out
    "snapshots_current_epoch": ("portfolio_id", "security_id", "date"),
    "transactions": ("transaction_id",),
    "position_history": ("portfolio_id", "security_id", "epoch", "transaction_id"),
    "position_history_count": ("portfolio_id", "security_id", "epoch"),
    "valuation_jobs": ("portfolio_id", "security_id", "valuation_date", "epoch"),
    "valuation_jobs_absent": ("portfolio_id", "security_id"),
    "cashflows": ("transaction_id",),
    "position_timeseries": ("portfolio_id", "security_id", "date"),
    "portfolio_timeseries": ("portfolio_id", "date"),
}

# Row fetchers: block -> async (expected row) -> actual row dict, or None when absent
Fetch = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass
class Support:
    """What the engine can check today: unsupported blocks, and per block the fields (or a
    predicate over rows) that still depend on work not built yet, with the reason."""

    blocks: dict[str, str] = field(default_factory=dict)  # block -> reason unsupported
    fields: dict[tuple[str, str], str] = field(default_factory=dict)  # (block, field) -> reason
    rows: dict[str, Callable[[dict[str, Any]], str | None]] = field(default_factory=dict)


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, Decimal, float)):
        return True
    if isinstance(value, str):
        try:
            Decimal(value)
            return value.strip().lower() not in ("nan", "inf", "infinity", "-inf")
        except InvalidOperation:
            return False
    return False


def same(expected: Any, actual: Any) -> bool:
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(actual, datetime):
        text = str(expected)
        if len(text) == 10:
            return actual.date().isoformat() == text
        return datetime.fromisoformat(text.replace("Z", "+00:00")) == actual
    if isinstance(actual, date):
        return actual.isoformat() == str(expected)
    if isinstance(expected, list):
        return actual in expected or str(actual) in [str(e) for e in expected]
    if _is_number(expected) and (_is_number(actual) or isinstance(actual, Decimal)):
        return Decimal(str(expected)) == Decimal(str(actual))
    return str(expected) == str(actual)


def describe_row(block: str, row: dict[str, Any]) -> str:
    ident = ", ".join(f"{k}={row[k]}" for k in IDENTITY.get(block, ()) if k in row)
    return f"{block}[{ident}]"


async def check(expected: dict[str, list[dict[str, Any]]], fetchers: dict[str, Fetch], support: Support) -> Verdict:
    verdict = Verdict()
    for block, rows in expected.items():
        if block in support.blocks or block not in fetchers:
            verdict.skips.append(f"{block} ({support.blocks.get(block, 'not supported yet')})")
            continue
        for row in rows:
            row_reason = support.rows.get(block, lambda r: None)(row)
            if row_reason:
                verdict.skips.append(f"{describe_row(block, row)} ({row_reason})")
                continue
            actual = await fetchers[block](row)
            verdict.failures.extend(_compare_row(block, row, actual, support, verdict))
    return verdict


def _compare_row(block: str, row: dict[str, Any], actual: dict[str, Any] | None, support: Support, verdict: Verdict) -> list[str]:
    where = describe_row(block, row)
    if row.get("absent") is True:
        return [] if actual is None else [f"{where}: expected absent, found {_short(actual)}"]
    if "absent_or_valuation_status_not_in" in row:
        banned = row["absent_or_valuation_status_not_in"]
        if actual is None or actual.get("valuation_status") not in banned:
            return []
        return [f"{where}: expected absent or valuation_status not in {banned}, found {actual.get('valuation_status')}"]
    if actual is None:
        return [f"{where}: expected a row, found none"]
    failures = []
    identity = IDENTITY.get(block, ())
    for name, want in row.items():
        if name.startswith("_") or name in identity:
            continue
        reason = support.fields.get((block, name))
        if reason:
            verdict.skips.append(f"{where}.{name} ({reason})")
            continue
        if name == "epoch_in":
            got = actual.get("epoch")
            if got not in [int(e) for e in want]:
                failures.append(f"{where}.epoch: expected one of {want}, actual {got}")
            continue
        if name.endswith("_gte"):
            base = name[: -len("_gte")]
            got = actual.get(base)
            if got is None or Decimal(str(got)) < Decimal(str(want)):
                failures.append(f"{where}.{base}: expected >= {want}, actual {got}")
            continue
        if name not in actual:
            failures.append(f"{where}.{name}: the engine has no such field")
            continue
        if not same(want, actual[name]):
            failures.append(f"{where}.{name}: expected {want}, actual {actual[name]}")
    return failures


def _short(row: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in list(row.items())[:6]) + "}"
