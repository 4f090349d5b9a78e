"""Dated series in month buckets: latest value on or before a day."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from factories import D, memory_reference

from epochflow.domain.keys import fx_subject
from epochflow.domain.model import month_of
from epochflow.domain.series import SeriesMonth, add_month, latest_on_or_before, upsert_point


def build(points: dict[str, str]) -> tuple[tuple[str, ...], dict[str, SeriesMonth]]:
    """Month index and buckets for the points, inserted in the order given."""
    months: tuple[str, ...] = ()
    buckets: dict[str, SeriesMonth] = {}
    for text, value in points.items():
        d = date.fromisoformat(text)
        buckets[month_of(d)], _ = upsert_point(buckets.get(month_of(d)), d, D(value))
        months = add_month(months, month_of(d))
    return months, buckets


# points out of date order on purpose: buckets keep them sorted
SERIES = {"2025-04-10": "1.30", "2025-01-15": "1.10", "2025-01-31": "1.15", "2025-05-01": "1.40", "2025-04-20": "1.35"}

LOOKUPS = {
    # name: (day, expected (date, value) or None)
    "exact-date": ("2025-01-15", ("2025-01-15", "1.10")),
    "between-points-same-month": ("2025-01-20", ("2025-01-15", "1.10")),
    "last-day-of-month-point": ("2025-01-31", ("2025-01-31", "1.15")),
    "gap-spanning-months-no-bucket": ("2025-03-15", ("2025-01-31", "1.15")),
    "month-bucket-only-later-points": ("2025-04-05", ("2025-01-31", "1.15")),
    "first-of-month-falls-back": ("2025-02-01", ("2025-01-31", "1.15")),
    "within-later-month": ("2025-04-25", ("2025-04-20", "1.35")),
    "exact-first-of-month-point": ("2025-05-01", ("2025-05-01", "1.40")),
    "after-the-last-point": ("2026-02-01", ("2025-05-01", "1.40")),
    "before-the-first-point-same-month": ("2025-01-14", None),
    "before-the-first-month": ("2024-12-31", None),
}


@pytest.mark.parametrize("on,expected", [pytest.param(*c, id=n) for n, c in LOOKUPS.items()])
def test_latest_on_or_before(on, expected) -> None:
    months, buckets = build(SERIES)
    assert months == ("2025-01", "2025-04", "2025-05")
    found = latest_on_or_before(months, buckets.get, date.fromisoformat(on))
    if expected is None:
        assert found is None
    else:
        assert found == (date.fromisoformat(expected[0]), D(expected[1]))
        assert isinstance(found[1], Decimal)


def test_points_in_a_bucket_are_sorted_one_per_date() -> None:
    _, buckets = build(SERIES)
    assert [d.isoformat() for d, _ in buckets["2025-04"].points] == ["2025-04-10", "2025-04-20"]


def test_empty_series_has_nothing() -> None:
    assert latest_on_or_before((), lambda m: None, date(2025, 1, 1)) is None


def test_replacing_a_point_returns_the_previous_value() -> None:
    months, buckets = build(SERIES)
    day = date(2025, 4, 10)
    buckets["2025-04"], previous = upsert_point(buckets["2025-04"], day, D("1.31"))
    assert previous == D("1.30")
    assert len(buckets["2025-04"].points) == 2
    assert latest_on_or_before(months, buckets.get, date(2025, 4, 15)) == (day, D("1.31"))
    _, previous = upsert_point(buckets["2025-04"], date(2025, 4, 11), D("1"))
    assert previous is None


def test_add_month_keeps_the_index_sorted_and_unique() -> None:
    months = add_month(add_month(add_month((), "2025-04"), "2025-01"), "2025-04")
    assert months == ("2025-01", "2025-04")


def test_reference_data_fx_uses_the_series() -> None:
    ref = memory_reference()
    name = fx_subject("EUR", "USD")
    for text, value in SERIES.items():
        ref.put_point(name, date.fromisoformat(text), D(value))
    assert ref.fx("EUR", "USD", date(2025, 3, 15)) == D("1.15")
    assert ref.fx("EUR", "USD", date(2025, 1, 1)) is None
    assert ref.fx("USD", "EUR", date(2025, 3, 15)) is None  # no inverse is guessed
    assert ref.fx("USD", "USD", date(2025, 3, 15)) == D(1)
    assert ref.put_point(name, date(2025, 1, 31), D("1.16")) == D("1.15")
    assert ref.fx("EUR", "USD", date(2025, 3, 15)) == D("1.16")
