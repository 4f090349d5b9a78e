"""Portfolio weights: each position's share of the portfolio's market value on one day."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

WEIGHT_PLACES = 10
_QUANTUM = Decimal(1).scaleb(-WEIGHT_PLACES)


def portfolio_weights(market_values: Sequence[Decimal | None]) -> tuple[Decimal | None, list[Decimal | None]]:
    """The total of the market values known (None when none is) and each value's weight:
    value / total, rounded half-even to WEIGHT_PLACES decimals; None for a value that is
    unknown, or for all when the total is zero (a book of offsetting positions)."""
    known = [value for value in market_values if value is not None]
    if not known:
        return None, [None] * len(market_values)
    with localcontext() as context:
        context.prec = 80  # exact sums and room for any ratio of NUMERIC values before rounding
        total = sum(known, Decimal(0))
        if total == 0:
            return total, [None] * len(market_values)
        return total, [
            None if value is None else (value / total).quantize(_QUANTUM, ROUND_HALF_EVEN) for value in market_values
        ]
