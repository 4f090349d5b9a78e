"""The fan-out role over typed stores: detect back-dated prices and FX rates, keep one
trigger per subject, queue and run RESET_WATERMARKS jobs at a controlled rate, and keep
the holders index from the positions role's output. No Faust here.

The role serves the keys of its partitions: partition N's records cover the keys on
partition N, whose reference topic partition carries every correction too; so the
correction's offset there is exactly what valuation of those keys must have read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from epochflow import metrics
from epochflow.agents.messages import Message
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.domain import fanout
from epochflow.domain.fanout import FanoutConfig, InFlight, RateLimiter, ResetJobStatus, SubjectState
from epochflow.domain.keys import (
    describe_subject,
    fx_subject,
    partition_record,
    position_key,
    price_subject,
    split_position_key,
    subject_kind,
)
from epochflow.domain.model import KeyStatus
from epochflow.schemas.commands import ResetWatermark
from epochflow.schemas.events import FxRateEvent, MarketPriceEvent, parse_reference
from epochflow.schemas.results import PositionStateRow, ReprocessingJobRow, ReprocessingTriggerRow
from epochflow.tables.index import KeySet, add_key, keys_of, remove_key
from epochflow.tables.reference import ReferenceData, apply_reference_event
from epochflow.tables.store import Store

log = logging.getLogger("epochflow.fanout")


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class FanoutHealth:
    """What the gauges show, over this worker's subjects with work."""

    def __init__(self) -> None:
        self.open: dict[str, SubjectState] = {}

    def update(self, name: str, state: SubjectState) -> None:
        if state.open:
            self.open[name] = state
        else:
            self.open.pop(name, None)

    def publish(self, now: float, in_flight: InFlight | None = None) -> None:
        states = list(self.open.values())
        metrics.TRIGGERS_PENDING.set(sum(1 for s in states if s.trigger is not None))
        for status in fanout.OPEN:
            metrics.RESET_JOBS.labels(status.value).set(sum(1 for s in states if s.job is not None and s.job.status is status))
        started = [s.trigger.created_at for s in states if s.trigger is not None]
        started += [s.job.created_at for s in states if s.job is not None and s.job.status in fanout.OPEN]
        metrics.FANOUT_LAG_SECONDS.set(now - min(started) if started else 0.0)
        if in_flight is not None:
            metrics.FANOUT_KEYS_IN_FLIGHT.set(len(in_flight.sent))


HEALTH = FanoutHealth()


