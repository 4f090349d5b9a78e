"""`epochflow bench broker`: what one message costs the embedded broker as a partition's
log grows.

Tansu 0.6.0 with memory storage keeps each produced batch as one object, and a fetch that
finds new records lists every batch object of the partition before it reads the new ones
(`fetch` in tansu-storage/src/dynostore.rs); it cannot delete records either
(`delete_records` is not implemented there), so a log only grows. This benchmark shows what
that costs: it grows one partition by single-record batches, as a busy pipeline's small
produce requests do, and after each growth step times messages sent one at a time to a
consumer that follows the partition's end, with the broker's CPU time per message. The
first step is the baseline: the ratio is the cost at the longest log over the cost at the
shortest, in the same run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from epochflow.devstack.broker import start_broker
from epochflow.streams.admin import create_topics
from epochflow.streams.names import TopicSpec

TOPIC = "bench-broker-log"
PROBES = 200  # messages timed after each growth step
WAIT_S = 30.0  # longest wait for the consumer: its group join, one message
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _grow(producer: AIOKafkaProducer, batches: int) -> None:
    """`batches` more batches of one record each: 20 sends in flight at a time, each its
    own produce request (no linger)."""
    for start in range(0, batches, 20):
        futures = [await producer.send(TOPIC, b"x" * 100, partition=0) for _ in range(min(20, batches - start))]
        await asyncio.gather(*futures)


async def _probe(producer: AIOKafkaProducer, received: list[int], broker_pid: int) -> tuple[float, float]:
    """Send PROBES messages one at a time, each only once the consumer has the one before:
    (ms from send to receipt, µs of broker CPU per message), averaged."""
    cpu, started = cpu_seconds(broker_pid), time.perf_counter()
    for _ in range(PROBES):
        seen = received[0]
        await producer.send_and_wait(TOPIC, b"y", partition=0)
        deadline = time.monotonic() + WAIT_S
        while received[0] == seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench broker: a message sent was not received within {WAIT_S:.0f} s")
            await asyncio.sleep(0.0005)
    elapsed = time.perf_counter() - started
    return elapsed / PROBES * 1e3, (cpu_seconds(broker_pid) - cpu) / PROBES * 1e6


async def _run(total: int, step: int, echo: Callable[[str], None]) -> dict:
    broker = start_broker()
    try:
        await create_topics(broker.url, [TopicSpec(TOPIC, 1, "bench broker")])
        producer = AIOKafkaProducer(bootstrap_servers=broker.url, linger_ms=0, acks="all", enable_idempotence=False)
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=broker.url, group_id="bench-broker",
                                    fetch_max_wait_ms=100, auto_offset_reset="latest")
        await producer.start()
        await consumer.start()
        received = [0]

        async def follow() -> None:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received[0] += len(records)

        follower = asyncio.create_task(follow())
        rows = []
        try:
            deadline = time.monotonic() + WAIT_S
            while not consumer.assignment():  # joined, and at the end of the log, before timing
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bench broker: the consumer was not assigned its partition within {WAIT_S:.0f} s")
                await asyncio.sleep(0.05)
            for batches in range(step, total + 1, step):
                await _grow(producer, step)
                latency_ms, cpu_us = await _probe(producer, received, broker.pid)
                rows.append({"batches": batches, "latency_ms": round(latency_ms, 1), "broker_cpu_us_per_message": round(cpu_us)})
                echo(f"  {batches:>9,} batches in the partition: send to receipt {latency_ms:6.1f} ms, "
                     f"broker CPU {cpu_us:8,.0f} µs a message")
        finally:
            follower.cancel()
            await consumer.stop()
            await producer.stop()
    finally:
        broker.stop()
    first, last = rows[0], rows[-1]
    ratio = last["broker_cpu_us_per_message"] / max(first["broker_cpu_us_per_message"], 1)
    slope = (last["broker_cpu_us_per_message"] - first["broker_cpu_us_per_message"]) / max(last["batches"] - first["batches"], 1)
    echo(f"  broker CPU per message at {last['batches']:,} batches / at {first['batches']:,}: {ratio:.2f}x "
         f"(about {slope * 1000:,.0f} µs more per 1,000 batches in the partition)")
    return {"rows": rows, "cpu_ratio_last_vs_first": round(ratio, 2), "cpu_us_per_1000_batches": round(slope * 1000)}


def run(total: int, step: int, echo: Callable[[str], None] = print) -> dict:
    echo(f"bench broker: the embedded broker, one partition grown to {total:,} single-record batches in steps "
         f"of {step:,}; after each, {PROBES} messages sent one at a time to a consumer at the end of the log")
    return asyncio.run(_run(total, step, echo))
