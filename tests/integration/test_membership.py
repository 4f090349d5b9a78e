"""A restarted worker takes its killed predecessor's place in the consumer group at once
(epochflow.streams.membership), against a real broker and real workers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from epochflow.devstack.broker import BrokerHandle
from epochflow.streams import membership
from epochflow.streams.admin import GroupReader, create_topics
from epochflow.streams.names import TopicSpec
from epochflow.topology import app_id
from tests.fixtures.stack import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# the embedded broker holds a join for half the session timeout; a member that is never
# removed is dropped when its session runs out, so a join that ends sooner than that after
# the kill proves it was removed
SESSION_TIMEOUT_S = 20

# a group member that records its member id (as a worker does), then runs until it is killed
MEMBER = """
import asyncio, sys
from pathlib import Path
from aiokafka import AIOKafkaConsumer

async def main(bootstrap, group, topic, path):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    Path(path).write_text(consumer._coordinator.member_id)
    print("joined", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
""".replace("SESSION_MS", str(SESSION_TIMEOUT_S * 1000))


async def seconds_to_join(bootstrap: str, group: str, topic: str) -> float:
    started = time.monotonic()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                session_timeout_ms=SESSION_TIMEOUT_S * 1000, heartbeat_interval_ms=500)
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        return time.monotonic() - started
    finally:
        await consumer.stop()


async def test_a_member_killed_without_leaving_is_replaced_at_once(broker: BrokerHandle, tmp_path: Path) -> None:
    topic, group = f"membership-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    await create_topics(broker.url, [TopicSpec(topic, 4, "test")])
    path = tmp_path / membership.MEMBER_FILE
    member = subprocess.Popen([sys.executable, "-c", MEMBER, broker.url, group, topic, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert member.stdout is not None and member.stdout.readline().strip() == "joined"
    finally:
        member.send_signal(signal.SIGKILL)
        member.wait()
        killed = time.monotonic()
    recorded = path.read_text()

    code = await asyncio.to_thread(membership.leave_for_predecessor, broker.url, group, tmp_path)

    assert code == 0, f"the broker refused the LeaveGroup of {recorded}"
    assert not path.exists()
    # the dead member is gone: the next one joins without waiting out its session
    await seconds_to_join(broker.url, group, topic)
    assert time.monotonic() - killed < SESSION_TIMEOUT_S - 3
    # nothing recorded, nothing sent
    assert await asyncio.to_thread(membership.leave_for_predecessor, broker.url, group, tmp_path) is None


async def test_a_member_that_is_gone_already_changes_nothing(broker: BrokerHandle, tmp_path: Path) -> None:
    topic, group = f"membership-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    await create_topics(broker.url, [TopicSpec(topic, 2, "test")])
    path = tmp_path / membership.MEMBER_FILE
    membership.record(path, "a-member-that-never-was")

    code = await asyncio.to_thread(membership.leave_for_predecessor, broker.url, group, tmp_path)

    assert code is not None  # answered: UNKNOWN_MEMBER_ID by Kafka, 0 by the embedded broker; no effect
    assert not path.exists()
    assert await seconds_to_join(broker.url, group, topic) < SESSION_TIMEOUT_S - 3


def test_a_worker_records_the_member_id_the_broker_gave_it() -> None:
    with running_stack(("positions",)) as stack:
        worker = stack.workers[0]
        group = app_id(stack.settings, "positions")
        path = membership.member_file(worker.data_dir / worker.name)

        async def members() -> list[str]:
            async with GroupReader(stack.settings.kafka_bootstrap) as groups:
                return [m.member_id for m in await groups.members(group)]

        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert path.exists(), f"{worker.name} recorded no member id in {path}"
        assert path.read_text() in asyncio.run(members())
