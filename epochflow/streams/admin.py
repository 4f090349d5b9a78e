"""Admin requests to Kafka, in ways that work on Tansu (the embedded broker) and on Apache
Kafka alike: creating the topics, measuring consumer lag, reading a consumer group's
members, assignments and committed offsets, and (for `epochflow replay`) finding offsets
by time, committing a group's offsets and emptying changelog topics. Plus `run_sync`, to
call them from sync code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import HeartbeatRequest, LeaveGroupRequest

from epochflow.streams.highwater import fetch_highwaters
from epochflow.streams.names import TopicSpec

log = logging.getLogger("epochflow.admin")

_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36

T = TypeVar("T")


class AdminError(RuntimeError):
    """An admin request failed, or its effect was not what was asked for."""


async def create_topics(bootstrap: str, specs: Sequence[TopicSpec]) -> None:
    """Create the topics with their partition counts; topics that exist are fine as long
    as their partition count matches (co-partitioning depends on it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, 1) for spec in specs]
        )
        for name, code, message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise AdminError(f"cannot create topic {name}: error {code} {message or ''}")
        found = await _partition_counts(admin, [spec.name for spec in specs])
    finally:
        await admin.close()
    wrong = {s.name: found.get(s.name) for s in specs if found.get(s.name) != s.partitions}
    if wrong:
        wanted = {s.name: s.partitions for s in specs if s.name in wrong}
        raise AdminError(f"topics have the wrong partition count: found {wrong}, want {wanted}")


async def consumer_lag(
    bootstrap: str, group_id: str, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, dict[int, int]]:
    """Per topic and partition: fetch high watermark - the group's committed offset (the
    log start offset when the group has committed nothing). Topics that do not exist
    are left out.

    The high watermark comes from a Fetch response because Tansu's ListOffsets(LATEST)
    answers the start of the last batch, not the end of the log."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = await _partition_counts(admin, list(topics))
        partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        if not partitions:
            return {}
        # Always name the partitions: Tansu answers an "all partitions" OffsetFetch in a
        # form aiokafka cannot decode.
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
    finally:
        await admin.close()

    # A consumer with no group (it must never join or commit for the group it measures)
    # reads the high watermarks from Fetch responses.
    highwaters = await fetch_highwaters(bootstrap, partitions, timeout_s)
    starts: dict[TopicPartition, int] = {}
    lag: dict[str, dict[int, int]] = {}
    for tp in partitions:
        offset = committed[tp].offset if tp in committed else -1
        if offset < 0:
            if not starts:
                starts = await _log_starts(bootstrap, partitions)
            offset = starts[tp]
        lag.setdefault(tp.topic, {})[tp.partition] = highwaters[tp] - offset
    return lag


async def _log_starts(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition count of each of `topics` that exists."""
    wanted = set(topics)
    # Metadata for all topics: naming a missing topic makes Tansu (and Kafka with
    # auto.create.topics.enable) create it with the broker's default partition count.
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in await admin.describe_topics(None)
        if topic["topic"] in wanted and topic["error_code"] == 0
    }


# -- consumer groups, offsets and changelogs (epochflow replay) ---------------------------


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    client_host: str
    partitions: tuple[TopicPartition, ...] = ()  # assigned to it (empty while the group rebalances)


