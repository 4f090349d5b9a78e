"""Daily return, average cost and the time-weighted return of a period (TIMESERIES.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from epochflow.domain.returns import DayReturn, average_cost, daily_return, time_weighted

D = Decimal


@pytest.mark.parametrize("bod_mv,bod_cf,eod_mv,eod_cf,expected", [
    ("0", "10000", "10090", "0", "0.009"),
    ("10090", "0", "10175", "-15", "0.0099108028"),
    ("0", "10000", "10600", "0", "0.06"),
    ("10600", "0", "10695", "-15", "0.0103773585"),
    ("100", "-100", "5", "0", None),  # denominator 0
    ("0", "0", "0", "0", None),
    ("3", "0", "1", "0", "-0.6666666667"),  # half-even at the 10th place
    ("8", "0", "1", "0", "-0.875"),
])
def test_daily_return(bod_mv, bod_cf, eod_mv, eod_cf, expected) -> None:
    got = daily_return(D(bod_mv), D(bod_cf), D(eod_mv), D(eod_cf))
    assert got == (None if expected is None else D(expected))


def test_half_even() -> None:
    # 1.00000000005 -> ...0 (even), 1.00000000015 -> ...2
    assert daily_return(D("1"), D("0"), D("1.00000000005") + 1, D("1")) == D("0")
    assert daily_return(D("1"), D("0"), D("1.00000000015") + 1, D("1")) == D("0.0000000002")


@pytest.mark.parametrize("cost,quantity,expected", [("5010", "100", "50.1"), ("5500", "110", "50"),
                                                     ("10", "3", "3.3333333333"), ("7", "0", "0")])
def test_average_cost(cost, quantity, expected) -> None:
    assert average_cost(D(cost), D(quantity)) == D(expected)


def test_time_weighted_chains_the_days() -> None:
    days = [DayReturn(date(2025, 6, 2), D("0.06"), True), DayReturn(date(2025, 6, 3), D("0.0103773585"), True)]
    result = time_weighted(days)
    assert result.twr == D("0.0710000000")  # 1.06 * 1.0103773585 - 1 = 0.07100000001
    assert result.days == 2 and result.null_days == ()


def test_a_null_or_incomplete_day_makes_it_null_and_is_named() -> None:
    days = [DayReturn(date(2025, 6, 2), None, True), DayReturn(date(2025, 6, 3), D("0.01"), True),
            DayReturn(date(2025, 6, 4), D("0.01"), False)]
    result = time_weighted(days)
    assert result.twr is None and result.null_days == (date(2025, 6, 2), date(2025, 6, 4))
    assert time_weighted([]).twr is None
