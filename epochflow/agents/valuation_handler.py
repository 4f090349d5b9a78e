"""The valuation role over typed stores: keep a copy of each key's history (from the
positions role's rows), keep reference data, and value jobs. No Faust here."""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, replace
from datetime import date

from epochflow import metrics
from epochflow.domain.valuation import (
    CHUNK,
    CachedEntry,
    CachedKey,
    DailyPosition,
    HistoryChunk,
    NoPosition,
    Price,
    Valued,
    chunk_of,
    value_position,
)
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import HistoryCarryOver, JobOutcome, PositionHistoryRow, PositionStateRow, SnapshotRow
from epochflow.tables.reference import ReferenceData
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
            key = f"{row.portfolio_id}|{row.security_id}" if hasattr(row, "portfolio_id") else None
            if isinstance(row, HistoryCarryOver):
                self._carry(key, row)
            elif isinstance(row, PositionHistoryRow):
                self._put_entry(key, row)
            elif isinstance(row, PositionStateRow):
                self._state(key, row)

    def _cached(self, key: str) -> CachedKey:
        return self.keys.get(key) or CachedKey()

    def _carry(self, key: str, row: HistoryCarryOver) -> None:
        cached = self._cached(key)
        if row.to_epoch <= cached.epoch:
            return
        # the new epoch keeps what came before `before_date`; the rest is re-sent
        keep = self._length_before(key, cached, row.before_date)
        self.keys.put(key, self._truncate(key, replace(cached, epoch=row.to_epoch), keep))

    def _length_before(self, key: str, cached: CachedKey, day: date) -> int:
        for number, _ in reversed(cached.chunk_first_dates):
            chunk = self.chunks.get(f"{key}|{number}")
            if chunk is None or not chunk.entries:
                continue
            dates = [e.day for e in chunk.entries]
            i = bisect.bisect_left(dates, day)
            if i > 0 or number == 0:
                return chunk.entries[0].seq + i
        return 0

    def _truncate(self, key: str, cached: CachedKey, length: int) -> CachedKey:
        if length >= cached.length:
            return cached
        kept = []
        for number, first in cached.chunk_first_dates:
            start = number * CHUNK
            if start >= length:
                self.chunks.delete(f"{key}|{number}")
                continue
            if start + CHUNK > length:
                chunk = self.chunks.get(f"{key}|{number}")
                if chunk is not None:
                    self.chunks.put(f"{key}|{number}", HistoryChunk(number, tuple(e for e in chunk.entries if e.seq < length)))
            kept.append((number, first))
        return replace(cached, length=length, chunk_first_dates=tuple(kept))

    def _put_entry(self, key: str, row: PositionHistoryRow) -> None:
        cached = self._cached(key)
        if row.epoch < cached.epoch:
            metrics.STALE_EPOCH_DROPPED.labels("valuation.positions").inc()
            return
        if row.epoch > cached.epoch:
            cached = replace(self._truncate(key, cached, 0), epoch=row.epoch)
        number = chunk_of(row.seq)
        chunk = self.chunks.get(f"{key}|{number}") or HistoryChunk(number)
        entry = CachedEntry(row.seq, row.position_date, row.quantity, row.cost_basis_local, row.cost_basis)
        entries = [e for e in chunk.entries if e.seq != row.seq]
        seqs = [e.seq for e in entries]
        entries.insert(bisect.bisect_left(seqs, row.seq), entry)
        self.chunks.put(f"{key}|{number}", HistoryChunk(number, tuple(entries)))
        firsts = dict(cached.chunk_first_dates)
        firsts[number] = entries[0].day
        self.keys.put(key, replace(cached, length=max(cached.length, row.seq + 1),
                                   chunk_first_dates=tuple(sorted(firsts.items()))))

    def _state(self, key: str, row: PositionStateRow) -> None:
        cached = self._cached(key)
        if row.epoch < cached.epoch:
            return
        if row.epoch > cached.epoch:
            cached = replace(self._truncate(key, cached, 0), epoch=row.epoch)
        cached = self._truncate(key, cached, row.txn_count)  # history shrank (never in practice) or stale tail
        self.keys.put(key, replace(cached, state_version=max(cached.state_version, row.version)))

    def end_of_day(self, key: str, cached: CachedKey, day: date) -> DailyPosition | None:
        candidates = [n for n, first in cached.chunk_first_dates if first <= day]
        for number in reversed(candidates):
            chunk = self.chunks.get(f"{key}|{number}")
            if chunk is None or not chunk.entries:
                continue
            i = bisect.bisect_right([e.day for e in chunk.entries], day) - 1
            if i >= 0:
                e = chunk.entries[i]
                return DailyPosition(e.day, e.quantity, e.cost_local, e.cost_base)
        return None

    # -- reference data ----------------------------------------------------------------
    def price(self, security_id: str, day: date) -> Price | None:
        found = self.reference.latest(f"price|{security_id}", day)
        if found is None:
            return None
        price_date, value = found
        currency = self.reference.tag(f"pricecur|{security_id}|{price_date.isoformat()}") or ""
        return Price(price_date, value, currency)

    # -- jobs --------------------------------------------------------------------------
    def caught_up(self, job: ValuationJob, ref_offset_seen: int) -> bool:
        """Has this role's view (the key's positions, the reference data) reached what the
        scheduler had seen when it dispatched the job? (A job of an older epoch is answered
        at once: STALE.)"""
        cached = self._cached(job.key)
        if job.epoch < cached.epoch:
            return True
        return not (job.epoch > cached.epoch or cached.state_version < job.state_version or ref_offset_seen < job.ref_offset)

    def on_job(self, job: ValuationJob, ref_offset_seen: int) -> list:
        key = job.key
        cached = self._cached(key)

        def outcome(kind: str, reason: str | None = None, waiting_on: str | None = None) -> JobOutcome:
            return JobOutcome(portfolio_id=job.portfolio_id, security_id=job.security_id, valuation_date=job.valuation_date,
                              epoch=job.epoch, outcome=kind, reason=reason, waiting_on=waiting_on, job_version=job.job_version)

        if job.epoch < cached.epoch:
            metrics.STALE_EPOCH_DROPPED.labels("valuation.value").inc()
            return [outcome("STALE", f"job of epoch {job.epoch}, key is at {cached.epoch}")]
        if not self.caught_up(job, ref_offset_seen):
            return [outcome("NOT_READY", "positions or reference data not caught up yet")]
        portfolio = self.reference.portfolios.get(job.portfolio_id)
        instrument = self.reference.instruments.get(job.security_id)
        eod = self.end_of_day(key, cached, job.valuation_date)
        price = self.price(job.security_id, job.valuation_date)
        base = portfolio.base_currency if portfolio else None
        currency = instrument.currency if instrument else (price.currency if price else None)
        rate = self.reference.fx(currency, base, job.valuation_date) if currency and base else None
        result = value_position(job.valuation_date, job.security_id, job.portfolio_id, eod, price,
                                instrument.currency if instrument else None, base, rate)
        if isinstance(result, NoPosition):
            return [outcome("SKIPPED_NO_POSITION")]
        assert isinstance(result, Valued)
        s = result.snapshot
        row = SnapshotRow(
            portfolio_id=job.portfolio_id, security_id=job.security_id, date=job.valuation_date, epoch=job.epoch,
            quantity=s.quantity, cost_basis=s.cost_base, cost_basis_local=s.cost_local, market_price=s.market_price,
            market_value=s.market_value, market_value_local=s.market_value_local,
            unrealized_gain_loss=s.unrealized, unrealized_gain_loss_local=s.unrealized_local, fx_rate=s.fx_rate,
            valuation_status=s.status.value, price_date=s.price_date,
        )
        if result.blocked:
            return [row, outcome("BLOCKED", result.reason, result.waiting_on)]
        return [row, outcome("COMPLETE")]
