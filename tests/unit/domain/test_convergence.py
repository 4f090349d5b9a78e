"""Any arrival order of the same events converges to the in-order result.

Random valid histories (BUYs and SELLs that never oversell in date order, FIFO and AVCO
portfolios, USD and EUR securities in a USD portfolio, EUR->USD rates) are delivered to
`PositionsHandler` over in-memory stores in a random order, with duplicates, with the
scheduler's watermark advances and price resets interleaved (so late arrivals are
back-dated, bump epochs and replay; advances computed before a reset arrive late and
must be fenced), and with crashes: the un-flushed effects of the last batch are thrown
away and its events are delivered again (at-least-once).

The handler runs the way the positions agent runs it: one batch at a time over
write-through caches, flushed at the end of the batch, after which the batch's rows
reach a model of the sink (PostgreSQL upserts keyed as in `sinks/writer.py`).

What must hold at the end, for every key, compared with costing the history once in
date order: the state's quantity, cost (local and base) and held_since; the full history
of the final epoch (in the history store and in the sink), and every transaction's net
cost and realized P&L.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from factories import at, ctx, event_of, fold, fx_table, in_order
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from epochflow import metrics
from epochflow.agents.positions_handler import PositionsHandler
from epochflow.domain.keys import position_key
from epochflow.domain.model import CostMethod, HistoryEntry, PositionState, Transaction, TxnType
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import BusinessDateEvent, FxRateEvent, PortfolioEvent, TransactionEvent
from epochflow.schemas.results import HistoryCarryOver, PositionHistoryRow, PositionStateRow, TransactionRow
from epochflow.tables.position_state import state_store
from epochflow.tables.reference import ReferenceData
from epochflow.tables.store import CachedStore, MemoryStore

START = date(2025, 1, 25)  # histories span January to March: week buckets and series months are crossed
SPAN_DAYS = 55
BUSINESS_DATE = START + timedelta(days=SPAN_DAYS + 5)
PORTFOLIOS = {"PF": CostMethod.FIFO, "PA": CostMethod.AVCO}
BASE = "USD"
PRICES = ("10", "12.5", "7.3", "101", "0.37")
RATES = ("1.10", "1.2", "0.95", "1.3333")
_DROPPED = metrics.STALE_EPOCH_DROPPED.labels("positions.commands")


# ---- the history ------------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    txns: tuple[Transaction, ...]  # the final version of every transaction
    rates: dict[date, Decimal]
    superseded: tuple[Transaction, ...] = ()  # earlier versions, each delivered before its amendment

    @property
    def keys(self) -> list[str]:
        return sorted({t.key for t in self.txns})

    def of(self, key: str) -> list[Transaction]:
        return in_order(t for t in self.txns if t.key == key)


@st.composite
def histories(draw) -> History:
    txns: list[Transaction] = []
    for k in range(draw(st.integers(1, 3))):
        portfolio = draw(st.sampled_from(sorted(PORTFOLIOS)))
        currency = draw(st.sampled_from([BASE, "EUR"]))
        slots = draw(st.lists(st.tuples(st.integers(0, SPAN_DAYS), st.sampled_from([9, 10])), min_size=1, max_size=8))
        # ids in a random order, so same-timestamp ties are broken by id, not by position
        numbers = draw(st.permutations(range(len(slots))))
        planned = sorted((at(START + timedelta(days=d), hour), f"T{k}-{n:02d}") for (d, hour), n in zip(slots, numbers))
        held = 0
        for ts, transaction_id in planned:
            sell = held > 0 and draw(st.booleans())
            quantity = draw(st.integers(1, held)) if sell else draw(st.integers(1, 20))
            held += -quantity if sell else quantity
            price = Decimal(draw(st.sampled_from(PRICES)))
            txns.append(Transaction(
                transaction_id=transaction_id, portfolio_id=portfolio, security_id=f"S{k}",
                transaction_type=TxnType.SELL if sell else TxnType.BUY, transaction_ts=ts,
                quantity=Decimal(quantity), price=price, gross_amount=quantity * price,
                trade_fee=Decimal(draw(st.sampled_from(["0", "1.5"]))), trade_currency=currency,
            ))
    # one rate before every transaction, so the in-order result has every base figure
    rates = {START - timedelta(days=10): Decimal(draw(st.sampled_from(RATES)))}
    for offset in draw(st.lists(st.integers(0, SPAN_DAYS), max_size=3, unique=True)):
        rates[START + timedelta(days=offset)] = Decimal(draw(st.sampled_from(RATES)))
    superseded = [version for t in txns if draw(st.integers(0, 5)) == 0
                  for version in [draw(earlier_versions(t))] if version.fingerprint() != t.fingerprint()]
    return History(tuple(txns), rates, tuple(superseded))


@st.composite
def earlier_versions(draw, final: Transaction) -> Transaction:
    """What a transaction said before it was amended: another quantity, price or date
    (possibly in another week; a SELL may then oversell until the amendment arrives)."""
    shift = timedelta(days=draw(st.integers(-20, 20)))
    quantity = Decimal(draw(st.integers(1, 30)))
    price = Decimal(draw(st.sampled_from(PRICES)))
    return replace(final, transaction_ts=final.transaction_ts + shift, quantity=quantity, price=price,
                   gross_amount=quantity * price)


def input_events(history: History) -> list:
    events: list = [PortfolioEvent(portfolio_id=p, base_currency=BASE, cost_basis_method=m) for p, m in PORTFOLIOS.items()]
    events += [FxRateEvent(from_currency="EUR", to_currency=BASE, rate_date=d, rate=r) for d, r in history.rates.items()]
    events.append(BusinessDateEvent(date=BUSINESS_DATE))
    events += [event_of(t) for t in history.superseded + history.txns]
    return events


# ---- a model of the sink ----------------------------------------------------------------

@dataclass
class SinkModel:
    """The upsert rules of `sinks/writer.py`, in memory."""

    history: dict[tuple[str, int, str], PositionHistoryRow] = field(default_factory=dict)
    transactions: dict[str, TransactionRow] = field(default_factory=dict)
    states: dict[str, PositionStateRow] = field(default_factory=dict)

    def write(self, rows: list) -> None:
        for row in rows:
            if isinstance(row, PositionHistoryRow):
                self.history[(position_key(row.portfolio_id, row.security_id), row.epoch, row.transaction_id)] = row
            elif isinstance(row, HistoryCarryOver):
                key = position_key(row.portfolio_id, row.security_id)
                for (k, epoch, transaction_id), old in list(self.history.items()):
                    if k == key and epoch == row.from_epoch and old.position_date < row.before_date:
                        self.history.setdefault((k, row.to_epoch, transaction_id), old.model_copy(update={"epoch": row.to_epoch}))
            elif isinstance(row, TransactionRow):
                old = self.transactions.get(row.transaction_id)
                if old is None or row.epoch >= old.epoch:
                    self.transactions[row.transaction_id] = row
            elif isinstance(row, PositionStateRow):
                key = position_key(row.portfolio_id, row.security_id)
                old = self.states.get(key)
                if old is None or (row.epoch, row.version) >= (old.epoch, old.version):
                    self.states[key] = row

    def epoch_history(self, key: str, epoch: int) -> list[PositionHistoryRow]:
        return sorted((r for (k, e, _), r in self.history.items() if k == key and e == epoch), key=lambda r: r.seq)


# ---- the positions role, batch by batch ----------------------------------------------------

class PositionsRole:
    """`PositionsHandler` run as the positions agent runs it: a batch over write-through
    caches, flushed at the end; then the batch's rows go to the sink. A crash loses the
    caches and the rows of the batch in flight, and its events are delivered again."""

    def __init__(self) -> None:
        # state (kept as two records, as the role keeps it), history, refs, key index, 5 reference stores
        self.tables = [state_store(MemoryStore(), MemoryStore()), *(MemoryStore() for _ in range(8))]
        self.sink = SinkModel()
        self.dropped = 0  # statistics only: stale commands fenced off, flags seen on the way
        self.flags_seen: set[str] = set()
        self._open_batch()

    def _open_batch(self) -> None:
        self.caches = [CachedStore(t) for t in self.tables]
        self.handler = PositionsHandler(*self.caches[:4], ReferenceData(*self.caches[4:]))
        self.rows: list = []
        self.in_flight: list = []

    def deliver(self, message) -> None:
        self.in_flight.append(message)
        if isinstance(message, TransactionEvent):
            self.rows += self.handler.on_transaction(message, 0)
        elif isinstance(message, (AdvanceWatermark, ResetWatermark)):
            before = _DROPPED._value.get()
            self.rows += self.handler.on_command(message)
            self.dropped += int(_DROPPED._value.get() - before)
        else:
            self.rows += self.handler.on_reference(message, 0)

    def commit(self) -> None:
        for cache in self.caches:
            cache.flush()
        self.flags_seen.update(f for r in self.rows if isinstance(r, TransactionRow) for f in r.flags.split(",") if f)
        self.sink.write(self.rows)
        self._open_batch()

    def crash(self) -> None:
        redeliver = self.in_flight
        self._open_batch()
        for message in redeliver:
            self.deliver(message)

    def committed_state(self, key: str) -> PositionState | None:
        return self.tables[0].get(key)

    def committed_history(self, key: str, state: PositionState) -> list[HistoryEntry]:
        return [e for week, _ in state.weeks for e in self.tables[1].get(f"{key}|{week}").entries]


# ---- the delivery plan --------------------------------------------------------------------

@dataclass(frozen=True)
class Advance:
    """The scheduler valued the key up to `days` past its watermark (from the committed
    state); `hold` delays the command until the next release, so it may arrive stale."""

    key_index: int
    days: int
    hold: bool


@dataclass(frozen=True)
class Reset:
    key_index: int
    days_back: int


@dataclass(frozen=True)
class Release:
    pass


@dataclass(frozen=True)
class Plan:
    actions: tuple
    batches: tuple[tuple[int, bool], ...]  # (size, crash before commit), used in turn


@st.composite
def plans(draw, events: list, superseded: tuple[Transaction, ...] = ()) -> Plan:
    actions: list = [events[i] for i in draw(st.permutations(range(len(events))))]
    earlier = [event_of(t) for t in superseded]
    extra: list = []
    extra += [e for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=4))  # duplicates
              for e in [events[i]] if e not in earlier]
    extra += draw(st.lists(st.builds(Advance, st.integers(0, 2), st.integers(0, SPAN_DAYS + 10), st.booleans()),
                          min_size=1, max_size=12))
    extra += draw(st.lists(st.builds(Reset, st.integers(0, 2), st.integers(1, 20)), max_size=2))
    extra += [Release()] * draw(st.integers(0, 2))
    for item in extra:
        actions.insert(draw(st.integers(0, len(actions))), item)
    for old in earlier:  # an earlier version arrives before every copy of its amendment
        first_new = min(i for i, a in enumerate(actions) if isinstance(a, TransactionEvent)
                        and a.transaction_id == old.transaction_id and a != old)
        at_old = actions.index(old)
        if at_old > first_new:
            actions.insert(first_new, actions.pop(at_old))
    batches = draw(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=6))
    return Plan(tuple(actions), tuple(batches))


def run(history: History, plan: Plan) -> PositionsRole:
    role = PositionsRole()
    keys = history.keys
    held: list = []
    batches = iter(plan.batches * (len(plan.actions) + 1))
    size, crash = next(batches)
    count = 0

    def send(message) -> None:
        nonlocal size, crash, count
        role.deliver(message)
        count += 1
        if count == size:
            if crash:
                role.crash()
            role.commit()
            count = 0
            size, crash = next(batches)

    for action in plan.actions:
        if isinstance(action, Advance):
            command = _advance(role, keys[action.key_index % len(keys)], action.days)
            if command is not None:
                (held.append if action.hold else send)(command)
        elif isinstance(action, Reset):
            command = _reset(role, keys[action.key_index % len(keys)], action.days_back)
            if command is not None:
                send(command)
        elif isinstance(action, Release):
            for command in held:
                send(command)
            held.clear()
        else:
            send(action)
    for command in held:
        send(command)
    if crash and count:
        role.crash()
    role.commit()
    return role


def _advance(role: PositionsRole, key: str, days: int) -> AdvanceWatermark | None:
    state = role.committed_state(key)
    if state is None or state.first_open_date is None:
        return None
    start = state.watermark_date or state.first_open_date - timedelta(days=1)
    to_date = min(start + timedelta(days=days), BUSINESS_DATE)
    return AdvanceWatermark(portfolio_id=state.portfolio_id, security_id=state.security_id, epoch=state.epoch,
                            generation=state.generation, to_date=to_date, latest_snapshot_date=to_date)


def _reset(role: PositionsRole, key: str, days_back: int) -> ResetWatermark | None:
    state = role.committed_state(key)
    if state is None or state.effective_completed_date is None:
        return None
    return ResetWatermark(portfolio_id=state.portfolio_id, security_id=state.security_id, epoch=state.epoch,
                          to_date=state.effective_completed_date - timedelta(days=days_back))


# ---- the property -------------------------------------------------------------------------

def in_order_result(history: History, key: str):
    txns = history.of(key)
    method = PORTFOLIOS[txns[0].portfolio_id]
    return fold(txns, ctx(method, BASE), fx_table({("EUR", BASE): history.rates}))


def assert_converged(history: History, role: PositionsRole) -> None:
    for key in history.keys:
        holding, expected = in_order_result(history, key)
        state = role.committed_state(key)
        assert state is not None, key
        got = (state.holding.quantity, state.holding.cost_local, state.holding.cost_base, state.holding.held_since)
        assert got == (holding.quantity, holding.cost_local, holding.cost_base, holding.held_since), key
        assert state.waiting_for == "" and state.fx_missing_from is None, (key, state.waiting_for)

        # the history store: the final epoch's history, entry for entry
        assert role.committed_history(key, state) == expected, key

        # the sink: the final epoch's history rows, complete and in order
        rows = role.sink.epoch_history(key, state.epoch)
        assert [r.seq for r in rows] == list(range(len(expected))), (key, [r.transaction_id for r in rows])
        assert [(r.transaction_id, r.position_date, r.quantity, r.cost_basis_local, r.cost_basis, r.held_since_date)
                for r in rows] == [(e.txn.transaction_id, e.txn.date, e.quantity, e.cost_local, e.cost_base, e.held_since)
                                   for e in expected], key

        # the sink: every transaction's net cost and realized P&L
        for e in expected:
            row = role.sink.transactions[e.txn.transaction_id]
            assert (row.net_cost_local, row.net_cost, row.realized_gain_loss_local, row.realized_gain_loss, row.flags) == (
                e.net_cost_local, e.net_cost, e.realized_local, e.realized_base, ""), e.txn.transaction_id

        # the sink: the key's latest state row is the key's state
        state_row = role.sink.states[key]
        assert (state_row.epoch, state_row.version, state_row.quantity, state_row.cost_basis_local,
                state_row.cost_basis, state_row.held_since_date) == (
            state.epoch, state.version, holding.quantity, holding.cost_local, holding.cost_base, holding.held_since)


@st.composite
def scenarios(draw) -> tuple[History, Plan]:
    history = draw(histories())
    return history, draw(plans(input_events(history), history.superseded))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_arrival_order_converges_to_the_in_order_result(scenario) -> None:
    history, plan = scenario
    role = run(history, plan)
    assert_converged(history, role)
    top = max(role.committed_state(k).epoch for k in history.keys)
    event(f"highest epoch {min(top, 3)}{'+' if top > 3 else ''}")
    event(f"dropped commands: {'yes' if role.dropped else 'no'}")
    for flag in ("OVERSOLD", "FX_MISSING"):
        event(f"{flag} on the way: {'yes' if flag in role.flags_seen else 'no'}")
    event(f"amendments: {'yes' if history.superseded else 'no'}")
    event(f"crashes: {'yes' if any(c for _, c in plan.batches) else 'no'}")


@settings(max_examples=30, deadline=None)
@given(histories())
def test_in_order_delivery_matches_the_oracle(history: History) -> None:
    """The baseline: reference data first, transactions once in date order, no crashes."""
    events = input_events(history)
    reference, txns = events[:-len(history.superseded + history.txns)], in_order(history.txns)
    plan = Plan(tuple(reference) + tuple(event_of(t) for t in txns), ((1, False),))
    role = run(history, plan)
    assert_converged(history, role)
    assert all(role.committed_state(k).epoch == 0 for k in history.keys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_weeks_kept_in_parts_converge_the_same(scenario) -> None:
    """The same property with a week cut into parts of two entries (`history.PART`), so
    appends start new parts, and inserts, amendments and replays cut weeks again."""
    from unittest import mock

    from epochflow.domain import history as history_module

    history, plan = scenario
    with mock.patch.object(history_module, "PART", 2):
        role = run(history, plan)
    assert_converged(history, role)
    parts = max((sum("#" in m for m, _ in role.committed_state(k).weeks) for k in history.keys), default=0)
    event(f"parts beyond the first in a week: {'yes' if parts else 'no'}")
