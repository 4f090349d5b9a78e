"""Builders for the broker-free domain tests: transactions, FX lookups, a pure key harness
over the positions core, and the positions handler over in-memory stores.

Imported by the test modules beside it (`from factories import ...`); `conftest.py` wraps
the common ones as factory fixtures.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal

from epochflow.agents.positions_handler import PositionsHandler
from epochflow.domain.cost import FxLookup, cost_transaction
from epochflow.domain.model import (
    Bucket,
    CostContext,
    CostMethod,
    HistoryEntry,
    Holding,
    PositionState,
    Transaction,
    TxnRef,
    TxnType,
)
from epochflow.domain.positions import (
    Reference,
    Step,
    apply_advance,
    apply_reference_change,
    apply_reset,
    apply_transaction,
)
from epochflow.schemas.events import FxRateEvent, PortfolioEvent, TransactionEvent
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import MemoryStore

D = Decimal
PORTFOLIO = "P1"
SECURITY = "S1"
BASE = "USD"
# the public dual-currency case's EUR->USD rates, plus one later point
DUAL_RATES = {"08-10": "1.10", "08-15": "1.20", "08-20": "1.25"}


def day(text: str) -> date:
    """'08-10' -> 2025-08-10; a full ISO date is taken as it is."""
    return date.fromisoformat(text if len(text) == 10 else f"2025-{text}")


def at(when: str | date, hour: int = 10, minute: int = 0) -> datetime:
    d = when if isinstance(when, date) else day(when)
    return datetime.combine(d, time(hour, minute), tzinfo=UTC)


def txn(
    kind: TxnType | str,
    quantity: str | int | Decimal = 0,
    price: str | int | Decimal = 0,
    on: str | date = "08-01",
    *,
    id: str | None = None,
    fee: str | int | Decimal = 0,
    gross: str | int | Decimal | None = None,
    currency: str = BASE,
    portfolio: str = PORTFOLIO,
    security: str = SECURITY,
    hour: int = 10,
    minute: int = 0,
) -> Transaction:
    """A transaction; gross defaults to quantity x price."""
    kind = TxnType(kind)
    q, p = D(str(quantity)), D(str(price))
    ts = at(on, hour, minute)
    return Transaction(
        transaction_id=id or f"{kind.value}-{ts:%m%d%H%M}-{q}",
        portfolio_id=portfolio,
        security_id=security,
        transaction_type=kind,
        transaction_ts=ts,
        quantity=q,
        price=p,
        gross_amount=q * p if gross is None else D(str(gross)),
        trade_fee=D(str(fee)),
        trade_currency=currency,
    )


def event_of(t: Transaction) -> TransactionEvent:
    return TransactionEvent(
        transaction_id=t.transaction_id,
        portfolio_id=t.portfolio_id,
        security_id=t.security_id,
        transaction_type=t.transaction_type,
        transaction_date=t.transaction_ts,
        quantity=t.quantity,
        price=t.price,
        gross_amount=t.gross_amount,
        trade_fee=t.trade_fee,
        trade_currency=t.trade_currency,
    )


def fx_table(rates: Mapping[tuple[str, str], Mapping[str | date, str | Decimal]] | None = None) -> FxLookup:
    """An FX lookup with the domain's rule: latest rate on or before the day."""
    series: dict[tuple[str, str], list[tuple[date, Decimal]]] = {}
    for pair, points in (rates or {}).items():
        series[pair] = sorted(((d if isinstance(d, date) else day(d)), D(str(v))) for d, v in points.items())

    def lookup(from_currency: str, to_currency: str, on: date) -> Decimal | None:
        if from_currency == to_currency:
            return D(1)
        points = series.get((from_currency, to_currency), [])
        i = bisect.bisect_right([d for d, _ in points], on) - 1
        return points[i][1] if i >= 0 else None

    return lookup


def eur_usd(points: Mapping[str, str]) -> FxLookup:
    return fx_table({("EUR", "USD"): points})


def ctx(method: CostMethod | str = CostMethod.FIFO, base: str = BASE) -> CostContext:
    return CostContext(base, CostMethod(method))


