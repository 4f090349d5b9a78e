"""Why a day's figures changed: the versions a read of one key's snapshot of one day
returned over system time, each with its cause and what it changed.

What a read of a key's day shows at a system time is the snapshot of that day in the
epoch the key's state had then (none while a new epoch has not valued the day again).
Its versions follow from the versions of the key's state and of that day's snapshots
(`sinks.versions`); each version's cause follows from what moved:

* a new epoch: the transaction that opened it (the state's `epoch_trigger`), back-dated,
  or an amendment when that transaction had been booked differently before;
* the same epoch, another quantity or cost: a transaction of the day or before it that
  did not need a new epoch (booked on the key's latest day, or an amendment of one);
* the same epoch and holding, another price or FX rate: a correction, or the arrival of
  data the day was waiting for when it had none;
* the first figures the day ever had: its first valuation.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

FIGURES = ("quantity", "cost_basis", "cost_basis_local", "market_price", "market_value", "market_value_local",
           "unrealized_gain_loss", "unrealized_gain_loss_local", "fx_rate", "valuation_status", "price_date")
HOLDING = ("quantity", "cost_basis_local")  # in the instrument's currency: an FX rate moves only cost_basis


@dataclass(frozen=True, slots=True)
class Version:
    """A row's version: current from `since` until `until` (None: still current)."""

    since: datetime
    until: datetime | None
    row: Mapping[str, Any]

    def current_at(self, at: datetime) -> bool:
        return self.since <= at and (self.until is None or at < self.until)


@dataclass(frozen=True, slots=True)
class Cause:
    kind: str  # first_valuation, backdated_transaction, amendment, transaction, price_correction,
    #            fx_correction, missing_data_arrived, revaluation
    description: str
    transaction_id: str | None = None
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One version of the day's figures (None: the day is not valued in `epoch` yet)."""

    system_time: datetime
    epoch: int
    figures: Mapping[str, Any] | None
    cause: Cause
    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (before, after)


def day_changes(day: date, states: Sequence[Version], snapshots: Sequence[Version],
                transactions: Sequence[Version], position_dates: Mapping[str, date] | None = None) -> list[Change]:
    """The day's versions, oldest first. `states`: the key's state versions; `snapshots`:
    its snapshot versions of `day`, every epoch; `transactions`: the versions of the key's
    transactions (what causes are named from), and `position_dates` the day each one
    counts on (its history row's: the date as booked, in its own offset)."""
    booked = _Booked(transactions, position_dates or {})
    states = sorted(states, key=lambda v: v.since)  # one row's versions: they never overlap
    state_since = [v.since for v in states]
    times = sorted({v.since for v in states} | {v.since for v in snapshots})
    changes: list[Change] = []
    shown: tuple[int, Mapping[str, Any] | None] | None = None  # what reads showed last (epoch, figures)
    last_figures: tuple[int, Mapping[str, Any]] | None = None  # the last figures they showed
    last_at: datetime | None = None
    for at in times:
        state = _at(states, state_since, at)
        if state is None:
            continue
        epoch = state.row["epoch"]
        snapshot = next((v for v in snapshots if v.row["epoch"] == epoch and v.current_at(at)), None)
        figures = None if snapshot is None else {name: snapshot.row[name] for name in FIGURES}
        if last_figures is None:
            if figures is None:
                continue  # not valued yet at all: nothing was shown for the day
            cause = Cause("first_valuation", f"{day} valued for the first time", epoch=epoch)
        elif figures is None:
            if last_figures[0] == epoch or shown == (epoch, None):
                continue  # momentarily unvalued in the same epoch, or already shown
            cause = _epoch_cause(state, booked, at)
            cause = replace(cause, description=f"{cause.description}; {day} not valued again yet")
        elif figures == last_figures[1] and shown is not None and shown[1] is not None:
            shown, last_figures = (epoch, figures), (epoch, figures)
            continue  # the same figures (a new epoch that carried the day over, a row written again)
        elif last_figures[0] != epoch:
            cause = _epoch_cause(state, booked, at)
        else:
            cause = _revaluation_cause(day, epoch, last_figures[1], figures, last_at, at, booked)
        changes.append(Change(at, epoch, figures, cause, _differences(last_figures and last_figures[1], figures)))
        shown, last_at = (epoch, figures), at
        if figures is not None:
            last_figures = (epoch, figures)
    return changes


def _at(versions: Sequence[Version], since: list[datetime], at: datetime) -> Version | None:
    """The version current at `at` of a row whose versions are sorted by `since`."""
    i = bisect.bisect_right(since, at) - 1
    return versions[i] if i >= 0 and versions[i].current_at(at) else None


