"""Values of the domain: transactions, lots, holdings, history entries, key state.

All state is immutable (frozen, slotted dataclasses); the core returns new values.
Money and quantities are `Decimal`; a base-currency amount is `None` while the FX rate
it needs is missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache

from epochflow.domain.keys import position_key

ZERO = Decimal(0)


class TxnType(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    TRANSFER_IN = "TRANSFER_IN"
    TRANSFER_OUT = "TRANSFER_OUT"
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    FEE = "FEE"
    DIVIDEND = "DIVIDEND"
    INTEREST = "INTEREST"


class CostMethod(StrEnum):
    FIFO = "FIFO"
    AVCO = "AVCO"


class KeyStatus(StrEnum):
    CURRENT = "CURRENT"
    REPROCESSING = "REPROCESSING"


class ReprocessingStatus(StrEnum):
    """What readers are told about a key."""

    CURRENT = "CURRENT"
    IN_PROGRESS = "IN_PROGRESS"  # its numbers are being rebuilt


def reprocessing_status(status: str) -> str:
    """What readers are told about a key: CURRENT, or IN_PROGRESS while it is rebuilt."""
    return (ReprocessingStatus.IN_PROGRESS if status == KeyStatus.REPROCESSING else ReprocessingStatus.CURRENT).value


class Flag(StrEnum):
    OVERSOLD = "OVERSOLD"  # sold more than was held: kept, resolved when the earlier trade arrives
    FX_MISSING = "FX_MISSING"  # base-currency figures wait for an FX rate


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: str
    portfolio_id: str
    security_id: str
    transaction_type: TxnType
    transaction_ts: datetime
    quantity: Decimal
    price: Decimal
    gross_amount: Decimal
    trade_fee: Decimal
    trade_currency: str

    @property
    def key(self) -> str:
        return position_key(self.portfolio_id, self.security_id)

    @property
    def date(self) -> date:
        return self.transaction_ts.date()

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """Order within a key: timestamp, then transaction id."""
        return (self.transaction_ts, self.transaction_id)

    def fingerprint(self) -> str:
        """Content identity: equal fingerprints mean a duplicate, different ones an amendment.
        Decimals are normalised so "10" and "10.0" are the same content."""
        parts = (
            self.transaction_id,
            self.portfolio_id,
            self.security_id,
            self.transaction_type.value,
            self.transaction_ts.isoformat(),
            *(str(v.normalize()) for v in (self.quantity, self.price, self.gross_amount, self.trade_fee)),
            self.trade_currency,
        )
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Lot:
    """An open acquisition: quantity still held and its cost (local and base)."""

    quantity: Decimal
    cost_local: Decimal
    cost_base: Decimal | None
    # the seq of the history entry that acquired it, while it is whole (None: a lot that is
    # what remains of one after a sale, or kept before lots had origins)
    origin: int | None = None


@dataclass(frozen=True, slots=True)
class Holding:
    """What a key holds after some prefix of its history."""

    quantity: Decimal = ZERO
    cost_local: Decimal = ZERO
    cost_base: Decimal | None = ZERO
    lots: tuple[Lot, ...] = ()
    held_since: date | None = None


@dataclass(frozen=True, slots=True)
class CostContext:
    """What costing a key needs besides its transactions."""

    base_currency: str
    method: CostMethod = CostMethod.FIFO


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A transaction and the position right after it."""

    txn: Transaction
    quantity: Decimal
    cost_local: Decimal
    cost_base: Decimal | None
    net_cost_local: Decimal
    net_cost: Decimal | None
    realized_local: Decimal | None
    realized_base: Decimal | None
    fx_rate: Decimal | None
    held_since: date | None
    flags: tuple[Flag, ...] = ()
    lot: Lot | None = None  # the lot this entry acquired, with its origin


@dataclass(frozen=True, slots=True)
class Bucket:
    """One ISO week of a key's history (see `week_of`), or a part of a busy one
    (`domain.history.PART`), with the holding it opened with, so a recomputation can start
    at any week without reading earlier ones.

    The opening's lots are kept short: the whole lots at its end that a history entry
    acquired are not repeated here (a key that only buys would otherwise store every lot in
    every week, quadratic in its history). `opening.lots` holds the lots before them, and
    `lots_from` names the first one by its origin: the lots of the entries from that seq up
    to this bucket follow (`domain.history` puts them back)."""

    week: str
    opening: Holding
    entries: tuple[HistoryEntry, ...] = ()
    lots_from: int | None = None


@dataclass(frozen=True, slots=True)
class TxnRef:
    """Where a transaction id lives in the key's history and what it contained."""

    fingerprint: str
    week: str  # the history bucket it is in
    # the first day its step rewrote: a re-delivery re-sends from there, so a crash between
    # the state write and the sends cannot lose rows the step changed after it
    emitted_from: date | None = None


@dataclass(frozen=True, slots=True)
class PositionState:
    """The key's position_state: epoch, watermark, status, plus what costing needs next."""

    portfolio_id: str
    security_id: str
    epoch: int = 0
    status: KeyStatus = KeyStatus.CURRENT
    watermark_date: date | None = None
    latest_snapshot_date: date | None = None
    # bumped by every reset so an advance computed before the reset cannot undo it
    generation: int = 0
    version: int = 0
    holding: Holding = field(default_factory=Holding)
    weeks: tuple[tuple[str, int], ...] = ()  # (week, entry count), in order
    txn_count: int = 0
    first_open_date: date | None = None
    last_transaction_date: date | None = None
    waiting_for: str = ""  # what base-currency figures wait for ("fx EUR/USD ...", "portfolio P1")
    fx_missing_from: date | None = None
    fx_currencies: tuple[str, ...] = ()
    # the transaction that opened the current epoch and the first date it rebuilt, so a
    # re-delivery of that transaction can re-send the whole replay
    # earliest day whose position the last step changed (days from there are valued again)
    changed_from: date | None = None
    epoch_trigger: str | None = None
    epoch_rebuilt_from: str | None = None
    # the fan-out's resets: the reference offset valuation must have read before valuing
    # the key again, and the latest reset jobs applied (a re-sent reset is recognised)
    ref_floor: int = -1
    reset_jobs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return position_key(self.portfolio_id, self.security_id)

    @property
    def effective_completed_date(self) -> date | None:
        """Later of the watermark and the latest snapshot of the current epoch."""
        dates = [d for d in (self.watermark_date, self.latest_snapshot_date) if d is not None]
        return max(dates) if dates else None


@lru_cache(maxsize=8192)
def week_of(day: date) -> str:
    """The history bucket a day belongs to: its ISO week, named by its Monday (sortable).
    A week keeps the bucket an append rewrites small, whatever the history's length.
    (Cached: every step asks for the weeks of a few days, always the same few.)"""
    return (day - timedelta(days=day.weekday())).isoformat()


def month_of(day: date) -> str:
    """The bucket of a dated series (prices, FX rates): its calendar month."""
    return f"{day.year:04d}-{day.month:02d}"