@dataclass
class FanoutHandler:
    subjects: Store[SubjectState]  # "SUBJECT|pN"
    index: Store[KeySet]  # "holders|SUBJECT|pN", "open|pN"
    reference: ReferenceData
    cfg: FanoutConfig
    limiter: RateLimiter
    seen: set  # (index name, key) pairs known to be in the index, a cache across batches
    working: set  # ids of the jobs this worker process has claimed or resumed
    in_flight: InFlight | None = None  # keys reset, not CURRENT again yet (this worker's)

    # -- helpers -----------------------------------------------------------------------
    def _add_holder(self, subject: str, partition: int, key: str) -> None:
        # holders only ever join their index, so the process-wide cache stays true across
        # rebalances (the open subjects come and go, on any worker: always read the table)
        name = partition_record(partition, "holders", subject)
        if (name, key) not in self.seen:
            add_key(self.index, name, key)
            self.seen.add((name, key))

    def holders(self, subject: str, partition: int) -> tuple[str, ...]:
        return keys_of(self.index, partition_record(partition, "holders", subject))

    def _save(self, state: SubjectState, before: SubjectState | None) -> list:
        """Store the record and return its rows for PostgreSQL (unchanged: nothing)."""
        if before is not None and state.version == before.version:
            return []
        name = partition_record(state.partition, state.subject)
        self.subjects.put(name, state)
        HEALTH.update(name, state)
        if state.open:
            add_key(self.index, partition_record(state.partition, "open"), state.subject)
        else:
            remove_key(self.index, partition_record(state.partition, "open"), state.subject)
        return self._rows(state, before)

    def _rows(self, state: SubjectState, before: SubjectState | None) -> list:
        now = datetime.now(UTC)
        security_id, from_currency, to_currency = describe_subject(state.subject)
        common = dict(subject=state.subject, partition=state.partition, security_id=security_id,
                      from_currency=from_currency, to_currency=to_currency, version=state.version, updated_at=now)
        rows: list = []
        if state.trigger != (before.trigger if before else None):
            t = state.trigger
            rows.append(ReprocessingTriggerRow(
                earliest_impacted_date=t.earliest if t else None, corrections=t.corrections if t else 0,
                pending=t is not None, created_at=_at(t.created_at) if t else None, **common))
        job = state.job
        if job is not None and job != (before.job if before else None):
            rows.append(ReprocessingJobRow(
                job_id=job.job_id, job_type=fanout.JOB_TYPE, earliest_impacted_date=job.earliest, status=job.status.value,
                attempt_count=job.attempt_count, last_attempted_at=_at(job.last_attempted_at),
                failure_reason=job.failure_reason, keys_total=len(self.holders(state.subject, state.partition)),
                keys_reset=job.cursor, created_at=_at(job.created_at), finished_at=_at(job.finished_at), **common))
        return rows

    # -- inputs --------------------------------------------------------------------------
    def on_reference(self, event, partition: int, offset: int, now: float) -> list:
        """Store the event; a price or rate that changed for a day before the business
        date is a correction of days already valued (or due to be): a trigger."""
        business_date = self.reference.business_date()
        changed = apply_reference_event(self.reference, event)
        if not changed:
            return []
        if isinstance(event, MarketPriceEvent) and fanout.is_correction(event.price_date, business_date):
            return self._correct(price_subject(event.security_id), event.price_date, partition, offset, now)
        if isinstance(event, FxRateEvent) and fanout.is_correction(event.rate_date, business_date):
            subject = fx_subject(event.from_currency, event.to_currency)
            return self._correct(subject, event.rate_date, partition, offset, now)
        return []

    def _correct(self, subject: str, day: date, partition: int, offset: int, now: float) -> list:
        if not self.holders(subject, partition):
            return []  # no key of this partition is valued with it
        before = self.subjects.get(partition_record(partition, subject))
        state = fanout.on_correction(before or SubjectState(subject, partition), day, offset, now)
        metrics.CORRECTIONS.labels(subject_kind(subject)).inc()
        log.info("fanout: %s corrected for %s on p%d (earliest impacted %s)", subject, day, partition,
                 state.trigger.earliest)
        return self._save(state, before)

    def on_position_state(self, row: PositionStateRow, partition: int) -> None:
        """The key holds (or has held) the security; its valuation uses the pair from the
        instrument's currency to the portfolio's base currency."""
        key = position_key(row.portfolio_id, row.security_id)
        if self.in_flight is not None and row.status == KeyStatus.CURRENT:
            self.in_flight.current_again(key, row.updated_at.timestamp(), row.ref_floor)
        self._add_holder(price_subject(row.security_id), partition, key)
        instrument = self.reference.instruments.get(row.security_id)
        portfolio = self.reference.portfolios.get(row.portfolio_id)
        if instrument is not None and portfolio is not None and instrument.currency != portfolio.base_currency:
            self._add_holder(fx_subject(instrument.currency, portfolio.base_currency), partition, key)

    def on_tick(self, partition: int, now: float) -> list:
        """The cycle: queue triggers as jobs, claim up to `claim_batch` jobs, and send the
        claimed jobs' resets as far as the rate limiter allows."""
        out: list = []
        processing = 0
        for subject in keys_of(self.index, partition_record(partition, "open")):
            before = self.subjects.get(partition_record(partition, subject))
            if before is None:
                remove_key(self.index, partition_record(partition, "open"), subject)
                continue
            state = fanout.queue(before, now)
            if fanout.claim_waits(state, processing, self.cfg):
                out += self._save(state, before)
                continue
            state = fanout.claim(state, now, self.cfg, fanout.interrupted(state.job, self.working))
            if state.job is not None:
                self.working.add(state.job.job_id)
            if state.job is not None and state.job.status is ResetJobStatus.PROCESSING:
                processing += 1
                state, commands = self._send(state, partition, now)
                out += commands
                if state.job.status is ResetJobStatus.COMPLETE and state.trigger is not None:
                    # the finished job's rows first, then the trigger that waited for it
                    self._count(before, state)
                    out += self._save(state, before)
                    before, state = state, fanout.queue(state, now)
            self._count(before, state)
            out += self._save(state, before)
            if state.job is not None and state.job.status not in fanout.OPEN:
                self.working.discard(state.job.job_id)
        HEALTH.publish(now, self.in_flight)
        return out

    def _send(self, state: SubjectState, partition: int, now: float) -> tuple[SubjectState, list]:
        holders = self.holders(state.subject, partition)
        job = state.job
        room = self.in_flight.room(now) if self.in_flight is not None else None
        want = fanout.resets_wanted(len(holders), job.cursor, room, self.cfg)
        granted = self.limiter.take(want, now) if want > 0 else 0
        state, batch = fanout.take(state, len(holders), granted, now)
        reason = f"{fanout.JOB_TYPE} {state.subject} from {job.earliest.isoformat()}"
        commands = []
        for i in batch:
            portfolio_id, security_id = split_position_key(holders[i])
            command = ResetWatermark(portfolio_id=portfolio_id, security_id=security_id, to_date=job.reset_to,
                                     reason=reason, job_id=job.job_id, ref_offset=job.ref_offset)
            commands.append(Message("position-commands", partition, holders[i].encode(), command.model_dump_json().encode()))
            if self.in_flight is not None:
                self.in_flight.add(holders[i], now, job.ref_offset)
        metrics.FANOUT_KEYS_RESET.inc(len(commands))
        return state, commands

    @staticmethod
    def _count(before: SubjectState, after: SubjectState) -> None:
        if after.jobs_created > before.jobs_created:
            metrics.RESET_JOB_EVENTS.labels("CREATED").inc()
        job = after.job
        if job is not None and (before.job is None or before.job.job_id != job.job_id or before.job.status != job.status):
            if job.status in fanout.ENDED:
                metrics.RESET_JOB_EVENTS.labels(job.status.value).inc()
                if job.status is ResetJobStatus.FAILED:
                    log.warning("fanout: job %s FAILED: %s", job.job_id, job.failure_reason)


# -- the role's inputs as its agents take them: a message (key, value, offset) -----------------
def on_reference(handler: FanoutHandler, message, partition: int, now: float) -> list:
    return handler.on_reference(metrics.decode(parse_reference, message.value), partition, message.offset, now)


def on_results(handler: FanoutHandler, message, partition: int, now: float) -> list:
    """The results topic: the positions role's state rows keep the holders index."""
    if message.key != b"positions":
        return []
    rows = metrics.decode(decode_rows, message.value)
    for row in rows:
        if isinstance(row, PositionStateRow):
            handler.on_position_state(row, partition)
    return forwarded_barriers(rows, "fanout", partition)


def on_tick(handler: FanoutHandler, message, partition: int, now: float) -> list:
    return handler.on_tick(partition, now)
