"""Builders for the time-series tests: a SeriesBook over in-memory stores, snapshots and
cash flows of the worked example's shape."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from epochflow.domain.cashflows import Cashflow, cashflow_of
from epochflow.domain.timeseries import DayValue, SeriesBook, day_value
from epochflow.tables.store import MemoryStore

D = Decimal


def book() -> SeriesBook:
    return SeriesBook(MemoryStore("keys"), MemoryStore("key_days"), MemoryStore("days"), MemoryStore("flows"))


def value(quantity: str, cost: str, mv_local: str, mv: str | None = None, status: str = "VALUED_CURRENT") -> DayValue:
    return day_value(D(quantity), D(cost), D(mv_local), D(mv if mv is not None else mv_local), status)


def flow(tid: str, security: str, kind: str, day: date, gross: str, fee: str = "0", currency: str = "USD",
         epoch: int = 0, version: int = 0, portfolio: str = "P") -> Cashflow:
    made = cashflow_of(tid, portfolio, security, kind, day, D(gross), D(fee), currency, epoch, version)
    assert made is not None
    return made


def usd(currency: str, day: date) -> Decimal | None:
    return D(1) if currency == "USD" else {"EUR": D("1.1")}.get(currency)
