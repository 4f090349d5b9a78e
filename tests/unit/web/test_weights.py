"""Portfolio weights: each market value over the total of those known that day."""

from __future__ import annotations

from decimal import Decimal as D

from epochflow.web.weights import WEIGHT_PLACES, portfolio_weights


def test_weights_divide_by_the_total_of_known_values() -> None:
    total, weights = portfolio_weights([D("1260"), D("275"), None])
    assert total == D("1535")
    assert weights == [(D("1260") / D("1535")).quantize(D(1).scaleb(-WEIGHT_PLACES)),
                       (D("275") / D("1535")).quantize(D(1).scaleb(-WEIGHT_PLACES)), None]
    assert weights[0] == D("0.8208469055")


def test_no_weight_without_values_or_with_a_zero_total() -> None:
    assert portfolio_weights([]) == (None, [])
    assert portfolio_weights([None, None]) == (None, [None, None])
    assert portfolio_weights([D("10"), D("-10")]) == (D("0"), [None, None])


def test_large_and_precise_values_are_summed_exactly() -> None:
    big = D("123456789012345678901234567.123456789")
    total, weights = portfolio_weights([big, big])
    assert total == D("246913578024691357802469134.246913578") and weights == [D("0.5000000000")] * 2
