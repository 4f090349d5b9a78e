"""Reference data each role keeps locally (portfolios, instruments, FX rates, business
date). Reference events are published to every partition, so each worker holds what its
keys need and reads it without leaving the process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from epochflow.domain.keys import fx_subject, price_currency_tag, price_subject, record_key
from epochflow.domain.model import CostContext, CostMethod, month_of
from epochflow.domain.series import SeriesMonth, add_month, latest_on_or_before, upsert_point
from epochflow.tables.store import Store


@dataclass(frozen=True, slots=True)
class Portfolio:
    portfolio_id: str
    base_currency: str
    cost_basis_method: CostMethod = CostMethod.FIFO
    open_date: date | None = None

    @property
    def ctx(self) -> CostContext:
        return CostContext(self.base_currency, self.cost_basis_method)


@dataclass(frozen=True, slots=True)
class Instrument:
    security_id: str
    currency: str


@dataclass(frozen=True, slots=True)
class Months:
    months: tuple[str, ...] = ()


class ReferenceData:
    """Typed access over three stores: entities (portfolios, instruments, business date),
    series months and series month indexes."""

    def __init__(self, portfolios: Store[Portfolio], instruments: Store[Instrument],
                 series: Store[SeriesMonth], series_index: Store[Months], scalars: Store[date],
                 tags: Store[str] | None = None) -> None:
        self.portfolios = portfolios
        self.instruments = instruments
        self.series = series
        self.series_index = series_index
        self.scalars = scalars
        self.tags = tags

    def tag(self, name: str) -> str | None:
        return self.tags.get(name) if self.tags is not None else None

    def set_tag(self, name: str, value: str) -> None:
        if self.tags is not None and self.tags.get(name) != value:
            self.tags.put(name, value)

    # -- series: prices (price|SECURITY) and FX rates (fx|FROM|TO) ------------------
    def put_point(self, name: str, day: date, value: Decimal) -> Decimal | None:
        month = month_of(day)
        bucket, previous = upsert_point(self.series.get(record_key(name, month)), day, value)
        self.series.put(record_key(name, month), bucket)
        index = self.series_index.get(name) or Months()
        months = add_month(index.months, month)
        if months != index.months:
            self.series_index.put(name, Months(months))
        return previous

    def latest(self, name: str, day: date) -> tuple[date, Decimal] | None:
        index = self.series_index.get(name)
        if index is None:
            return None
        return latest_on_or_before(index.months, lambda m: self.series.get(record_key(name, m)), day)

    def fx(self, from_currency: str, to_currency: str, day: date) -> Decimal | None:
        if from_currency == to_currency:
            return Decimal(1)
        found = self.latest(fx_subject(from_currency, to_currency), day)
        return None if found is None else found[1]

    # -- business date -------------------------------------------------------------
    def business_date(self) -> date | None:
        return self.scalars.get("business_date")

    def set_business_date(self, day: date) -> bool:
        current = self.business_date()
        if current is None or day > current:
            self.scalars.put("business_date", day)
            return True
        return False


def apply_reference_event(data: ReferenceData, event) -> bool:
    """Store one reference event; True when it changed what costing or valuation would use."""
    from epochflow.schemas.events import (
        BusinessDateEvent,
        FxRateEvent,
        InstrumentEvent,
        MarketPriceEvent,
        PortfolioEvent,
    )

    if isinstance(event, PortfolioEvent):
        new = Portfolio(event.portfolio_id, event.base_currency, event.cost_basis_method, event.open_date)
        old = data.portfolios.get(event.portfolio_id)
        data.portfolios.put(event.portfolio_id, new)
        return old is None or (old.base_currency, old.cost_basis_method) != (new.base_currency, new.cost_basis_method)
    if isinstance(event, InstrumentEvent):
        old = data.instruments.get(event.security_id)
        data.instruments.put(event.security_id, Instrument(event.security_id, event.currency))
        return old is None or old.currency != event.currency
    if isinstance(event, FxRateEvent):
        previous = data.put_point(fx_subject(event.from_currency, event.to_currency), event.rate_date, event.rate)
        return previous != event.rate
    if isinstance(event, MarketPriceEvent):
        previous = data.put_point(price_subject(event.security_id), event.price_date, event.price)
        data.set_tag(price_currency_tag(event.security_id, event.price_date), event.currency)
        return previous != event.price
    if isinstance(event, BusinessDateEvent):
        return data.set_business_date(event.date)
    raise TypeError(f"not reference data: {type(event).__name__}")
