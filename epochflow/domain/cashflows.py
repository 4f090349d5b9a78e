"""Cash flows: one per transaction, classified by its type (TIMESERIES.md, "Cash flows").

A cash flow carries the fence of the transaction row it was derived from (`epoch`, then
`version`, the position in the key's ordered output): an amendment or a re-costing under
a later epoch replaces it, a duplicate or an older version changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum


class Timing(StrEnum):
    BOD = "BOD"
    EOD = "EOD"


class Classification(StrEnum):
    INVESTMENT_OUTFLOW = "INVESTMENT_OUTFLOW"
    INVESTMENT_INFLOW = "INVESTMENT_INFLOW"
    INCOME = "INCOME"
    EXPENSE = "EXPENSE"
    CASHFLOW_IN = "CASHFLOW_IN"
    CASHFLOW_OUT = "CASHFLOW_OUT"
    TRANSFER = "TRANSFER"


@dataclass(frozen=True, slots=True)
class FlowRule:
    classification: Classification
    timing: Timing
    is_position_flow: bool
    is_portfolio_flow: bool
    positive: bool  # the amount's sign
    fee_added: bool  # magnitude gross + fee (else gross - fee)


_C = Classification
RULES: dict[str, FlowRule] = {
    "BUY": FlowRule(_C.INVESTMENT_OUTFLOW, Timing.BOD, True, False, False, True),
    "SELL": FlowRule(_C.INVESTMENT_INFLOW, Timing.EOD, True, False, True, False),
    "DIVIDEND": FlowRule(_C.INCOME, Timing.EOD, True, False, True, False),
    "INTEREST": FlowRule(_C.INCOME, Timing.EOD, True, False, True, False),
    "FEE": FlowRule(_C.EXPENSE, Timing.EOD, True, True, False, True),
    "DEPOSIT": FlowRule(_C.CASHFLOW_IN, Timing.BOD, True, True, True, False),
    "WITHDRAWAL": FlowRule(_C.CASHFLOW_OUT, Timing.EOD, True, True, False, False),
    "TRANSFER_IN": FlowRule(_C.TRANSFER, Timing.BOD, True, True, True, False),
    "TRANSFER_OUT": FlowRule(_C.TRANSFER, Timing.EOD, True, True, False, False),
}
CALCULATION_TYPE = "NET"


@dataclass(frozen=True, slots=True)
class Cashflow:
    transaction_id: str
    portfolio_id: str
    security_id: str
    transaction_type: str
    amount: Decimal
    currency: str
    classification: Classification
    timing: Timing
    is_position_flow: bool
    is_portfolio_flow: bool
    cashflow_date: date
    epoch: int = 0
    version: int = 0
    calculation_type: str = CALCULATION_TYPE

    @property
    def fence(self) -> tuple[int, int]:
        return (self.epoch, self.version)

    @property
    def is_expense(self) -> bool:
        return self.classification is Classification.EXPENSE


def cashflow_of(transaction_id: str, portfolio_id: str, security_id: str, transaction_type: str, day: date,
                gross_amount: Decimal, trade_fee: Decimal, currency: str, epoch: int = 0,
                version: int = 0) -> Cashflow | None:
    """The transaction's cash flow; None for a type the table does not list."""
    rule = RULES.get(transaction_type.upper())
    if rule is None:
        return None
    magnitude = gross_amount + trade_fee if rule.fee_added else gross_amount - trade_fee
    amount = magnitude if rule.positive else -magnitude
    return Cashflow(transaction_id, portfolio_id, security_id, transaction_type.upper(), amount, currency,
                    rule.classification, rule.timing, rule.is_position_flow, rule.is_portfolio_flow, day,
                    epoch, version)


def replaces(new: Cashflow, stored: Cashflow | None) -> bool:
    """Whether `new` replaces the transaction's stored cash flow (a duplicate does not)."""
    return stored is None or new.fence > stored.fence
