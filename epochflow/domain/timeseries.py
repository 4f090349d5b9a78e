"""Position and portfolio time series, kept incrementally per portfolio (TIMESERIES.md).

The state is a portfolio's records in four stores:

| store | key | value |
|---|---|---|
| keys | portfolio\\|security | KeyTrack: the key's current epoch and the days it has a value |
| key_days | portfolio\\|security\\|date | KeyDay: the key's snapshot of that day (current epoch) and its cash flows |
| days | portfolio\\|date | PortfolioDay: the day's aggregates over the keys, and its portfolio flows |
| flows | portfolio\\|transaction | Cashflow: each transaction's current cash flow |

Every change is applied as a delta: a key-day's old contribution to its portfolio day is
retracted and the new one added, so a correction costs what it changed, not the
portfolio's keys x days. A key's contribution is always of its current epoch: an epoch
bump (a carry-over) keeps the days before its date (relabelled, unchanged) and retracts
the rest, which the new epoch's snapshots then bring back as they are rebuilt. A snapshot
of an older epoch, a duplicate and an older version of a day (`version` orders a key's
changes within an epoch) change nothing.

`SeriesBook` records which key-days and portfolio days changed; `points()` gives their
rows (and the next day's, whose beginning-of-day figures follow), computed from the
records, never from the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Context, Decimal
from typing import Any, Protocol

from epochflow.domain.cashflows import Cashflow, Timing, replaces
from epochflow.domain.keys import position_key, record_key
from epochflow.domain.returns import ZERO, average_cost, daily_return

DAY = timedelta(days=1)
VALUED = ("VALUED_CURRENT", "VALUED_STALE")
COMPLETE, INCOMPLETE = "COMPLETE", "INCOMPLETE"
_SUM = Context(prec=80)  # sums and deltas stay exact

Amounts = tuple[tuple[str, Decimal], ...]  # by currency, sorted, no zero entries
Rate = Callable[[str, date], Decimal | None]  # (currency, day) -> units of base for one unit


@dataclass(frozen=True, slots=True)
class DayValue:
    """What the series needs of a key's snapshot of one day."""

    quantity: Decimal
    cost_basis_local: Decimal
    market_value_local: Decimal  # 0 when not valued
    market_value: Decimal  # base currency, 0 when not valued
    valued: bool


def day_value(quantity: Decimal, cost_basis_local: Decimal, market_value_local: Decimal | None,
              market_value: Decimal | None, valuation_status: str) -> DayValue:
    valued = valuation_status in VALUED
    return DayValue(quantity, cost_basis_local, (market_value_local or ZERO) if valued else ZERO,
                    (market_value or ZERO) if valued else ZERO, valued)


@dataclass(frozen=True, slots=True)
class FlowSums:
    """A key's cash flows of one day, by timing (transaction currencies, not converted)."""

    bod_position: Decimal = ZERO
    eod_position: Decimal = ZERO
    bod_portfolio: Decimal = ZERO
    eod_portfolio: Decimal = ZERO

    def plus(self, flow: Cashflow, sign: int) -> FlowSums:
        amount = flow.amount if sign > 0 else -flow.amount
        bod = flow.timing is Timing.BOD
        s = self
        if flow.is_position_flow:
            s = replace(s, bod_position=_SUM.add(s.bod_position, amount)) if bod else \
                replace(s, eod_position=_SUM.add(s.eod_position, amount))
        if flow.is_portfolio_flow:
            s = replace(s, bod_portfolio=_SUM.add(s.bod_portfolio, amount)) if bod else \
                replace(s, eod_portfolio=_SUM.add(s.eod_portfolio, amount))
        return s


NO_FLOWS = FlowSums()


@dataclass(frozen=True, slots=True)
class KeyTrack:
    epoch: int = 0
    first_day: date | None = None  # the days that may hold a value: first_day..last_day
    last_day: date | None = None

    def spanning(self, day: date) -> KeyTrack:
        first = day if self.first_day is None else min(self.first_day, day)
        last = day if self.last_day is None else max(self.last_day, day)
        return replace(self, first_day=first, last_day=last)