class GroupReader:
    """Reads of consumer groups over one admin connection, for callers that poll them
    (`epochflow chaos` measures recovery by watching a group's offsets and members):
    `async with GroupReader(bootstrap) as groups: await groups.committed(...)`."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> GroupReader:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._admin.close()

    async def committed(self, group_id: str, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offset of each partition (-1: nothing committed)."""
        if not partitions:
            return {}
        # Always name the partitions: Tansu answers an "all partitions" OffsetFetch in a
        # form aiokafka cannot decode.
        found = await self._admin.list_consumer_group_offsets(group_id, partitions=list(partitions))
        return {tp: found[tp].offset if tp in found else -1 for tp in partitions}

    async def members(self, group_id: str) -> list[GroupMember]:
        """The members the broker counts in `group_id` (empty when nobody consumes for it),
        with the partitions assigned to each.

        Tansu forgets a member only when a later request to the group finds it silent for
        longer than its session timeout (a LeaveGroup does not remove it, and DescribeGroups
        does not check), so a Heartbeat that belongs to nobody goes first: it makes Tansu
        drop the lapsed members and is answered UNKNOWN_MEMBER_ID, with no effect, by Kafka."""
        admin = self._admin
        coordinator = await admin.find_coordinator(group_id)
        await admin._send_request(HeartbeatRequest(group_id, -1, ""), coordinator)  # noqa: SLF001
        responses = await admin.describe_consumer_groups([group_id], group_coordinator_id=coordinator)
        members: list[GroupMember] = []
        for response in responses:
            for error_code, group, _state, _protocol_type, _protocol, group_members_, *_ in response.groups:
                if group != group_id:
                    continue
                if error_code:
                    raise AdminError(f"cannot describe consumer group {group_id}: error {error_code}")
                members += [GroupMember(m[0], m[1], m[2], _assigned(m[4])) for m in group_members_]
        return members


def _assigned(assignment: bytes) -> tuple[TopicPartition, ...]:
    if not assignment:
        return ()
    try:
        return tuple(ConsumerProtocolMemberAssignment.decode(assignment).partitions())
    except Exception:  # noqa: BLE001 - not the consumer protocol: nothing we can read
        return ()


async def leave_group(bootstrap: str, group_id: str, member_id: str, **client_options: Any) -> int:
    """Send `member_id`'s LeaveGroup to `group_id`'s coordinator, on its behalf (see
    epochflow.streams.membership); returns the broker's error code (0: it left)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    await admin.start()
    try:
        coordinator = await admin.find_coordinator(group_id)
        response = await admin._send_request(LeaveGroupRequest(group_id, member_id), coordinator)  # noqa: SLF001
        return response.error_code
    finally:
        await admin.close()


async def group_members(bootstrap: str, group_id: str) -> list[GroupMember]:
    """The members the broker counts in `group_id` (see `GroupReader.members`)."""
    async with GroupReader(bootstrap) as groups:
        return await groups.members(group_id)


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of each of `topics` that exists, in topic and partition order."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = await _partition_counts(admin, list(topics))
    finally:
        await admin.close()
    return [TopicPartition(t, p) for t in sorted(counts) for p in range(counts[t])]


async def log_starts(bootstrap: str, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The first offset still in each partition's log (ListOffsets EARLIEST, which Tansu
    answers correctly)."""
    return await _log_starts(bootstrap, list(partitions)) if partitions else {}


async def offsets_for_time(
    bootstrap: str, partitions: Sequence[TopicPartition], timestamp_ms: int, timeout_s: float = 60.0
) -> dict[TopicPartition, int]:
    """Per partition, the offset of the first record stamped at or after `timestamp_ms`
    (the log end when there is none): where a consumer starts to read from that time on.

    The broker's answer (ListOffsets by timestamp) is checked against the records around
    it, and a partition whose answer does not hold is scanned from its start instead:
    Tansu answers offset 0 for any timestamp."""
    partitions = list(partitions)
    if not partitions:
        return {}
    starts = await _log_starts(bootstrap, partitions)
    ends = await fetch_highwaters(bootstrap, partitions, timeout_s)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        answers = await consumer.offsets_for_times({tp: timestamp_ms for tp in partitions})
        found: dict[TopicPartition, int] = {}
        unsure: list[TopicPartition] = []
        for tp in partitions:
            if ends[tp] <= starts[tp]:
                found[tp] = ends[tp]  # an empty log: nothing before or after
                continue
            answer = answers.get(tp)
            offset = ends[tp] if answer is None else answer.offset
            if await _first_at_or_after(consumer, tp, offset, timestamp_ms, starts[tp], ends[tp], timeout_s):
                found[tp] = offset
            else:
                unsure.append(tp)
        if unsure:
            log.info("admin.offsets_for_time scanning %d partition(s) the broker answered wrongly", len(unsure))
            found.update(await _scan_for_time(consumer, unsure, timestamp_ms, starts, ends, timeout_s))
    finally:
        await consumer.stop()
    return {tp: found[tp] for tp in partitions}