def fold(txns: Iterable[Transaction], context: CostContext, fx: FxLookup,
         start: Holding | None = None) -> tuple[Holding, list[HistoryEntry]]:
    """Cost transactions in the order given (the oracle for everything else), each entry's
    origin its place in that order, as a key's history numbers them."""
    holding = start or Holding()
    entries: list[HistoryEntry] = []
    for t in txns:
        holding, entry = cost_transaction(holding, t, context, fx, origin=len(entries))
        entries.append(entry)
    return holding, entries


def in_order(txns: Iterable[Transaction]) -> list[Transaction]:
    return sorted(txns, key=lambda t: t.sort_key)


# ---- a pure harness over the positions core -------------------------------------------


@dataclass
class KeyHarness:
    """One key's state, buckets and transaction refs, driven through the pure `apply_*`
    functions and committed the way the handler commits a step."""

    reference: Reference
    state: PositionState = field(default_factory=lambda: PositionState(PORTFOLIO, SECURITY))
    buckets: dict[str, Bucket] = field(default_factory=dict)
    refs: dict[str, TxnRef] = field(default_factory=dict)

    def load(self, week: str) -> Bucket | None:
        return self.buckets.get(week)

    def commit(self, step: Step) -> Step:
        if step.changed:
            self.state = step.state
            for bucket in step.buckets:
                if bucket.entries:
                    self.buckets[bucket.week] = bucket
                else:
                    self.buckets.pop(bucket.week, None)
            for transaction_id, ref in step.refs:
                self.refs[transaction_id] = ref
        return step

    def send(self, *txns: Transaction) -> Step:
        step = None
        for t in txns:
            step = self.commit(apply_transaction(self.state, t, self.refs.get(t.transaction_id), self.load, self.reference))
        assert step is not None
        return step

    def advance(self, to_date: date, *, epoch: int | None = None, generation: int | None = None,
                snapshot: date | None = None, business_date: date | None = None) -> Step:
        return self.commit(apply_advance(
            self.state,
            self.state.epoch if epoch is None else epoch,
            self.state.generation if generation is None else generation,
            to_date,
            snapshot,
            business_date,
        ))

    def reset(self, to_date: date, *, epoch: int | None = None) -> Step:
        return self.commit(apply_reset(self.state, self.state.epoch if epoch is None else epoch, to_date))

    def reference_changed(self, since: date, reference: Reference | None = None) -> Step:
        if reference is not None:
            self.reference = reference
        return self.commit(apply_reference_change(self.state, since, self.load, self.reference))

    def entries(self) -> list[HistoryEntry]:
        return [e for week, _ in self.state.weeks for e in self.buckets[week].entries]

    def entry(self, transaction_id: str) -> HistoryEntry:
        return next(e for e in self.entries() if e.txn.transaction_id == transaction_id)


def reference(method: CostMethod | str = CostMethod.FIFO, fx: FxLookup | None = None, base: str = BASE) -> Reference:
    return Reference(ctx=ctx(method, base), fx=fx or fx_table())


def harness(method: CostMethod | str = CostMethod.FIFO, fx: FxLookup | None = None, **state) -> KeyHarness:
    h = KeyHarness(reference(method, fx))
    if state:
        h.state = replace(h.state, **state)
    return h


# ---- the positions handler over in-memory stores --------------------------------------


def memory_reference() -> ReferenceData:
    return ReferenceData(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore())


def memory_handler() -> PositionsHandler:
    return PositionsHandler(MemoryStore(), MemoryStore(), MemoryStore(), MemoryStore(), memory_reference(),
                            clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))


def portfolio_event(portfolio: str = PORTFOLIO, base: str = BASE, method: CostMethod | str = CostMethod.FIFO) -> PortfolioEvent:
    return PortfolioEvent(portfolio_id=portfolio, base_currency=base, cost_basis_method=CostMethod(method))


def fx_event(on: str | date, rate: str, from_currency: str = "EUR", to_currency: str = BASE) -> FxRateEvent:
    return FxRateEvent(from_currency=from_currency, to_currency=to_currency,
                       rate_date=on if isinstance(on, date) else day(on), rate=D(rate))


def handler_history(handler: PositionsHandler, key: str) -> list[HistoryEntry]:
    state = handler.states.get(key)
    if state is None:
        return []
    return [e for week, _ in state.weeks for e in handler.history.get(f"{key}|{week}").entries]