@dataclass(frozen=True, slots=True)
class KeyDay:
    epoch: int = -1  # the epoch of `value`, and of `version`
    version: int = -1
    value: DayValue | None = None
    flows: FlowSums = NO_FLOWS
    flow_count: int = 0

    @property
    def empty(self) -> bool:
        """Nothing to keep: no value, no flows, and no version that a late duplicate must
        be fenced by (a day with no position keeps its version)."""
        return self.value is None and self.flow_count == 0 and self.epoch < 0


def _add(amounts: Amounts, currency: str, amount: Decimal) -> Amounts:
    found = dict(amounts)
    total = _SUM.add(found.get(currency, ZERO), amount)
    if total == 0:
        found.pop(currency, None)
    else:
        found[currency] = total
    return tuple(sorted(found.items()))


@dataclass(frozen=True, slots=True)
class PortfolioDay:
    market_value: Decimal = ZERO  # base currency
    keys_held: int = 0  # keys with a snapshot that day
    keys_unvalued: int = 0
    flow_count: int = 0  # portfolio cash flows of the day
    bod_flows: Amounts = ()
    eod_flows: Amounts = ()
    fees: Amounts = ()  # absolute amounts of the EXPENSE flows

    @property
    def empty(self) -> bool:
        return self.keys_held == 0 and self.flow_count == 0 and self.market_value == 0

    def with_value(self, value: DayValue, sign: int) -> PortfolioDay:
        return replace(self, market_value=_SUM.add(self.market_value, value.market_value if sign > 0 else -value.market_value),
                       keys_held=self.keys_held + sign, keys_unvalued=self.keys_unvalued + (0 if value.valued else sign))

    def with_flow(self, flow: Cashflow, sign: int) -> PortfolioDay:
        amount = flow.amount if sign > 0 else -flow.amount
        d = replace(self, flow_count=self.flow_count + sign)
        if flow.timing is Timing.BOD:
            d = replace(d, bod_flows=_add(d.bod_flows, flow.currency, amount))
        else:
            d = replace(d, eod_flows=_add(d.eod_flows, flow.currency, amount))
        if flow.is_expense:
            d = replace(d, fees=_add(d.fees, flow.currency, abs(flow.amount) if sign > 0 else -abs(flow.amount)))
        return d


@dataclass(frozen=True, slots=True)
class PositionPoint:
    """A key's row of one day; `present` False: the key has no value that day (any more)."""

    portfolio_id: str
    security_id: str
    day: date
    epoch: int
    present: bool
    bod_market_value: Decimal = ZERO
    eod_market_value: Decimal = ZERO
    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    bod_cashflow_position: Decimal = ZERO
    eod_cashflow_position: Decimal = ZERO
    bod_cashflow_portfolio: Decimal = ZERO
    eod_cashflow_portfolio: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class PortfolioPoint:
    """A portfolio's row of one day, in its base currency; `present` False: nothing that day."""

    portfolio_id: str
    day: date
    present: bool
    bod_market_value: Decimal = ZERO
    eod_market_value: Decimal = ZERO
    bod_cashflow: Decimal = ZERO
    eod_cashflow: Decimal = ZERO
    fees: Decimal = ZERO
    daily_return: Decimal | None = None
    valuation_status: str = COMPLETE
    keys_unvalued: int = 0


def _in_base(amounts: Amounts, day: date, rate: Rate) -> Decimal | None:
    total = ZERO
    for currency, amount in amounts:
        r = rate(currency, day)
        if r is None:
            return None
        total = _SUM.add(total, _SUM.multiply(amount, r))
    return total


def portfolio_point(portfolio_id: str, day: date, today: PortfolioDay | None, yesterday: PortfolioDay | None,
                    rate: Rate) -> PortfolioPoint:
    """The day's row from its aggregates and the previous day's (TIMESERIES.md). A flow whose
    rate to the base currency is missing makes the day INCOMPLETE, its return null."""
    if today is None or today.empty:
        return PortfolioPoint(portfolio_id, day, False)
    bod_mv = yesterday.market_value if yesterday is not None else ZERO
    bod_cf, eod_cf, fees = (_in_base(a, day, rate) for a in (today.bod_flows, today.eod_flows, today.fees))
    if bod_cf is None or eod_cf is None or fees is None:
        return PortfolioPoint(portfolio_id, day, True, bod_mv, today.market_value, bod_cf or ZERO, eod_cf or ZERO,
                              fees or ZERO, None, INCOMPLETE, today.keys_unvalued)
    return PortfolioPoint(
        portfolio_id, day, True, bod_mv, today.market_value, bod_cf, eod_cf, fees,
        daily_return(bod_mv, bod_cf, today.market_value, eod_cf),
        COMPLETE if today.keys_unvalued == 0 else INCOMPLETE, today.keys_unvalued,
    )