async def _first_at_or_after(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, timestamp_ms: int,
                             start: int, end: int, timeout_s: float) -> bool:
    """Whether `offset` is the first record of `tp` stamped at or after `timestamp_ms`."""
    if not start <= offset <= end:
        return False
    if offset < end:
        record = await _record_at_or_after(consumer, tp, offset, end, timeout_s)
        if record is None or record.timestamp < timestamp_ms:
            return False
    if offset > start:
        before = await _record_at_or_after(consumer, tp, offset - 1, end, timeout_s)
        if before is not None and before.offset == offset - 1 and before.timestamp >= timestamp_ms:
            return False
    return True


async def _record_at_or_after(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, end: int,
                              timeout_s: float) -> Any:
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while True:
        for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
            if record.offset >= offset:  # a fetch may start at the beginning of a batch
                return record
        if await consumer.position(tp) >= end:
            return None
        if time.monotonic() > deadline:
            raise AdminError(f"no record of {tp.topic}[{tp.partition}] at or after offset {offset} within {timeout_s}s")


async def _scan_for_time(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], timestamp_ms: int,
                         starts: dict[TopicPartition, int], ends: dict[TopicPartition, int],
                         timeout_s: float) -> dict[TopicPartition, int]:
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    found: dict[TopicPartition, int] = {}
    pending = set(partitions)
    deadline = time.monotonic() + timeout_s
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=200)
        for tp, records in batches.items():
            if tp not in pending:
                continue
            hit = next((r for r in records if r.timestamp >= timestamp_ms), None)
            if hit is not None:
                found[tp] = hit.offset
                pending.discard(tp)
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                found[tp] = ends[tp]
                pending.discard(tp)
        if pending and time.monotonic() > deadline:
            raise AdminError(f"scanning for timestamp {timestamp_ms} took longer than {timeout_s}s")
    return found


class _FaustNamedRoundRobin(RoundRobinPartitionAssignor):
    """Round robin offered under the name of Faust's assignor: Tansu keeps the protocol of
    a group whose members are gone and refuses a joiner that does not offer it
    (InconsistentGroupProtocol). The joiner is alone in the group, so it gets everything."""

    name = "faust"


async def commit_group_offsets(
    bootstrap: str, group_id: str, offsets: dict[TopicPartition, int], timeout_s: float = 60.0
) -> None:
    """Set the committed offsets of a group that has no members, as a member of it: join
    with every partition's topic subscribed, commit, leave. (Tansu refuses
    AlterConsumerGroupOffsets and commits from outside the group; a member's commit is
    what every broker accepts.) Checked by reading the offsets back."""
    if not offsets:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id="epochflow-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,  # the smallest a Kafka broker accepts by default
        heartbeat_interval_ms=500,
        partition_assignment_strategy=(_FaustNamedRoundRobin, RoundRobinPartitionAssignor),
    )
    await consumer.start()
    try:
        consumer.subscribe(topics=sorted({tp.topic for tp in offsets}))
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():  # the join runs in aiokafka's coordinator task
            try:
                consumer._coordinator.check_errors()  # noqa: SLF001 - a failed join is only reported there
            except KafkaError as exc:
                raise AdminError(f"could not join consumer group {group_id}: {exc!r}") from exc
            if time.monotonic() > deadline:
                raise AdminError(f"could not join consumer group {group_id} within {timeout_s}s")
            await asyncio.sleep(0.05)
        missing = set(offsets) - consumer.assignment()
        if missing:
            raise AdminError(
                f"another member joined consumer group {group_id} while its offsets were being reset "
                f"(it holds {sorted((tp.topic, tp.partition) for tp in missing)[:4]}...); nothing was committed for those"
            )
        await consumer.commit(dict(offsets))
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id, partitions=list(offsets))
    finally:
        await admin.close()
    wrong = {f"{tp.topic}[{tp.partition}]": (committed[tp].offset if tp in committed else None, want)
             for tp, want in offsets.items() if tp not in committed or committed[tp].offset != want}
    if wrong:
        raise AdminError(f"consumer group {group_id} did not keep the offsets committed (found, wanted): {wrong}")


