"""The cost engine: one transaction applied to a holding (FIFO or average cost).

Local = trade currency, base = portfolio base currency. Base amounts use the FX rate of the
transaction's own date; lots keep their own base cost, so a SELL's base cost of goods sold
is at the lots' rates. A base amount is `None` when the rate it needs is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

from epochflow.domain.model import (
    ZERO,
    CostContext,
    CostMethod,
    Flag,
    HistoryEntry,
    Holding,
    Lot,
    Transaction,
    TxnType,
)

# (from_currency, to_currency, day) -> latest rate on or before day, or None
FxLookup = Callable[[str, str, date], Decimal | None]

_ACQUIRE = (TxnType.BUY, TxnType.TRANSFER_IN, TxnType.DEPOSIT)
_DISPOSE_AT_LOT_COST = (TxnType.SELL, TxnType.TRANSFER_OUT)
_DISPOSE_AT_GROSS = (TxnType.WITHDRAWAL, TxnType.FEE)


def _times(amount: Decimal, rate: Decimal | None) -> Decimal | None:
    return None if rate is None else amount * rate


def _plus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def _minus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a - b


def rate_to_base(fx: FxLookup, currency: str, ctx: CostContext, day: date) -> Decimal | None:
    if currency == ctx.base_currency:
        return Decimal(1)
    return fx(currency, ctx.base_currency, day)


def _take_fifo(lots: tuple[Lot, ...], quantity: Decimal) -> tuple[tuple[Lot, ...], Decimal, Decimal | None, Decimal]:
    """Remove `quantity` from the oldest lots. Returns (remaining lots, cost local, cost base,
    quantity that could not be covered)."""
    remaining: list[Lot] = []
    need = quantity
    cost_local = ZERO
    cost_base: Decimal | None = ZERO
    for i, lot in enumerate(lots):
        if need <= 0:
            remaining.extend(lots[i:])
            break
        if lot.quantity <= need:
            # a whole lot leaves at its full cost: no division, no rounding
            cost_local += lot.cost_local
            cost_base = _plus(cost_base, lot.cost_base)
            need -= lot.quantity
        else:
            part_local = lot.cost_local * need / lot.quantity
            part_base = None if lot.cost_base is None else lot.cost_base * need / lot.quantity
            cost_local += part_local
            cost_base = _plus(cost_base, part_base)
            remaining.append(Lot(lot.quantity - need, lot.cost_local - part_local, _minus(lot.cost_base, part_base)))
            need = ZERO
    return tuple(remaining), cost_local, cost_base, max(need, ZERO)


def _take_average(holding: Holding, quantity: Decimal) -> tuple[tuple[Lot, ...], Decimal, Decimal | None, Decimal]:
    held = holding.quantity
    if held <= 0:
        return (), ZERO, ZERO, quantity
    take = min(quantity, held)
    if take == held:
        cost_local, cost_base = holding.cost_local, holding.cost_base
        rest: tuple[Lot, ...] = ()
    else:
        cost_local = holding.cost_local * take / held
        cost_base = None if holding.cost_base is None else holding.cost_base * take / held
        rest = (Lot(held - take, holding.cost_local - cost_local, _minus(holding.cost_base, cost_base)),)
    return rest, cost_local, cost_base, quantity - take


def _take(holding: Holding, quantity: Decimal, method: CostMethod):
    if method is CostMethod.AVCO:
        return _take_average(holding, quantity)
    return _take_fifo(holding.lots, quantity)


def _acquired(holding: Holding, quantity: Decimal, cost_local: Decimal, cost_base: Decimal | None, day: date,
              origin: int | None) -> tuple[Holding, Decimal, Decimal | None]:
    """Add an acquisition; when the key was short (an oversold SELL waiting for its earlier
    trade), the acquisition first covers the short, and only the rest becomes a lot."""
    if holding.quantity < 0:
        covered = min(quantity, -holding.quantity)
        left = quantity - covered
        if left <= 0:
            return Holding(holding.quantity + quantity, ZERO, ZERO, (), None), ZERO, ZERO
        cost_local = cost_local * left / quantity
        cost_base = None if cost_base is None else cost_base * left / quantity
        quantity = left
        holding = Holding()
    held_since = holding.held_since if holding.quantity > 0 else day
    lots = holding.lots + (Lot(quantity, cost_local, cost_base, origin),)
    new = Holding(
        holding.quantity + quantity,
        holding.cost_local + cost_local,
        _plus(holding.cost_base, cost_base),
        lots,
        held_since,
    )
    return new, cost_local, cost_base


def _closed_if_flat(holding: Holding) -> Holding:
    """A position that returns to zero resets its cost; a reopened one starts fresh."""
    if holding.quantity == 0:
        return Holding()
    return holding


def cost_transaction(holding: Holding, txn: Transaction, ctx: CostContext, fx: FxLookup,
                     origin: int | None = None) -> tuple[Holding, HistoryEntry]:
    """Apply one transaction; return the new holding and the history entry for it. With an
    `origin` (the entry's seq in the key's history), a lot it acquires carries it, and so
    does the entry (`HistoryEntry.lot`)."""
    kind = txn.transaction_type
    day = txn.date
    rate = rate_to_base(fx, txn.trade_currency, ctx, day)
    flags: list[Flag] = []
    realized_local: Decimal | None = None
    realized_base: Decimal | None = None

    if kind in _ACQUIRE:
        if kind is TxnType.BUY:
            quantity, cost = txn.quantity, txn.gross_amount + txn.trade_fee
        elif kind is TxnType.TRANSFER_IN:
            quantity, cost = txn.quantity, txn.gross_amount
        else:  # DEPOSIT: cash, quantity is the amount
            quantity, cost = txn.gross_amount, txn.gross_amount
        new, net_local, net_base = _acquired(holding, quantity, cost, _times(cost, rate), day, origin)
        if kind is TxnType.BUY:
            realized_local, realized_base = ZERO, ZERO
    elif kind in _DISPOSE_AT_LOT_COST:
        quantity = txn.quantity
        lots, cogs_local, cogs_base, uncovered = _take(holding, quantity, ctx.method)
        if uncovered > 0:
            flags.append(Flag.OVERSOLD)
        new_quantity = holding.quantity - quantity
        new = Holding(
            new_quantity,
            holding.cost_local - cogs_local,
            _minus(holding.cost_base, cogs_base),
            lots,
            holding.held_since,
        )
        if new_quantity < 0:
            new = Holding(new_quantity, ZERO, ZERO, (), None)
        net_local, net_base = -cogs_local, None if cogs_base is None else -cogs_base
        if kind is TxnType.SELL and uncovered == 0:
            proceeds = txn.gross_amount - txn.trade_fee
            realized_local = proceeds - cogs_local
            realized_base = _minus(_times(proceeds, rate), cogs_base)
    elif kind in _DISPOSE_AT_GROSS:
        amount = txn.gross_amount
        lots, _, _, _ = _take(holding, amount, ctx.method)
        amount_base = _times(amount, rate)
        new = Holding(
            holding.quantity - amount,
            holding.cost_local - amount,
            _minus(holding.cost_base, amount_base),
            lots,
            holding.held_since,
        )
        net_local, net_base = -amount, None if amount_base is None else -amount_base
    else:  # DIVIDEND, INTEREST: income, the position is unchanged
        new = holding
        net_local, net_base = ZERO, ZERO

    new = _closed_if_flat(new)
    if new.cost_base is None or (net_base is None) or (kind is TxnType.SELL and realized_base is None and not flags):
        flags.append(Flag.FX_MISSING)
    entry = HistoryEntry(
        txn=txn,
        quantity=new.quantity,
        cost_local=new.cost_local,
        cost_base=new.cost_base,
        net_cost_local=net_local,
        net_cost=net_base,
        realized_local=realized_local,
        realized_base=realized_base,
        fx_rate=rate,
        held_since=new.held_since,
        flags=tuple(flags),
        lot=new.lots[-1] if origin is not None and kind in _ACQUIRE and new.lots else None,
    )
    return new, entry