def position_point(portfolio_id: str, security_id: str, day: date, epoch: int, today: KeyDay | None,
                   yesterday: KeyDay | None) -> PositionPoint:
    if today is None or today.value is None or today.epoch != epoch:
        return PositionPoint(portfolio_id, security_id, day, epoch, False)
    v, f = today.value, today.flows
    bod = yesterday.value.market_value_local if yesterday and yesterday.value and yesterday.epoch == epoch else ZERO
    return PositionPoint(portfolio_id, security_id, day, epoch, True, bod, v.market_value_local, v.quantity,
                         average_cost(v.cost_basis_local, v.quantity), f.bod_position, f.eod_position,
                         f.bod_portfolio, f.eod_portfolio)


class Store(Protocol):  # epochflow.tables.store's protocol, restated (the core imports no tables)
    def get(self, key: str) -> Any: ...
    def put(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


def day_key(portfolio_id: str, day: date) -> str:
    return record_key(portfolio_id, day.isoformat())


@dataclass
class SeriesBook:
    """A partition's series over its stores; apply changes, then take `points()`."""

    keys: Store
    key_days: Store
    days: Store
    flows: Store
    changed_key_days: set[tuple[str, str, date]] = field(default_factory=set)
    changed_days: set[tuple[str, date]] = field(default_factory=set)

    # -- reads -------------------------------------------------------------------------
    def track(self, portfolio_id: str, security_id: str) -> KeyTrack:
        return self.keys.get(position_key(portfolio_id, security_id)) or KeyTrack()

    def key_day(self, portfolio_id: str, security_id: str, day: date) -> KeyDay | None:
        return self.key_days.get(record_key(position_key(portfolio_id, security_id), day.isoformat()))

    def day(self, portfolio_id: str, day: date) -> PortfolioDay | None:
        return self.days.get(day_key(portfolio_id, day))

    # -- writes ------------------------------------------------------------------------
    def _put_key_day(self, portfolio_id: str, security_id: str, day: date, kd: KeyDay) -> None:
        k = record_key(position_key(portfolio_id, security_id), day.isoformat())
        if kd.empty:
            self.key_days.delete(k)
        else:
            self.key_days.put(k, kd)
        self.changed_key_days.add((portfolio_id, security_id, day))

    def _change_day(self, portfolio_id: str, day: date, change: Callable[[PortfolioDay], PortfolioDay]) -> None:
        k = day_key(portfolio_id, day)
        d = change(self.days.get(k) or PortfolioDay())
        if d.empty:
            self.days.delete(k)
        else:
            self.days.put(k, d)
        self.changed_days.add((portfolio_id, day))

    # -- changes -----------------------------------------------------------------------
    def on_snapshot(self, portfolio_id: str, security_id: str, day: date, epoch: int, version: int,
                    value: DayValue | None) -> bool:
        """A key's snapshot of a day in `epoch` (None: no position that day). False: stale
        or already applied."""
        track = self.track(portfolio_id, security_id)
        if epoch < track.epoch:
            return False
        if epoch > track.epoch:  # a new epoch without its carry-over: nothing carried
            self.on_carry(portfolio_id, security_id, track.epoch, epoch, track.first_day or day)
            track = self.track(portfolio_id, security_id)
        kd = self.key_day(portfolio_id, security_id, day) or KeyDay()
        if kd.epoch == epoch and version <= kd.version:
            return False
        old = kd.value if kd.epoch == epoch else None
        if old != value:
            def swap(d: PortfolioDay) -> PortfolioDay:
                if old is not None:
                    d = d.with_value(old, -1)
                return d.with_value(value, +1) if value is not None else d
            self._change_day(portfolio_id, day, swap)
        self._put_key_day(portfolio_id, security_id, day, replace(kd, epoch=epoch, version=version, value=value))
        if value is not None:
            self.keys.put(position_key(portfolio_id, security_id), track.spanning(day))
        return True

    def on_carry(self, portfolio_id: str, security_id: str, from_epoch: int, to_epoch: int, before: date) -> bool:
        """The key opened `to_epoch`: its days before `before` are kept (if they are of
        `from_epoch`, the epoch it leaves), every other day's value is retracted."""
        track = self.track(portfolio_id, security_id)
        if to_epoch <= track.epoch:
            return False
        keep = from_epoch == track.epoch
        day = track.first_day
        while day is not None and track.last_day is not None and day <= track.last_day:
            kd = self.key_day(portfolio_id, security_id, day)
            if kd is not None and kd.value is not None:
                if keep and day < before and kd.epoch == from_epoch:
                    self._put_key_day(portfolio_id, security_id, day, replace(kd, epoch=to_epoch))
                else:
                    value = kd.value
                    self._change_day(portfolio_id, day, lambda d, v=value: d.with_value(v, -1))
                    self._put_key_day(portfolio_id, security_id, day, replace(kd, epoch=-1, version=-1, value=None))
            day += DAY
        self.keys.put(position_key(portfolio_id, security_id), replace(track, epoch=to_epoch))
        return True

    def on_cashflow(self, flow: Cashflow) -> bool:
        """A transaction's cash flow; it replaces the transaction's previous one (an
        amendment), unless it is that one again or an older version."""
        k = record_key(flow.portfolio_id, flow.transaction_id)
        stored = self.flows.get(k)
        if not replaces(flow, stored):
            return False
        if stored is not None:
            self._apply_flow(stored, -1)
        self._apply_flow(flow, +1)
        self.flows.put(k, flow)
        return True

    def _apply_flow(self, flow: Cashflow, sign: int) -> None:
        kd = self.key_day(flow.portfolio_id, flow.security_id, flow.cashflow_date) or KeyDay()
        self._put_key_day(flow.portfolio_id, flow.security_id, flow.cashflow_date,
                          replace(kd, flows=kd.flows.plus(flow, sign), flow_count=kd.flow_count + sign))
        if flow.is_portfolio_flow:
            self._change_day(flow.portfolio_id, flow.cashflow_date, lambda d: d.with_flow(flow, sign))

    # -- outputs -----------------------------------------------------------------------
    def points(self, rate_for: Callable[[str], Rate]) -> tuple[list[PositionPoint], list[PortfolioPoint]]:
        """The rows of every key-day and portfolio day changed since the last call, and of
        the day after each (its beginning of day follows); `rate_for(portfolio_id)` converts
        to that portfolio's base currency."""
        changed_keys, changed_days = self.changed_key_days, self.changed_days
        self.changed_key_days, self.changed_days = set(), set()
        positions = []
        for p, s, d in sorted(changed_keys | {(p, s, d + DAY) for p, s, d in changed_keys}):
            epoch = self.track(p, s).epoch
            point = position_point(p, s, d, epoch, self.key_day(p, s, d), self.key_day(p, s, d - DAY))
            if point.present or (p, s, d) in changed_keys:  # the next day only when it has a row
                positions.append(point)
        portfolios = []
        for p, d in sorted(changed_days | {(p, d + DAY) for p, d in changed_days}):
            point = portfolio_point(p, d, self.day(p, d), self.day(p, d - DAY), rate_for(p))
            if point.present or (p, d) in changed_days:
                portfolios.append(point)
        return positions, portfolios


def series_of(portfolio_id: str, values: Iterable[tuple[str, date, DayValue]], flows: Iterable[Cashflow],
              rate: Rate) -> dict[date, PortfolioPoint]:
    """The portfolio's series summed from scratch: `values` are each key's current-epoch
    snapshots (security, day, value), `flows` each transaction's current cash flow."""
    days: dict[date, PortfolioDay] = {}
    for _security, day, value in values:
        days[day] = days.get(day, PortfolioDay()).with_value(value, +1)
    for flow in flows:
        if flow.is_portfolio_flow:
            days[flow.cashflow_date] = days.get(flow.cashflow_date, PortfolioDay()).with_flow(flow, +1)
    out = {}
    for day in sorted(days):
        point = portfolio_point(portfolio_id, day, days[day], days.get(day - DAY), rate)
        if point.present:
            out[day] = point
    return out
