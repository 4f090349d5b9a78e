"""The scheduler role over typed stores: follow each key's position state, plan and
dispatch valuation jobs, apply their outcomes, advance watermarks. No Faust here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone

from epochflow import metrics
from epochflow.domain import scheduling as sched
from epochflow.domain.scheduling import ScheduleKey, SchedulerConfig
from epochflow.schemas.commands import AdvanceWatermark, ResetWatermark
from epochflow.schemas.events import BusinessDateEvent, FxRateEvent, MarketPriceEvent
from epochflow.schemas.jobs import ValuationJob
from epochflow.schemas.results import JobOutcome, PositionStateRow, ValuationJobRow
from epochflow.tables.reference import KeySet
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
            if status == "REPROCESSING":
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
        metrics.KEYS_REPROCESSING.set(sum(1 for s in self.status.values() if s == "REPROCESSING"))
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


@dataclass(frozen=True, slots=True)
class Message:
    """Something to send to a topic other than results (short topic name)."""

    topic: str
    partition: int
    key: bytes
    value: bytes


@dataclass
class SchedulerHandler:
    keys: Store[ScheduleKey]
    index: Store[KeySet]  # "all|pN", "active|pN", "wait|<what>|pN"
    counters: Store[int]  # "ref_offset|pN", "arrived|<what>|pN", "business_date"
    cfg: SchedulerConfig
    partitions: int
    pacing: TickPacing = field(default_factory=TickPacing)

    # -- helpers -----------------------------------------------------------------------
    def _add(self, name: str, key: str) -> None:
        current = self.index.get(name) or KeySet()
        if key not in current.keys:
            self.index.put(name, KeySet((*current.keys, key)))

    def _remove(self, name: str, key: str) -> None:
        current = self.index.get(name)
        if current is not None and key in current.keys:
            self.index.put(name, KeySet(tuple(k for k in current.keys if k != key)))

    def business_date(self) -> date | None:
        value = self.counters.get("business_date")
        return date.fromordinal(value) if value else None

    def processing(self, partition: int) -> int:
        """Jobs of the partition's keys that are PROCESSING (dispatched, not answered)."""
        return self.counters.get(f"processing|p{partition}") or 0

    def window_left(self, partition: int) -> int:
        return max(0, self.cfg.max_processing_per_partition - self.processing(partition))

    def _put(self, key: str, partition: int, sk: ScheduleKey) -> None:
        """Every write of a key goes here: it keeps the partition's PROCESSING count in step."""
        before = self.keys.get(key)
        if before is sk:
            return
        delta = sk.processing() - (before.processing() if before is not None else 0)
        if delta:
            self.counters.put(f"processing|p{partition}", max(0, self.processing(partition) + delta))
        self.keys.put(key, sk)

    def ref_offset(self, partition: int) -> int:
        value = self.counters.get(f"ref_offset|p{partition}")
        return -1 if value is None else value

    def _emit(self, sk: ScheduleKey, outputs: list, partition: int) -> list:
        out: list = []
        now = datetime.now(timezone.utc)
        for item in outputs:
            if isinstance(item, sched.JobChanged):
                j = item.job
                out.append(ValuationJobRow(
                    portfolio_id=sk.portfolio_id, security_id=sk.security_id, valuation_date=j.day, epoch=sk.epoch,
                    status=j.status.value, attempt_count=j.attempt_count, failure_reason=j.failure_reason,
                    version=j.version, updated_at=now,
                ))
                if j.status is sched.JobStatus.PROCESSING:
                    continue
                if j.status in sched.DONE:
                    metrics.JOBS.labels(j.status.value).inc()
                elif j.status is sched.JobStatus.PENDING and j.attempt_count == 0 and j.failure_reason is None:
                    metrics.JOBS.labels("CREATED").inc()
                elif j.status is sched.JobStatus.FAILED:
                    metrics.JOBS.labels("FAILED").inc()
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
        limit = self.cfg.max_dispatch_per_tick if limit is None else limit
        stored = self.keys.get(key)
        in_flight = self.processing(partition) - (stored.processing() if stored is not None else 0) + sk.processing()
        limit = min(limit, max(0, self.cfg.max_processing_per_partition - in_flight))
        sk, dispatched = sched.dispatch(sk, now, limit, self.ref_offset(partition))
        outputs = planned + reclaimed + dispatched
        self._put(key, partition, sk)
        if sk.idle(self.business_date()):
            self._remove(f"active|p{partition}", key)
        else:
            self._add(f"active|p{partition}", key)
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
            if fill_only and (budget <= 0 or self.window_left(partition) <= 0):
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
        key = f"{row.portfolio_id}|{row.security_id}"
        HEALTH.update(key, row.status, row.watermark_date, has_watermark=True)
        sk = self.keys.get(key) or ScheduleKey(row.portfolio_id, row.security_id)
        sk, outputs = sched.on_position_state(sk, row.epoch, row.generation, row.version, row.watermark_date,
                                              row.first_open_date, row.changed_from, row.ref_floor)
        self._add(f"all|p{partition}", key)
        self._add(f"sec|{row.security_id}|p{partition}", key)
        return self._emit(sk, outputs, partition) + self._work(key, partition, now, sk)

    def on_outcomes(self, rows: list[JobOutcome], partition: int, now: float) -> list:
        """A batch of the valuation role's answers, applied per key in one pass."""
        by_key: dict[str, list[JobOutcome]] = {}
        for row in rows:
            by_key.setdefault(f"{row.portfolio_id}|{row.security_id}", []).append(row)

        def arrived_since(what: str, offset: int) -> bool:
            seen = self.counters.get(f"arrived|{what}|p{partition}")
            return seen is not None and seen > offset

        out: list = []
        for key, answers in by_key.items():
            sk = self.keys.get(key)
            if sk is None:
                continue
            for row in answers:
                if row.outcome == "STALE":
                    metrics.STALE_EPOCH_DROPPED.labels("scheduler.outcomes").inc()
                if row.waiting_on is not None:
                    self._add(f"wait|{row.waiting_on}|p{partition}", key)
                if row.outcome == "BLOCKED":
                    metrics.JOBS.labels("RETRIED").inc()
            outcomes = [sched.Outcome(r.valuation_date, r.epoch, r.job_version, r.outcome, r.reason, r.waiting_on) for r in answers]
            sk, outputs = sched.on_outcomes(sk, outcomes, now, self.cfg, arrived_since)
            for job in (o.job for o in outputs if isinstance(o, sched.JobChanged)):
                if job.status is sched.JobStatus.PENDING and job.failure_reason:
                    metrics.JOB_ATTEMPTS.observe(job.attempt_count)
            out += self._emit(sk, outputs, partition) + self._work(key, partition, now, sk)
        return out

    def on_outcome(self, row: JobOutcome, partition: int, now: float) -> list:
        return self.on_outcomes([row], partition, now)

    def on_reference(self, event, partition: int, offset: int, now: float) -> list:
        self.counters.put(f"ref_offset|p{partition}", offset)
        if isinstance(event, BusinessDateEvent):
            current = self.business_date()
            if current is None or event.date > current:
                self.counters.put("business_date", event.date.toordinal())
                return self._work_keys((self.index.get(f"all|p{partition}") or KeySet()).keys, partition, now)[0]
            return []
        if isinstance(event, MarketPriceEvent):
            out = self._arrived(f"price|{event.security_id}", partition, offset, now)
            business_date = self.business_date()
            if business_date is None or event.price_date >= business_date:
                out += self._price_for_valued_days(event.security_id, event.price_date, partition, now)
            return out
        if isinstance(event, FxRateEvent):
            return self._arrived(f"fx|{event.from_currency}|{event.to_currency}", partition, offset, now)
        return []

    def _arrived(self, what: str, partition: int, offset: int, now: float) -> list:
        self.counters.put(f"arrived|{what}|p{partition}", offset)
        waiting = self.index.get(f"wait|{what}|p{partition}")
        if waiting is None:
            return []
        out, _ = self._work_keys(waiting.keys, partition, now, lambda sk: sched.on_data_arrived(sk, what))
        self.index.delete(f"wait|{what}|p{partition}")
        return out

    def _price_for_valued_days(self, security_id: str, day: date, partition: int, now: float) -> list:
        out: list = []
        for key in (self.index.get(f"sec|{security_id}|p{partition}") or KeySet()).keys:
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
        keys = (self.index.get(f"active|p{partition}") or KeySet()).keys
        if now - self.pacing.full_pass_at.get(partition, float("-inf")) >= self.cfg.full_pass_s:
            self.pacing.full_pass_at[partition] = now
            out, _ = self._work_keys(keys, partition, now)
            self._recount(partition, keys)
            return out
        if not keys or self.window_left(partition) <= 0:
            return []
        start = self.pacing.cursor.get(partition, 0) % len(keys)
        out, worked = self._work_keys(keys[start:] + keys[:start], partition, now, fill_only=True)
        self.pacing.cursor[partition] = start + worked
        return out

    def _recount(self, partition: int, keys) -> None:
        """Only active keys have jobs: their count is the truth the running count must match."""
        count = 0
        for key in keys:
            sk = self.keys.get(key)
            count += sk.processing() if sk is not None else 0
        if count != self.processing(partition):
            self.counters.put(f"processing|p{partition}", count)
