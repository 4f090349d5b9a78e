"""A client of a running epochflow: publish events, wait until the pipeline is quiescent,
read results. Used by the scenario runner, the demo, the benchmarks and the tests.

Quiescence is asked of the engine, never slept: a barrier goes into every partition of
every input topic; each agent forwards it in partition order to the results topic, and the
sink records it in PostgreSQL after the rows that preceded it. When every (stage,
partition) barrier is there, everything sent before it has reached PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncEngine

from epochflow.config import Settings
from epochflow.schemas.events import BusinessDateEvent
from epochflow.sinks.reads.quiescence import barriers_seen, pipeline_activity
from epochflow.sinks.schema import create_engine
from epochflow.streams.admin import consumer_lag
from epochflow.streams.names import topic_name
from epochflow.streams.producer import Producer
from epochflow.streams.publish import barrier_messages, check_partitions, publish
from epochflow.streams.security import client_options
from epochflow.topology import ROLE_NAMES, ROLES, app_id

# input topic (short name) -> the stage that forwards its barriers
BARRIER_STAGES: dict[str, str] = {
    "transactions": "positions.apply",
    "reference": "positions.reference",
    "position-commands": "positions.commands",
}


def barrier_stages(roles: tuple[str, ...]) -> dict[str, list[str]]:
    """Every stage a barrier sent into each input topic must pass through: the positions
    stages, and the roles that follow the positions output (scheduler, valuation, fan-out)
    and read reference data themselves."""
    followers = [name for name, role in ROLES.items() if role.forwards_barriers and name in roles]
    graph: dict[str, list[str]] = {}
    for topic, stage in BARRIER_STAGES.items():
        graph[topic] = [stage] + [f"{role}<-{stage}" for role in followers]
    graph["reference"] += [f"{role}.reference" for role in followers]
    return graph


class NotQuiescent(TimeoutError):
    pass


# told, while `settle` or `quiesce` waits, how much is still outstanding: barriers not
# back yet, then jobs open and keys not valued up to the business date (a progress bar)
Outstanding = Callable[[int], None]


@dataclass
class Pipeline:
    settings: Settings
    producer: Producer
    engine: AsyncEngine
    roles: tuple[str, ...] = ROLE_NAMES
    business_date: date | None = None

    @classmethod
    async def connect(cls, settings: Settings, roles: tuple[str, ...] = ROLE_NAMES) -> Pipeline:
        producer = Producer(settings.kafka_bootstrap, **client_options(settings))
        await producer.__aenter__()
        try:  # events and barriers are routed by EPOCHFLOW_PARTITIONS: the broker must agree
            await check_partitions(settings, producer.partition_counts)
        except BaseException:
            await producer.__aexit__(None, None, None)
            raise
        engine = create_engine(settings.database_url, pool_size=2)
        return cls(settings, producer, engine, tuple(roles))

    async def settle(self, timeout: float = 120.0, on_progress: Outstanding | None = None) -> float:
        """Quiescent as FORMAT.md defines it: every input consumed and every output in
        PostgreSQL (barriers), no job runnable or in flight, and every key valued up to the
        business date or waiting on data that has not arrived; twice in a row, unchanged.
        `on_progress` is told how much is outstanding each time that is read."""
        started = time.monotonic()
        previous = None
        settled_at: str | None = None
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise NotQuiescent(f"pipeline not quiescent after {timeout:.0f}s: {_describe_activity(previous)}")
            try:
                await self.quiesce(left, on_progress=on_progress)
            except NotQuiescent as error:
                if previous is None:
                    raise
                raise NotQuiescent(f"pipeline not quiescent after {timeout:.0f}s: {_describe_activity(previous)}") from error
            if self.business_date is None or "scheduler" not in self.roles:
                return time.monotonic() - started
            activity = await pipeline_activity(self.engine, self.business_date)
            open_work = (activity["processing"] + activity["runnable"] + activity["not_settled_count"]
                         + activity["triggers_pending"] + activity["reset_jobs_open"])
            if on_progress is not None:
                on_progress(open_work)
            settled = not (activity["processing"] or activity["runnable"] or activity["not_settled"]
                           or activity["triggers_pending"] or activity["reset_jobs_open"])
            if settled and settled_at == activity["fingerprint"]:
                return time.monotonic() - started
            # twice in a row settled, with nothing written in between
            settled_at = activity["fingerprint"] if settled else None
            previous = activity
            if not settled:
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.producer.__aexit__(None, None, None)
        await self.engine.dispose()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def publish(self, events: Iterable) -> int:
        events = list(events)
        for event in events:
            if isinstance(event, BusinessDateEvent) and (self.business_date is None or event.date > self.business_date):
                self.business_date = event.date
        count = await publish(events, self.settings, self.producer.send)
        await self.producer.flush()
        return count

    async def send_raw(self, short_topic: str, partition: int, key: bytes, value: bytes) -> None:
        await self.producer.send(topic_name(self.settings, short_topic), partition, key, value)
        await self.producer.flush()

    async def quiesce(self, timeout: float = 120.0, stages: dict[str, str | list[str]] | None = None,
                      on_progress: Outstanding | None = None) -> float:
        """Wait until everything published so far has reached PostgreSQL; returns seconds.
        `stages` maps input topics to the stage(s) that must forward their barriers;
        `on_progress` is told how many barriers are not back yet."""
        stages = stages or barrier_stages(self.roles)
        started = time.monotonic()
        token = uuid.uuid4().hex
        for routed in barrier_messages(self.settings, token, stages):
            await self.producer.send(routed.topic, routed.partition, routed.key, routed.value)
        await self.producer.flush()
        names = [n for v in stages.values() for n in ([v] if isinstance(v, str) else v)]
        wanted = {(stage, p) for stage in names for p in range(self.settings.partitions)}
        delay = 0.02
        while True:
            seen = await barriers_seen(self.engine, token)
            missing = wanted - seen
            if on_progress is not None:
                on_progress(len(missing))
            if not missing:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise NotQuiescent(_describe_missing(missing, timeout) + await self._where_stuck(missing, stages))
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    async def _where_stuck(self, missing: set[tuple[str, int]], stages: dict[str, str | list[str]]) -> str:
        """What the consumer groups on a missing barrier's way have left to read there: a
        lag shows a role behind (or stopped), none a barrier read and not passed on."""
        topic_of = {stage: topic for topic, named in stages.items()
                    for stage in ([named] if isinstance(named, str) else named)}
        hops = sorted({hop for stage, partition in missing
                       for hop in barrier_hops(stage, partition, topic_of, self.settings.partitions)})
        pairs = sorted({(role, topic) for role, topic, _ in hops})
        try:
            read = await asyncio.wait_for(asyncio.gather(*(
                consumer_lag(self.settings.kafka_bootstrap, app_id(self.settings, role),
                             [topic_name(self.settings, topic)], timeout_s=5.0) for role, topic in pairs)), 15.0)
        except Exception as error:  # noqa: BLE001 - a diagnosis must not hide the timeout
            return f" (consumer lag not read: {error!r})"
        lags = dict(zip(pairs, read, strict=True))
        found: dict[tuple[str, str], dict[int, int]] = {}
        for role, topic, partition in hops:
            lag = lags[role, topic].get(topic_name(self.settings, topic), {}).get(partition)
            if lag is not None:
                found.setdefault((role, topic), {})[partition] = lag
        described = ", ".join(f"{role} on {topic} {by_partition}" for (role, topic), by_partition in found.items())
        return f"; consumer lag on its way (partition: messages not committed): {described}" if found else ""


def barrier_hops(stage: str, partition: int, topic_of: dict[str, str], partitions: int) -> list[tuple[str, str, int]]:
    """(role, input topic, partition) a stage's barrier for `partition` passes through
    before the sink records it (the sink reads the results topic). A stage of its own
    (`positions.apply`, `valuation.reference`) is read from its input topic (`topic_of`:
    stage -> the topic its barrier is sent into); `valuation<-positions.apply` from the
    results topic. The timeseries role passes a results barrier on only once it has come
    from every results partition, through its portfolio-changes partition."""
    sink = ("sink", "results", partition)
    if stage.startswith("timeseries<-"):
        return [("timeseries", "results", q) for q in range(partitions)] + [
            ("timeseries", "portfolio-changes", partition), sink]
    if "<-" in stage:
        return [(stage.split("<-")[0], "results", partition), sink]
    return [(stage.split(".")[0], topic_of.get(stage, "reference"), partition), sink]


def _describe_activity(activity: dict | None) -> str:
    if activity is None:
        return "no barrier came back"
    keys = ", ".join(
        f"{k['portfolio_id']}|{k['security_id']} (epoch {k['epoch']}, {k['status']}, watermark {k['watermark_date']})"
        for k in activity["not_settled"][:5]
    )
    return (f"{activity['processing']} job(s) PROCESSING, {activity['runnable']} runnable, "
            f"{activity['blocked']} waiting for data; {activity['triggers_pending']} reprocessing trigger(s) pending, "
            f"{activity['reset_jobs_open']} RESET_WATERMARKS job(s) open; "
            f"keys not valued up to the business date: {keys or 'none'}")


def _describe_missing(missing: set[tuple[str, int]], timeout: float) -> str:
    by_stage: dict[str, list[int]] = {}
    for stage, partition in sorted(missing):
        by_stage.setdefault(stage, []).append(partition)
    detail = "; ".join(f"{stage} partitions {parts}" for stage, parts in by_stage.items())
    return f"pipeline not quiescent after {timeout:.0f}s: still in flight at {detail}"
