"""Returns (TIMESERIES.md): a day's return from its market values and cash flows, and the
time-weighted return of a period, chained from its days."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal

PLACES = Decimal("1E-10")
_WIDE = Context(prec=60)  # intermediate figures: no rounding before the final quantize
ZERO = Decimal(0)
ONE = Decimal(1)


def rounded(value: Decimal) -> Decimal:
    """Half-even to 10 decimal places."""
    return value.quantize(PLACES, rounding=ROUND_HALF_EVEN, context=_WIDE)


def daily_return(bod_market_value: Decimal, bod_cashflow: Decimal, eod_market_value: Decimal,
                 eod_cashflow: Decimal) -> Decimal | None:
    """`(eod_mv - eod_cf) / (bod_mv + bod_cf) - 1`, rounded; None when the denominator is 0."""
    denominator = _WIDE.add(bod_market_value, bod_cashflow)
    if denominator == 0:
        return None
    growth = _WIDE.divide(_WIDE.subtract(eod_market_value, eod_cashflow), denominator)
    return rounded(_WIDE.subtract(growth, ONE))


def average_cost(cost_basis_local: Decimal, quantity: Decimal) -> Decimal:
    """Average unit cost, rounded; 0 when the quantity is 0."""
    if quantity == 0:
        return ZERO
    return rounded(_WIDE.divide(cost_basis_local, quantity))


@dataclass(frozen=True, slots=True)
class DayReturn:
    day: date
    daily_return: Decimal | None
    complete: bool


@dataclass(frozen=True, slots=True)
class PeriodReturn:
    twr: Decimal | None
    days: int
    null_days: tuple[date, ...]  # the days that make it null (a null return, or INCOMPLETE)


def time_weighted(days: Iterable[DayReturn]) -> PeriodReturn:
    """The product of (1 + daily_return) over the days, minus 1, rounded; null if a day is
    null or INCOMPLETE (those days are named), or if there is no day at all."""
    product = ONE
    count = 0
    nulls: list[date] = []
    for day in days:
        count += 1
        if day.daily_return is None or not day.complete:
            nulls.append(day.day)
            continue
        product = _WIDE.multiply(product, _WIDE.add(ONE, day.daily_return))
    if nulls or count == 0:
        return PeriodReturn(None, count, tuple(nulls))
    return PeriodReturn(rounded(_WIDE.subtract(product, ONE)), count, ())
