"""The scheduler role over typed stores: follow each key's position state, plan and
dispatch valuation jobs, apply their outcomes, advance watermarks. No Faust here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from epochflow import metrics
from epochflow.agents.messages import Message
from epochflow.agents.results_feed import decode_rows, forwarded_barriers
from epochflow.domain import scheduling as sched
from epochflow.domain.keys import fx_subject, partition_record, position_key, price_subject
from epochflow.domain.model import KeyStatus
from epochflow.domain.scheduling import Answer, JobStatus, ScheduleKey, SchedulerConfig
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import BusinessDateEvent, FxRateEvent, MarketPriceEvent, parse_reference
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import JobOutcome, PositionStateRow, ValuationJobRow
from epochflow.tables.index import KeySet, add_key, keys_of, remove_key
from epochflow.tables.store import Store

log = logging.getLogger("epochflow.scheduler")


class KeyHealth:
    """What the gauges show, from the keys this worker schedules: how many are being rebuilt
    (REPROCESSING) and how many days the furthest-behind watermark lags the business date."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.watermark: dict[str, date | None] = {}
        self.reprocessing_since: dict[str, float] = {}
        self.published_at = float("-inf")

    def update(self, key: str, status: str | None = None, watermark: date | None = None, *, has_watermark: bool = False) -> None:
        if status is not None:
            self.status[key] = status
            if status == KeyStatus.REPROCESSING:
                self.reprocessing_since.setdefault(key, time.time())
            else:
                self.reprocessing_since.pop(key, None)
        if has_watermark:
            self.watermark[key] = watermark

    def publish(self, business_date: date | None, every_s: float = 5.0) -> None:
        """Set the gauges (a pass over every key of this worker: at most every `every_s`)."""
        now = time.monotonic()
        if now - self.published_at < every_s:
            return
        self.published_at = now
        metrics.KEYS_REPROCESSING.set(sum(1 for s in self.status.values() if s == KeyStatus.REPROCESSING))
        since = self.reprocessing_since.values()
        metrics.REPROCESSING_OLDEST_SECONDS.set(time.time() - min(since) if since else 0.0)
        if business_date is not None and self.watermark:
            lags = [(business_date - w).days if w is not None else None for w in self.watermark.values()]
            known = [lag for lag in lags if lag is not None]
            metrics.WATERMARK_LAG_DAYS.set(max(known) if known else 0)


HEALTH = KeyHealth()


class TickPacing:
    """Per partition, in memory: where the last tick stopped in the active keys and when a
    tick last went over all of them. Between full passes a tick only fills the dispatch
    window, from where the previous one stopped, so a large backlog costs a tick no more than
    the window it can fill. (A restart simply begins with a full pass.)"""

    def __init__(self) -> None:
        self.cursor: dict[int, int] = {}
        self.full_pass_at: dict[int, float] = {}


PACING = TickPacing()