async def changelog_topics(bootstrap: str, app_id: str) -> dict[str, int]:
    """The changelog topics of a Faust app's tables (`{app_id}-{table}-changelog`) with
    their partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(None)
    finally:
        await admin.close()
    prefix = f"{app_id}-"
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in described
        if topic["error_code"] == 0 and topic["topic"].startswith(prefix) and topic["topic"].endswith("-changelog")
    }


async def recreate_empty(bootstrap: str, topics: dict[str, int], configs: dict[str, str] | None = None,
                         timeout_s: float = 60.0) -> None:
    """Delete `topics` (name -> partition count) and create them again, empty, with the
    same partition counts and `configs`; returns once every partition's log ends at 0.

    Deleting is what works everywhere: Kafka refuses DeleteRecords on compacted topics
    (changelogs are) and Tansu does not implement it. Creating them again here, rather
    than leaving it to the next worker, keeps that worker from racing Kafka's
    asynchronous deletion, and from naming a missing topic in a metadata request, which
    makes a broker that auto-creates topics create it with its default partition count."""
    if not topics:
        return
    names = sorted(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        replicas = {
            t["topic"]: max(1, len(t["partitions"][0]["replicas"])) if t["partitions"] else 1
            for t in await admin.describe_topics(None)
            if t["topic"] in topics and t["error_code"] == 0
        }
        response = await admin.delete_topics(names)
        for name, code, *_ in response.topic_error_codes:
            if code not in (0, _UNKNOWN_TOPIC):
                raise AdminError(f"cannot delete topic {name}: error {code}")
        deadline = time.monotonic() + timeout_s
        while {t["topic"] for t in await admin.describe_topics(None)} & set(names):
            if time.monotonic() > deadline:
                raise AdminError(f"topics still listed {timeout_s}s after their deletion: {names}")
            await asyncio.sleep(0.2)
        todo = set(names)
        while todo:
            new = [NewTopic(n, topics[n], replicas.get(n, 1), topic_configs=dict(configs or {})) for n in sorted(todo)]
            response = await admin.create_topics(new)
            for name, code, message in response.topic_errors:
                if code == 0:
                    todo.discard(name)
                elif code != _TOPIC_ALREADY_EXISTS:  # Kafka: still being deleted; try again
                    raise AdminError(f"cannot create topic {name}: error {code} {message or ''}")
            if todo:
                if time.monotonic() > deadline:
                    raise AdminError(f"topics could not be created again within {timeout_s}s: {sorted(todo)}")
                await asyncio.sleep(0.5)
        found = await _partition_counts(admin, names)
    finally:
        await admin.close()
    wrong = {n: (found.get(n), topics[n]) for n in names if found.get(n) != topics[n]}
    if wrong:
        raise AdminError(f"topics came back with the wrong partition count (found, wanted): {wrong}")
    ends = await fetch_highwaters(bootstrap, [TopicPartition(n, p) for n in names for p in range(topics[n])], timeout_s)
    left = {f"{tp.topic}[{tp.partition}]": end for tp, end in ends.items() if end != 0}
    if left:
        raise AdminError(f"topics are not empty after being created again: {left}")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already runs
    an event loop (then on a helper thread, blocking the caller)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=target, name="epochflow-run-sync")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
