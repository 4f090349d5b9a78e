"""Valuing one key on one day: end-of-day position, price and FX to a daily snapshot.

A snapshot whose inputs are missing is still written (UNVALUED or FAILED, so readers see
the gap), and the job that produced it reports what it waits on, so its arrival retries it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from epochflow.domain.keys import cost_subject, fx_subject, portfolio_subject, price_subject


class ValuationStatus(StrEnum):
    VALUED_CURRENT = "VALUED_CURRENT"  # price dated that day
    VALUED_STALE = "VALUED_STALE"  # an earlier price carried forward
    UNVALUED = "UNVALUED"  # no price on or before the day
    FAILED = "FAILED"  # FX missing, or a price in a currency that cannot be used


@dataclass(frozen=True, slots=True)
class DailyPosition:
    """The position after the last transaction on or before a day."""

    day: date
    quantity: Decimal
    cost_local: Decimal
    cost_base: Decimal | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    day: date
    quantity: Decimal
    cost_local: Decimal
    cost_base: Decimal | None
    market_price: Decimal | None
    price_date: date | None
    market_value_local: Decimal | None
    market_value: Decimal | None
    unrealized_local: Decimal | None
    unrealized: Decimal | None
    fx_rate: Decimal | None
    status: ValuationStatus


@dataclass(frozen=True, slots=True)
class Valued:
    snapshot: Snapshot
    waiting_on: str | None = None  # "price|SEC", "fx|EUR|USD", "portfolio|P": retried when it arrives
    reason: str | None = None

    @property
    def blocked(self) -> bool:
        return self.waiting_on is not None


@dataclass(frozen=True, slots=True)
class NoPosition:
    """No transaction on or before the day: the job ends SKIPPED_NO_POSITION, no snapshot."""


@dataclass(frozen=True, slots=True)
class Price:
    day: date
    price: Decimal
    currency: str


def end_of_day(positions: list[DailyPosition], day: date) -> DailyPosition | None:
    """The last position on or before `day` from a list ordered by date."""
    i = bisect.bisect_right([p.day for p in positions], day) - 1
    return positions[i] if i >= 0 else None


def value_position(
    day: date,
    security_id: str,
    portfolio_id: str,
    eod: DailyPosition | None,
    price: Price | None,
    instrument_currency: str | None,
    base_currency: str | None,
    fx_rate: Decimal | None,
) -> Valued | NoPosition:
    """`fx_rate` is instrument currency -> base, latest on or before `day` (1 when equal)."""
    if eod is None:
        return NoPosition()
    local_currency = instrument_currency or (price.currency if price else None)

    def snapshot(status: ValuationStatus, market_price=None, price_date=None, mv_local=None, mv=None,
                 ugl_local=None, ugl=None, rate=None) -> Snapshot:
        return Snapshot(day, eod.quantity, eod.cost_local, eod.cost_base, market_price, price_date,
                        mv_local, mv, ugl_local, ugl, rate, status)

    if base_currency is None:
        return Valued(snapshot(ValuationStatus.FAILED), portfolio_subject(portfolio_id), f"portfolio {portfolio_id} is unknown")
    if price is None:
        return Valued(snapshot(ValuationStatus.UNVALUED), price_subject(security_id), f"no price for {security_id} on or before {day}")
    if local_currency is not None and price.currency != local_currency:
        return Valued(
            snapshot(ValuationStatus.FAILED, price.price, price.day),
            price_subject(security_id),
            f"price of {security_id} is in {price.currency}, the instrument trades in {local_currency}",
        )
    status = ValuationStatus.VALUED_CURRENT if price.day == day else ValuationStatus.VALUED_STALE
    mv_local = eod.quantity * price.price
    ugl_local = mv_local - eod.cost_local
    if fx_rate is None:
        return Valued(
            snapshot(ValuationStatus.FAILED, price.price, price.day, mv_local, None, ugl_local),
            fx_subject(price.currency, base_currency),
            f"no {price.currency}->{base_currency} rate on or before {day}",
        )
    mv = mv_local * fx_rate
    if eod.cost_base is None:
        # costing itself waits for an FX rate at a trade date; the key's re-costing retries it
        return Valued(
            snapshot(ValuationStatus.FAILED, price.price, price.day, mv_local, mv, ugl_local, None, fx_rate),
            cost_subject(portfolio_id),
            "base-currency cost waits for an FX rate at a trade date",
        )
    return Valued(snapshot(status, price.price, price.day, mv_local, mv, ugl_local, mv - eod.cost_base, fx_rate))
