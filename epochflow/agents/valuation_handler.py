"""The valuation role over typed stores: keep a copy of each key's history (from the
positions role's rows), keep reference data, and value jobs. No Faust here; the rules are
in `domain.history_copy` (the copy), `domain.valuation` (a snapshot) and `domain.fencing`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from epochflow import metrics
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.domain import history_copy
from epochflow.domain.fencing import is_stale
from epochflow.domain.history_copy import CachedEntry, CachedKey, ChunkLoader, CopyStep, HistoryChunk
from epochflow.domain.keys import partition_record, position_key, price_currency_tag, price_subject, record_key
from epochflow.domain.scheduling import Answer
from epochflow.domain.valuation import DailyPosition, NoPosition, Price, Valued, value_position
from epochflow.schemas.events import parse_reference
from epochflow.schemas.jobs import ValuationJob, parse_job
from epochflow.schemas.results import HistoryCarryOver, JobOutcome, PositionHistoryRow, PositionStateRow, snapshot_row
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import Store

log = logging.getLogger("epochflow.valuation")


@dataclass
class ValuationHandler:
    keys: Store[CachedKey]
    chunks: Store[HistoryChunk]
    reference: ReferenceData

    # -- the history copy ------------------------------------------------------------
    def on_position_rows(self, rows: list) -> None:
        for row in rows:
            if isinstance(row, HistoryCarryOver):
                key = position_key(row.portfolio_id, row.security_id)
                self._write(key, history_copy.on_carry_over(self._cached(key), row.to_epoch, row.before_date,
                                                            self._loader(key)))
            elif isinstance(row, PositionHistoryRow):
                key = position_key(row.portfolio_id, row.security_id)
                entry = CachedEntry(row.seq, row.position_date, row.quantity, row.cost_basis_local, row.cost_basis)
                step = history_copy.on_history_row(self._cached(key), row.epoch, entry, self._loader(key))
                if step.stale:
                    metrics.STALE_EPOCH_DROPPED.labels("valuation.positions").inc()
                self._write(key, step)
            elif isinstance(row, PositionStateRow):
                key = position_key(row.portfolio_id, row.security_id)
                self._write(key, history_copy.on_state_row(self._cached(key), row.epoch, row.version, row.txn_count,
                                                           self._loader(key)))

    def _cached(self, key: str) -> CachedKey:
        return self.keys.get(key) or CachedKey()

    def _loader(self, key: str) -> ChunkLoader:
        return lambda number: self.chunks.get(record_key(key, number))

    def _write(self, key: str, step: CopyStep) -> None:
        for number, chunk in step.chunks:
            if chunk is None:
                self.chunks.delete(record_key(key, number))
            else:
                self.chunks.put(record_key(key, number), chunk)
        if step.cached is not None:
            self.keys.put(key, step.cached)

    def end_of_day(self, key: str, cached: CachedKey, day: date) -> DailyPosition | None:
        return history_copy.end_of_day(cached, day, self._loader(key))

    # -- reference data ----------------------------------------------------------------
    def price(self, security_id: str, day: date) -> Price | None:
        found = self.reference.latest(price_subject(security_id), day)
        if found is None:
            return None
        price_date, value = found
        currency = self.reference.tag(price_currency_tag(security_id, price_date)) or ""
        return Price(price_date, value, currency)

    def value(self, portfolio_id: str, security_id: str, day: date, eod: DailyPosition | None) -> Valued | NoPosition:
        """One key's day valued from its end-of-day position and this role's reference data."""
        portfolio = self.reference.portfolios.get(portfolio_id)
        instrument = self.reference.instruments.get(security_id)
        price = self.price(security_id, day)
        base = portfolio.base_currency if portfolio else None
        currency = instrument.currency if instrument else (price.currency if price else None)
        rate = self.reference.fx(currency, base, day) if currency and base else None
        return value_position(day, security_id, portfolio_id, eod, price, instrument.currency if instrument else None,
                              base, rate)

    # -- jobs --------------------------------------------------------------------------
    def caught_up(self, job: ValuationJob, ref_offset_seen: int) -> bool:
        """Has this role's view (the key's positions, the reference data) reached what the
        scheduler had seen when it dispatched the job? (A job of an older epoch is answered
        at once: STALE.)"""
        return history_copy.caught_up(self._cached(job.key), job.epoch, job.state_version, job.ref_offset,
                                      ref_offset_seen)

    def on_job(self, job: ValuationJob, ref_offset_seen: int) -> list:
        key = job.key
        cached = self._cached(key)

        def outcome(kind: Answer, reason: str | None = None, waiting_on: str | None = None) -> JobOutcome:
            return JobOutcome(portfolio_id=job.portfolio_id, security_id=job.security_id, valuation_date=job.valuation_date,
                              epoch=job.epoch, outcome=kind.value, reason=reason, waiting_on=waiting_on,
                              job_version=job.job_version)

        if is_stale(job.epoch, cached.epoch):
            metrics.STALE_EPOCH_DROPPED.labels("valuation.value").inc()
            return [outcome(Answer.STALE, f"job of epoch {job.epoch}, key is at {cached.epoch}")]
        if not self.caught_up(job, ref_offset_seen):
            return [outcome(Answer.NOT_READY, "positions or reference data not caught up yet")]
        eod = self.end_of_day(key, cached, job.valuation_date)
        result = self.value(job.portfolio_id, job.security_id, job.valuation_date, eod)
        if isinstance(result, NoPosition):
            return [outcome(Answer.SKIPPED_NO_POSITION)]
        assert isinstance(result, Valued)
        row = snapshot_row(job.portfolio_id, job.security_id, job.epoch, result.snapshot, job.job_version)
        if result.blocked:
            return [row, outcome(Answer.BLOCKED, result.reason, result.waiting_on)]
        return [row, outcome(Answer.COMPLETE)]


# -- the role's inputs as its agents take them: a message (key, value, offset) -----------------
@dataclass
class ValuationRole:
    """The handler and what the role keeps beside it: on each partition, the offset of
    the reference data read so far (a job waits until the prices it needs are read)."""

    handler: ValuationHandler
    progress: Store[int]  # "ref_offset|pN": the reference offset read on partition N

    def ref_offset_seen(self, partition: int) -> int:
        seen = self.progress.get(partition_record(partition, "ref_offset"))
        return -1 if seen is None else seen


def on_results(role: ValuationRole, message, partition: int, now: float) -> list:
    """The results topic: the positions role's rows keep the role's copy of each history."""
    if message.key != b"positions":
        return []
    rows = metrics.decode(decode_rows, message.value)
    role.handler.on_position_rows(rows)
    return forwarded_barriers(rows, "valuation", partition)


def on_reference(role: ValuationRole, message, partition: int, now: float) -> list:
    apply_reference_event(role.handler.reference, metrics.decode(parse_reference, message.value))
    role.progress.put(partition_record(partition, "ref_offset"), message.offset)
    return []


def on_job(role: ValuationRole, message, partition: int, now: float) -> list:
    return role.handler.on_job(metrics.decode(parse_job, message.value), role.ref_offset_seen(partition))