class _Booked:
    """The key's transactions as booked over time: their versions, and the day each counts on."""

    # what a transaction event says (its costs can be re-sent different without an amendment)
    FIELDS = ("transaction_type", "transaction_date", "quantity", "price", "trade_fee", "trade_currency")

    def __init__(self, versions: Sequence[Version], days: Mapping[str, date]) -> None:
        self.versions = sorted(versions, key=lambda v: v.since)
        self.days = days

    def day_of(self, row: Mapping[str, Any]) -> date:
        return self.days.get(row["transaction_id"]) or row["transaction_date"].date()

    def _booking(self, row: Mapping[str, Any]) -> tuple:
        return tuple(row[name] for name in self.FIELDS)

    def amended(self, transaction_id: str, at: datetime) -> bool:
        """Whether the transaction, as booked by `at`, had been booked differently before."""
        return len({self._booking(v.row) for v in self.versions
                    if v.row["transaction_id"] == transaction_id and v.since <= at}) > 1

    def newly_booked(self, after: datetime | None, at: datetime, day: date) -> list[Version]:
        """Versions stored in (after, at] that booked something new (a transaction first
        seen, or booked differently) counting on `day` or before."""
        seen: dict[str, tuple] = {}
        found = []
        for v in self.versions:
            if v.since > at:
                break
            tid, booking = v.row["transaction_id"], self._booking(v.row)
            if (after is None or v.since > after) and seen.get(tid) != booking and self.day_of(v.row) <= day:
                found.append(v)
            seen[tid] = booking
        return found

    def describe(self, transaction_id: str, at: datetime) -> str:
        """`BUY T9 of 25 on 2024-01-03`, from the transaction's version current at `at` (or
        the first one after it)."""
        versions = [v for v in self.versions if v.row["transaction_id"] == transaction_id]
        if not versions:
            return f"transaction {transaction_id}"
        seen = [v for v in versions if v.since <= at]
        row = (seen[-1] if seen else versions[0]).row
        return f"{row['transaction_type']} {transaction_id} of {row['quantity']} on {self.day_of(row)}"


def _epoch_cause(state: Version, booked: _Booked, at: datetime) -> Cause:
    epoch = state.row["epoch"]
    trigger = state.row.get("epoch_trigger")
    rebuilt_from = state.row.get("epoch_rebuilt_from")
    if not trigger:
        return Cause("revaluation", f"epoch {epoch} opened", epoch=epoch)
    described = booked.describe(trigger, at)
    from_day = f", history rebuilt from {rebuilt_from}" if rebuilt_from else ""
    if booked.amended(trigger, at):
        return Cause("amendment", f"amendment of {described} opened epoch {epoch}{from_day}", trigger, epoch)
    return Cause("backdated_transaction", f"back-dated {described} opened epoch {epoch}{from_day}", trigger, epoch)


def _revaluation_cause(day: date, epoch: int, before: Mapping[str, Any], after: Mapping[str, Any],
                       after_time: datetime | None, at: datetime, booked: _Booked) -> Cause:
    if any(before[name] != after[name] for name in HOLDING):
        new = booked.newly_booked(after_time, at, day)
        if new:
            tid = new[-1].row["transaction_id"]
            amended = booked.amended(tid, at)
            what = "amendment of " if amended else ""
            return Cause("amendment" if amended else "transaction",
                         f"{what}{booked.describe(tid, at)} changed the holding", tid, epoch)
        return Cause("transaction", "a transaction changed the holding", epoch=epoch)
    if before["market_price"] != after["market_price"] or before["price_date"] != after["price_date"]:
        if before["market_price"] is None:
            return Cause("missing_data_arrived", f"a price for {day} arrived: {after['market_price']} "
                         f"of {after['price_date']}", epoch=epoch)
        return Cause("price_correction", f"price corrected from {before['market_price']} of {before['price_date']} "
                     f"to {after['market_price']} of {after['price_date']}", epoch=epoch)
    if before["fx_rate"] != after["fx_rate"] or before["cost_basis"] != after["cost_basis"]:
        # the rate of the day (market value in base) or of a trade (cost in base)
        if before["fx_rate"] is None or (before["cost_basis"] is None and after["cost_basis"] is not None):
            return Cause("missing_data_arrived", f"an FX rate arrived: fx_rate {after['fx_rate']}, base cost "
                         f"{after['cost_basis']}", epoch=epoch)
        return Cause("fx_correction", f"FX rate corrected: fx_rate {before['fx_rate']} -> {after['fx_rate']}, "
                     f"base cost {before['cost_basis']} -> {after['cost_basis']}", epoch=epoch)
    return Cause("revaluation", f"{day} valued again ({before['valuation_status']} -> {after['valuation_status']})",
                 epoch=epoch)


def _differences(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    old = before or {}
    new = after or {}
    return {name: (old.get(name), new.get(name)) for name in FIGURES if old.get(name) != new.get(name)}
