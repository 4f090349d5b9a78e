"""Cash flows per transaction type (TIMESERIES.md, "Cash flows": the table, magnitude, sign)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from epochflow.domain.cashflows import cashflow_of, replaces

D = Decimal
DAY = date(2025, 6, 2)

# type, gross, fee -> amount, classification, timing, position flow, portfolio flow
TABLE = [
    ("BUY", "5000", "10", "-5010", "INVESTMENT_OUTFLOW", "BOD", True, False),
    ("SELL", "5010", "0", "5010", "INVESTMENT_INFLOW", "EOD", True, False),
    ("SELL", "1000", "5", "995", "INVESTMENT_INFLOW", "EOD", True, False),
    ("DIVIDEND", "40", "1", "39", "INCOME", "EOD", True, False),
    ("INTEREST", "7.5", "0", "7.5", "INCOME", "EOD", True, False),
    ("FEE", "15", "0", "-15", "EXPENSE", "EOD", True, True),
    ("FEE", "15", "2", "-17", "EXPENSE", "EOD", True, True),
    ("DEPOSIT", "10000", "0", "10000", "CASHFLOW_IN", "BOD", True, True),
    ("WITHDRAWAL", "300", "1", "-299", "CASHFLOW_OUT", "EOD", True, True),
    ("TRANSFER_IN", "250", "0", "250", "TRANSFER", "BOD", True, True),
    ("TRANSFER_OUT", "250", "3", "-247", "TRANSFER", "EOD", True, True),
]


@pytest.mark.parametrize("kind,gross,fee,amount,classification,timing,position,portfolio", TABLE)
def test_the_table(kind, gross, fee, amount, classification, timing, position, portfolio) -> None:
    flow = cashflow_of("T1", "P1", "S1", kind, DAY, D(gross), D(fee), "EUR")
    assert flow is not None
    assert (flow.amount, flow.classification.value, flow.timing.value) == (D(amount), classification, timing)
    assert (flow.is_position_flow, flow.is_portfolio_flow) == (position, portfolio)
    assert (flow.currency, flow.cashflow_date, flow.calculation_type) == ("EUR", DAY, "NET")


def test_an_unknown_type_has_no_cash_flow() -> None:
    assert cashflow_of("T1", "P1", "S1", "SPLIT", DAY, D(1), D(0), "USD") is None


def test_an_amendment_replaces_a_duplicate_does_not() -> None:
    first = cashflow_of("T1", "P1", "S1", "BUY", DAY, D(100), D(0), "USD", epoch=0, version=5)
    assert replaces(first, None)
    assert not replaces(first, first)
    amended = cashflow_of("T1", "P1", "S1", "BUY", DAY, D(120), D(0), "USD", epoch=0, version=9)
    assert replaces(amended, first) and not replaces(first, amended)
    recosted = cashflow_of("T1", "P1", "S1", "BUY", DAY, D(120), D(0), "USD", epoch=1, version=2)
    assert replaces(recosted, amended)
