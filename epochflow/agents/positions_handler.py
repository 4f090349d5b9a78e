"""What the positions agents do with one message, over typed stores: decode, look up
state, call the core, write state, return the rows to send. No Faust here, so the same
code runs under the agents, the property tests and the benchmarks' baselines."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from epochflow import metrics
from epochflow.domain.keys import fx_subject, partition_record, portfolio_subject, record_key, record_partition, split_position_key
from epochflow.domain.model import PositionState, Transaction, TxnRef
from epochflow.domain.positions import (
    Dropped,
    Reference,
    Step,
    apply_advance,
    apply_reference_change,
    apply_reset,
    apply_transaction,
    recost_from,
)
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark, parse_command
from epochflow.schemas.events import FxRateEvent, MarketPriceEvent, PortfolioEvent, TransactionEvent, parse_reference, parse_transaction
from epochflow.schemas.results import rows_for
from epochflow.tables.index import KeySet, add_key, keys_of
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import Store

log = logging.getLogger("epochflow.positions")


def to_transaction(event: TransactionEvent) -> Transaction:
    return Transaction(
        transaction_id=event.transaction_id,
        portfolio_id=event.portfolio_id,
        security_id=event.security_id,
        transaction_type=event.transaction_type,
        transaction_ts=event.transaction_date,
        quantity=event.quantity,
        price=event.price,
        gross_amount=event.gross_amount,
        trade_fee=event.trade_fee,
        trade_currency=event.trade_currency,
    )


@dataclass
class PositionsHandler:
    states: Store[PositionState]
    history: Store
    refs: Store[TxnRef]
    key_index: Store[KeySet]
    reference: ReferenceData
    clock: callable = field(default=lambda: datetime.now(UTC))

    # -- lookups -------------------------------------------------------------------
    def _state(self, key: str) -> PositionState:
        state = self.states.get(key)
        if state is None:
            portfolio_id, security_id = split_position_key(key)
            state = PositionState(portfolio_id, security_id)
        return state

    def _loader(self, key: str):
        return lambda week: self.history.get(record_key(key, week))

    def _reference_for(self, portfolio_id: str) -> Reference:
        portfolio = self.reference.portfolios.get(portfolio_id)
        return Reference(
            ctx=portfolio.ctx if portfolio else None,
            fx=self.reference.fx,
            business_date=self.reference.business_date(),
            missing_portfolio=None if portfolio else portfolio_id,
        )

    def _commit(self, key: str, step: Step) -> list:
        if step.changed:
            self.states.put(key, step.state)
            for bucket in step.buckets:
                if bucket.entries:
                    self.history.put(record_key(key, bucket.week), bucket)
                else:
                    self.history.delete(record_key(key, bucket.week))
            for transaction_id, ref in step.refs:
                self.refs.put(record_key(key, transaction_id), ref)
        for out in step.outputs:
            if isinstance(out, Dropped):
                metrics.STALE_EPOCH_DROPPED.labels("positions.commands").inc()
                log.info("positions.commands dropped for %s: %s", key, out.reason)
        return rows_for(step.outputs, step.state.portfolio_id, step.state.security_id, self.clock(), step.state.version)

    # -- transactions --------------------------------------------------------------
    def on_transaction(self, event: TransactionEvent, partition: int) -> list:
        txn = to_transaction(event)
        key = txn.key
        state = self._state(key)
        ref = self.refs.get(record_key(key, txn.transaction_id))
        reference = self._reference_for(txn.portfolio_id)
        epoch_before = state.epoch
        step = apply_transaction(state, txn, ref, self._loader(key), reference)
        if ref is not None:
            (metrics.DUPLICATES if not step.changed else metrics.AMENDMENTS).inc()
        if step.state.epoch > epoch_before:
            metrics.EPOCH_BUMPS.inc()
            log.info("positions.apply %s back-dated %s: epoch %d -> %d", key, txn.transaction_id, epoch_before, step.state.epoch)
        add_key(self.key_index, partition_record(partition, portfolio_subject(txn.portfolio_id)), key)
        if reference.ctx is not None and txn.trade_currency != reference.ctx.base_currency:
            add_key(self.key_index, partition_record(partition, fx_subject(txn.trade_currency, reference.ctx.base_currency)), key)
        return self._commit(key, step)

    # -- reference data ------------------------------------------------------------
    def on_reference(self, event, partition: int) -> list:
        if isinstance(event, MarketPriceEvent):
            return []  # prices matter to valuation, not to costing
        changed = apply_reference_event(self.reference, event)
        if not changed:
            return []
        if isinstance(event, PortfolioEvent):
            return self._revisit(partition_record(partition, portfolio_subject(event.portfolio_id)), None)
        if isinstance(event, FxRateEvent):
            return self._revisit(partition_record(partition, fx_subject(event.from_currency, event.to_currency)), event.rate_date)
        return []

    def _revisit(self, index_name: str, since: date | None) -> list:
        """Re-cost every key on this partition that depends on the changed reference data."""
        rows: list = []
        for key in keys_of(self.key_index, index_name):
            state = self._state(key)
            start = recost_from(state, since)
            if start is None:
                continue
            step = apply_reference_change(state, start, self._loader(key), self._reference_for(state.portfolio_id))
            if step.changed and step.state.fx_currencies:
                ctx = self._reference_for(state.portfolio_id).ctx
                if ctx is not None:
                    partition = record_partition(index_name)
                    for currency in step.state.fx_currencies:
                        if currency != ctx.base_currency:
                            add_key(self.key_index, partition_record(partition, fx_subject(currency, ctx.base_currency)), key)
            rows.extend(self._commit(key, step))
        return rows

    # -- commands ------------------------------------------------------------------
    def on_command(self, command: AdvanceWatermark | ResetWatermark) -> list:
        key = command.key
        state = self._state(key)
        if isinstance(command, AdvanceWatermark):
            known = [d for d in (self.reference.business_date(), command.business_date) if d is not None]
            step = apply_advance(state, command.epoch, command.generation, command.to_date,
                                 command.latest_snapshot_date, max(known) if known else None)
        else:
            step = apply_reset(state, command.epoch, command.to_date, command.job_id, command.ref_offset)
        return self._commit(key, step)


# -- the role's inputs as its agents take them: a message (key, value, offset) -----------------
def on_transaction(handler: PositionsHandler, message, partition: int, now: float) -> list:
    return handler.on_transaction(metrics.decode(parse_transaction, message.value), partition)


def on_reference(handler: PositionsHandler, message, partition: int, now: float) -> list:
    return handler.on_reference(metrics.decode(parse_reference, message.value), partition)


def on_command(handler: PositionsHandler, message, partition: int, now: float) -> list:
    return handler.on_command(metrics.decode(parse_command, message.value))
