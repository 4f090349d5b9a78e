"""Dated series (FX rates, prices) kept in month buckets: an update rewrites one month, and
"latest on or before a date" reads at most two buckets after a binary search of the months."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from epochflow.domain.model import month_of


@dataclass(frozen=True, slots=True)
class SeriesMonth:
    month: str
    points: tuple[tuple[date, Decimal], ...] = ()  # sorted by date, one value per date


def upsert_point(bucket: SeriesMonth | None, day: date, value: Decimal) -> tuple[SeriesMonth, Decimal | None]:
    """Insert or replace the value for `day`; returns the new bucket and the replaced value."""
    points = list(bucket.points) if bucket else []
    days = [d for d, _ in points]
    i = bisect.bisect_left(days, day)
    previous = None
    if i < len(points) and points[i][0] == day:
        previous = points[i][1]
        points[i] = (day, value)
    else:
        points.insert(i, (day, value))
    return SeriesMonth(month_of(day), tuple(points)), previous


def add_month(months: tuple[str, ...], month: str) -> tuple[str, ...]:
    if month in months:
        return months
    return tuple(sorted((*months, month)))


def latest_on_or_before(
    months: tuple[str, ...], load: Callable[[str], SeriesMonth | None], day: date
) -> tuple[date, Decimal] | None:
    i = bisect.bisect_right(months, month_of(day)) - 1
    while i >= 0:
        bucket = load(months[i])
        if bucket and bucket.points:
            days = [d for d, _ in bucket.points]
            j = bisect.bisect_right(days, day) - 1
            if j >= 0:
                return bucket.points[j]
        i -= 1
    return None