@dataclass
class SchedulerHandler:
    keys: Store[ScheduleKey]
    index: Store[KeySet]  # "all|pN", "active|pN", "wait|<what>|pN"
    counters: Store[int]  # "ref_offset|pN", "arrived|<what>|pN", "business_date"
    cfg: SchedulerConfig
    partitions: int
    pacing: TickPacing = field(default_factory=TickPacing)

    # -- helpers -----------------------------------------------------------------------
    def business_date(self) -> date | None:
        value = self.counters.get("business_date")
        return date.fromordinal(value) if value else None

    def processing(self, partition: int) -> int:
        """Jobs of the partition's keys that are PROCESSING (dispatched, not answered)."""
        return self.counters.get(partition_record(partition, "processing")) or 0

    def _put(self, key: str, partition: int, sk: ScheduleKey) -> None:
        """Every write of a key goes here: it keeps the partition's PROCESSING count in step."""
        before = self.keys.get(key)
        if before is sk:
            return
        count = self.processing(partition)
        after = sched.processing_after(count, before, sk)
        if after != count:
            self.counters.put(partition_record(partition, "processing"), after)
        self.keys.put(key, sk)

    def ref_offset(self, partition: int) -> int:
        value = self.counters.get(partition_record(partition, "ref_offset"))
        return -1 if value is None else value

    def _emit(self, sk: ScheduleKey, outputs: list, partition: int) -> list:
        out: list = []
        now = datetime.now(UTC)
        for item in outputs:
            if isinstance(item, sched.JobChanged):
                j = item.job
                out.append(ValuationJobRow(
                    portfolio_id=sk.portfolio_id, security_id=sk.security_id, valuation_date=j.day, epoch=sk.epoch,
                    status=j.status.value, attempt_count=j.attempt_count, failure_reason=j.failure_reason,
                    version=j.version, updated_at=now,
                ))
                if j.status is JobStatus.PROCESSING:
                    continue
                if j.status in sched.DONE:
                    metrics.JOBS.labels(j.status.value).inc()
                elif j.status is JobStatus.PENDING and j.attempt_count == 0 and j.failure_reason is None:
                    metrics.JOBS.labels("CREATED").inc()
                elif j.status is JobStatus.FAILED:
                    metrics.JOBS.labels(JobStatus.FAILED.value).inc()
            elif isinstance(item, sched.Dispatch):
                j = item.job
                job = ValuationJob(portfolio_id=sk.portfolio_id, security_id=sk.security_id, valuation_date=j.day,
                                   epoch=sk.epoch, job_version=j.version, state_version=j.state_version,
                                   ref_offset=j.ref_offset)
                out.append(Message("valuation-jobs", partition, sk.key.encode(), job.model_dump_json().encode()))
                metrics.JOBS.labels("DISPATCHED").inc()
            elif isinstance(item, sched.Advance):
                HEALTH.update(sk.key, watermark=item.to_date, has_watermark=True)
                command = AdvanceWatermark(portfolio_id=sk.portfolio_id, security_id=sk.security_id, epoch=sk.epoch,
                                           generation=sk.generation, to_date=item.to_date, latest_snapshot_date=item.to_date,
                                           business_date=self.business_date())
                out.append(Message("position-commands", partition, sk.key.encode(), command.model_dump_json().encode()))
            elif isinstance(item, sched.Reset):
                command = ResetWatermark(portfolio_id=sk.portfolio_id, security_id=sk.security_id, epoch=sk.epoch,
                                         to_date=item.to_date, reason="history changed inside days already valued")
                out.append(Message("position-commands", partition, sk.key.encode(), command.model_dump_json().encode()))
        return out

    def _work(self, key: str, partition: int, now: float, sk: ScheduleKey | None = None,
              limit: int | None = None) -> list:
        """Plan, reclaim and dispatch (at most `limit`, by default max_dispatch_per_tick, and
        no more than the partition's dispatch window has room for) for one key; keep the
        active index in step."""
        sk = sk or self.keys.get(key)
        if sk is None:
            return []
        outputs: list = []
        sk, planned = sched.plan(sk, self.business_date(), self.cfg)
        sk, reclaimed = sched.reclaim(sk, now, self.cfg)
        limit = sched.dispatch_limit(limit, self.processing(partition), self.keys.get(key), sk, self.cfg)
        sk, dispatched = sched.dispatch(sk, now, limit, self.ref_offset(partition))
        outputs = planned + reclaimed + dispatched
        self._put(key, partition, sk)
        if sk.idle(self.business_date()):
            remove_key(self.index, partition_record(partition, "active"), key)
        else:
            add_key(self.index, partition_record(partition, "active"), key)
        over = sched.over_attempts(sk, self.cfg) > 0
        if over != sk.alerted:
            # alert once per episode: re-armed when no job of the key is past the limit any more
            self._put(key, partition, replace(sk, alerted=over))
            if over:
                metrics.JOBS_OVER_ATTEMPTS.inc()
                log.warning("scheduler: %s has jobs past %d attempts", key, self.cfg.max_attempts)
        return self._emit(sk, outputs, partition)

    def _work_keys(self, keys, partition: int, now: float, prepare=lambda sk: sk, *, fill_only: bool = False) -> tuple[list, int]:
        """Work several keys of the partition (a tick, a new business date, data arriving)
        with one dispatch budget of max_dispatch_per_tick between them, so a backlog is sent
        a bounded slice at a time; the rest stays PENDING for the next tick. `fill_only`
        stops as soon as the budget or the partition's dispatch window is used up. Returns
        the outputs and how many keys were worked."""
        budget = self.cfg.max_dispatch_per_tick
        out: list = []
        worked = 0
        for key in keys:
            if fill_only and sched.filled(budget, self.processing(partition), self.cfg):
                break
            worked += 1
            sk = self.keys.get(key)
            if sk is None:
                continue
            rows = self._work(key, partition, now, prepare(sk), limit=budget)
            budget -= sum(1 for r in rows if isinstance(r, Message) and r.topic == "valuation-jobs")
            out += rows
        return out, worked

    # -- inputs --------------------------------------------------------------------------
    def on_position_state(self, row: PositionStateRow, partition: int, now: float) -> list:
        key = position_key(row.portfolio_id, row.security_id)
        HEALTH.update(key, row.status, row.watermark_date, has_watermark=True)
        sk = self.keys.get(key) or ScheduleKey(row.portfolio_id, row.security_id)
        sk, outputs = sched.on_position_state(sk, row.epoch, row.generation, row.version, row.watermark_date,
                                              row.first_open_date, row.changed_from, row.ref_floor)
        add_key(self.index, partition_record(partition, "all"), key)
        add_key(self.index, partition_record(partition, "sec", row.security_id), key)
        return self._emit(sk, outputs, partition) + self._work(key, partition, now, sk)

    def on_outcomes(self, rows: list[JobOutcome], partition: int, now: float) -> list:
        """A batch of the valuation role's answers, applied per key in one pass."""
        by_key: dict[str, list[JobOutcome]] = {}
        for row in rows:
            by_key.setdefault(position_key(row.portfolio_id, row.security_id), []).append(row)

        def arrived_since(what: str, offset: int) -> bool:
            seen = self.counters.get(partition_record(partition, "arrived", what))
            return seen is not None and seen > offset

        out: list = []
        for key, answers in by_key.items():
            sk = self.keys.get(key)
            if sk is None:
                continue
            for row in answers:
                if row.outcome == Answer.STALE:
                    metrics.STALE_EPOCH_DROPPED.labels("scheduler.outcomes").inc()
                if row.waiting_on is not None:
                    add_key(self.index, partition_record(partition, "wait", row.waiting_on), key)
                if row.outcome == Answer.BLOCKED:
                    metrics.JOBS.labels("RETRIED").inc()
            outcomes = [sched.Outcome(r.valuation_date, r.epoch, r.job_version, r.outcome, r.reason, r.waiting_on) for r in answers]
            sk, outputs = sched.on_outcomes(sk, outcomes, now, self.cfg, arrived_since)
            for job in (o.job for o in outputs if isinstance(o, sched.JobChanged)):
                if job.status is JobStatus.PENDING and job.failure_reason:
                    metrics.JOB_ATTEMPTS.observe(job.attempt_count)
            out += self._emit(sk, outputs, partition) + self._work(key, partition, now, sk)
        return out

    def on_outcome(self, row: JobOutcome, partition: int, now: float) -> list:
        return self.on_outcomes([row], partition, now)

    def on_reference(self, event, partition: int, offset: int, now: float) -> list:
        self.counters.put(partition_record(partition, "ref_offset"), offset)
        if isinstance(event, BusinessDateEvent):
            current = self.business_date()
            if current is None or event.date > current:
                self.counters.put("business_date", event.date.toordinal())
                return self._work_keys(keys_of(self.index, partition_record(partition, "all")), partition, now)[0]
            return []
        if isinstance(event, MarketPriceEvent):
            out = self._arrived(price_subject(event.security_id), partition, offset, now)
            business_date = self.business_date()
            if sched.is_live_price(event.price_date, business_date):
                out += self._price_for_valued_days(event.security_id, event.price_date, partition, now)
            return out
        if isinstance(event, FxRateEvent):
            return self._arrived(fx_subject(event.from_currency, event.to_currency), partition, offset, now)
        return []

    def _arrived(self, what: str, partition: int, offset: int, now: float) -> list:
        self.counters.put(partition_record(partition, "arrived", what), offset)
        waiting = self.index.get(partition_record(partition, "wait", what))
        if waiting is None:
            return []
        out, _ = self._work_keys(waiting.keys, partition, now, lambda sk: sched.on_data_arrived(sk, what))
        self.index.delete(partition_record(partition, "wait", what))
        return out

    def _price_for_valued_days(self, security_id: str, day: date, partition: int, now: float) -> list:
        out: list = []
        for key in keys_of(self.index, partition_record(partition, "sec", security_id)):
            sk = self.keys.get(key)
            if sk is None:
                continue
            sk, outputs = sched.on_price_for_valued_days(sk, day)
            if outputs or sk is not self.keys.get(key):
                out += self._emit(sk, outputs, partition) + self._work(key, partition, now, sk)
        return out

    def on_tick(self, partition: int, now: float) -> list:
        """Every `full_pass_s`, work every active key (reclaims, retries after backoff) and
        recount the partition's PROCESSING jobs from the keys themselves. In between, only
        fill the dispatch window, going on from where the previous tick stopped."""
        keys = keys_of(self.index, partition_record(partition, "active"))
        if sched.full_pass_due(now, self.pacing.full_pass_at.get(partition), self.cfg):
            self.pacing.full_pass_at[partition] = now
            out, _ = self._work_keys(keys, partition, now)
            self._recount(partition, keys)
            return out
        if not keys or sched.window_room(self.processing(partition), self.cfg) <= 0:
            return []
        ordered, start = sched.fill_order(keys, self.pacing.cursor.get(partition, 0))
        out, worked = self._work_keys(ordered, partition, now, fill_only=True)
        self.pacing.cursor[partition] = start + worked
        return out

    def _recount(self, partition: int, keys) -> None:
        """Only active keys have jobs: their count is the truth the running count must match."""
        count = 0
        for key in keys:
            sk = self.keys.get(key)
            count += sk.processing() if sk is not None else 0
        if count != self.processing(partition):
            self.counters.put(partition_record(partition, "processing"), count)


# -- the role's inputs as its agents take them: a message (key, value, offset) -----------------
def on_results(handler: SchedulerHandler, message, partition: int, now: float) -> list:
    """The results topic: the positions role's state rows and the valuation role's outcomes."""
    if message.key not in (b"positions", b"valuation"):
        return []
    rows = metrics.decode(decode_rows, message.value)
    out: list = []
    for row in rows:
        if isinstance(row, PositionStateRow):
            out += handler.on_position_state(row, partition, now)
    outcomes = [row for row in rows if isinstance(row, JobOutcome)]
    if outcomes:
        out += handler.on_outcomes(outcomes, partition, now)
    return out + forwarded_barriers(rows, "scheduler", partition)


def on_reference(handler: SchedulerHandler, message, partition: int, now: float) -> list:
    return handler.on_reference(metrics.decode(parse_reference, message.value), partition, message.offset, now)


def on_tick(handler: SchedulerHandler, message, partition: int, now: float) -> list:
    started = time.perf_counter()
    out = handler.on_tick(partition, now)
    metrics.SCHEDULER_TICK_SECONDS.observe(time.perf_counter() - started)
    HEALTH.publish(handler.business_date())
    return out
