"""The whole of `epochflow up` on one machine: broker, PostgreSQL, topics and a worker
process per role, plus a run file through which other shells find the running stack.

A component whose URL is already in the environment (EPOCHFLOW_KAFKA_URL, DATABASE_URL)
is used as is; only the missing ones run embedded.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from epochflow.config import Settings, load_settings, mask_url
from epochflow.devstack.broker import BrokerHandle, start_broker
from epochflow.devstack.ports import free_port, port_open
from epochflow.devstack.process import pid_alive
from epochflow.devstack.supervisor import Supervisor
from epochflow.streams.admin import create_topics, run_sync
from epochflow.streams.names import TopicSpec, topic_specs
from epochflow.topology import ROLE_NAMES

log = logging.getLogger("epochflow.stack")

RUN_FILE = "run.json"

WorkerCommand = Callable[[str], Sequence[str]]


class StackError(RuntimeError):
    """The stack could not start (or another one already runs from the same data dir)."""


def worker_command(role: str) -> list[str]:
    """The process the supervisor runs for one worker of `role`."""
    return [sys.executable, "-m", "epochflow", "worker", role]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str  # "<role>-<worker_id>", also the supervisor's name and the log file's
    role: str
    worker_id: str
    web_port: int
    data_dir: Path


class EmbeddedStack:
    """Starts what `epochflow up` needs, in order, and stops it in reverse.

    Use as `with EmbeddedStack(...) as stack:` (or `async with`, which starts and stops
    on a helper thread). `workers_per_role` maps a role to its worker count (default 1).
    With an embedded broker everything starts empty (Tansu keeps nothing), so by default
    (`fresh`) the workers' local state and the embedded database are wiped as well.
    `topics(settings)` names topics to create besides the deployment's (a benchmark's own).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        roles: Sequence[str] = ROLE_NAMES,
        workers_per_role: Mapping[str, int] | None = None,
        partitions: int | None = None,
        topic_prefix: str | None = None,
        command: WorkerCommand = worker_command,
        worker_env: Mapping[str, str] | None = None,
        topics: Callable[[Settings], Sequence[TopicSpec]] | None = None,
        fresh: bool = True,
        stop_timeout_s: float = 6.0,
    ) -> None:
        base = load_settings()
        overrides: dict[str, Any] = {}
        if data_dir is not None:
            overrides["data_dir"] = Path(data_dir)
        if partitions is not None:
            overrides["partitions"] = partitions
        if topic_prefix is not None:
            overrides["topic_prefix"] = topic_prefix
        self.settings: Settings = dataclasses.replace(base, **overrides)
        self.data_dir = self.settings.data_dir.resolve()
        self.roles = tuple(roles)
        self.workers_per_role = dict(workers_per_role or {})
        self.command = command
        self.worker_env = dict(worker_env or {})
        self.topics = topics
        self.fresh = fresh
        self.broker: BrokerHandle | None = None
        self.postgres: Any = None  # epochflow.devstack.postgres.PgHandle when embedded
        self.workers: list[WorkerInfo] = []
        self.supervisor = Supervisor(
            self.data_dir / "logs", stop_timeout_s=stop_timeout_s, on_change=self._write_run_file
        )
        self._run_file_lock = threading.Lock()
        self._started = False
        self._stopping = False
        self._stopped = threading.Event()

    # -- public ----------------------------------------------------------------------------

    @property
    def kafka_url(self) -> str:
        return self.settings.kafka_url

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def run_file(self) -> Path:
        return self.data_dir / RUN_FILE

    def start(self) -> EmbeddedStack:
        """Broker, PostgreSQL, migrations, topics, workers, run file; on failure whatever
        started is stopped again before the error propagates."""
        running = read_run_file(self.data_dir)
        if running is not None:
            raise StackError(f"a stack already runs from {self.data_dir} (pid {running['pid']})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Workers first (they need the broker to leave their groups), then the broker and
        PostgreSQL; removes the run file. Idempotent."""
        with self._run_file_lock:
            if self._stopping:
                return
            self._stopping = True
        atexit.unregister(self.stop)
        try:
            self.supervisor.stop()
        finally:
            try:
                if self.broker is not None:
                    self.broker.stop()
            finally:
                if self.postgres is not None:
                    self.postgres.stop()
                run = read_run_file(self.data_dir)
                if run is not None and run["pid"] == os.getpid():  # never another stack's file
                    self.run_file.unlink(missing_ok=True)
                self._stopped.set()
        log.info("stack.stopped data_dir=%s", self.data_dir)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the stack is stopped (Ctrl-C / SIGTERM end the wait by raising);
        returns whether it stopped within `timeout_s`."""
        return self._stopped.wait(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until every worker serves its web port (its Faust app is up)."""
        deadline = time.monotonic() + timeout_s
        pending = {w.name: w for w in self.workers}
        while pending:
            for name, worker in list(pending.items()):
                status = self.supervisor.status(name)
                if status.state == "failed":
                    raise StackError(f"worker {name} failed; see {status.log_path}")
                if status.state == "running" and port_open(worker.web_port):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise StackError(f"workers not ready within {timeout_s}s: {sorted(pending)}")
            time.sleep(0.1)

    def describe(self) -> dict[str, Any]:
        """What the run file holds: enough for another shell to reach the stack."""
        statuses = self.supervisor.statuses()
        return {
            "pid": os.getpid(),
            "data_dir": str(self.data_dir),
            "kafka_url": self.kafka_url,
            "database_url": mask_url(self.database_url),  # the file is readable by others
            "partitions": self.settings.partitions,
            "topic_prefix": self.settings.topic_prefix,
            "embedded": {
                "kafka": None if self.broker is None else {"pid": self.broker.pid, "log": str(self.broker.log_path)},
                "postgres": None if self.postgres is None else {"pid": self.postgres.pid},
            },
            "workers": [
                {
                    "name": w.name,
                    "role": w.role,
                    "worker_id": w.worker_id,
                    "pid": statuses[w.name].pid,
                    "state": statuses[w.name].state,
                    "restarts": statuses[w.name].restarts,
                    "web_port": w.web_port,
                    "data_dir": str(w.data_dir),
                    "log": str(statuses[w.name].log_path),
                }
                for w in self.workers
                if w.name in statuses
            ],
        }

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedStack:
        starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        if not await _wait_through_cancellations(starting):
            return starting.result()
        # Ctrl-C or SIGTERM while the start went on in its thread: stop what it started
        # (`async with` calls no __aexit__ for an unfinished __aenter__).
        if starting.exception() is None:
            await _wait_through_cancellations(asyncio.ensure_future(asyncio.to_thread(self.stop)))
        raise asyncio.CancelledError

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A second Ctrl-C must not let the caller (and its temporary data dir) go while
        # PostgreSQL is still being stopped.
        stopping = asyncio.ensure_future(asyncio.to_thread(self.stop))
        cancelled = await _wait_through_cancellations(stopping)
        stopping.result()
        if cancelled:
            raise asyncio.CancelledError

    # -- internals -------------------------------------------------------------------------

    def _start(self) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        kafka_url = self.settings.kafka_url
        if not kafka_url:
            self.broker = start_broker(log_path=logs / "broker.log")
            kafka_url = self.broker.url
        database_url = self.settings.database_url
        if not database_url:
            from epochflow.devstack.postgres import start_postgres

            self.postgres = start_postgres(self.data_dir / "postgres")
            database_url = self.postgres.url
            if self.fresh and self.broker is not None:
                run_sync(_recreate_database(database_url))
        self.settings = dataclasses.replace(self.settings, kafka_url=kafka_url, database_url=database_url)

        from epochflow.sinks.schema import migrate

        migrate(database_url)
        extra = list(self.topics(self.settings)) if self.topics is not None else []
        run_sync(create_topics(self.settings.kafka_bootstrap, topic_specs(self.settings) + extra))

        workers_dir = self.data_dir / "workers"
        if self.fresh and self.broker is not None:
            # Local RocksDB state would claim changelog offsets the new broker never had.
            shutil.rmtree(workers_dir, ignore_errors=True)
        for role in self.roles:
            for index in range(self.workers_per_role.get(role, 1)):
                worker = WorkerInfo(f"{role}-{index}", role, str(index), free_port(), workers_dir / f"{role}-{index}")
                worker.data_dir.mkdir(parents=True, exist_ok=True)
                self.workers.append(worker)
                self.supervisor.add(worker.name, self.command(role), self._env(worker))
        self._started = True
        self.supervisor.start()
        log.info("stack.started kafka=%s database=%s workers=%d", kafka_url, mask_url(database_url), len(self.workers))

    def _env(self, worker: WorkerInfo) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            **self.worker_env,
            "EPOCHFLOW_KAFKA_URL": s.kafka_url,
            "DATABASE_URL": s.database_url,
            "EPOCHFLOW_PARTITIONS": str(s.partitions),
            "EPOCHFLOW_TOPIC_PREFIX": s.topic_prefix,
            "EPOCHFLOW_DATA_DIR": str(worker.data_dir),
            "EPOCHFLOW_WEB_PORT": str(worker.web_port),
            "EPOCHFLOW_WORKER_ID": worker.worker_id,
            "PYTHONUNBUFFERED": "1",  # log lines reach the log file as they happen
        }

    def _write_run_file(self) -> None:
        with self._run_file_lock:
            if not self._started or self._stopping:
                return
            tmp = self.run_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.describe(), indent=2) + "\n")
            tmp.replace(self.run_file)  # readers never see half a file


def read_run_file(data_dir: Path | None = None) -> dict[str, Any] | None:
    """The run file of the stack running from `data_dir` (default: EPOCHFLOW_DATA_DIR or
    .epochflow), or None when there is none or its owner process is gone."""
    directory = Path(data_dir) if data_dir is not None else load_settings().data_dir
    try:
        run = json.loads((directory / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return run if pid_alive(int(run.get("pid", 0))) else None


def settings_for_running_stack(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, completed from a running stack's run file where the
    environment leaves the Kafka or database URL unset (what `status` and `ingest` use)."""
    settings = load_settings()
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=Path(data_dir))
    run = read_run_file(settings.data_dir)
    if run is None:
        return settings
    changes: dict[str, Any] = {}
    if not settings.kafka_url:
        changes.update(kafka_url=run["kafka_url"], partitions=run["partitions"], topic_prefix=run["topic_prefix"])
    if not settings.database_url:  # masked when it has a password: only the embedded one (trust auth) has none
        changes["database_url"] = run["database_url"]
    return dataclasses.replace(settings, **changes)


async def _wait_through_cancellations(work: asyncio.Future[Any]) -> bool:
    """Wait until `work` (a thread's, which cannot be interrupted) is done, whatever
    cancellations arrive meanwhile; returns whether one did."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


async def _recreate_database(database_url: str) -> None:
    """Drop and create the database the URL names, so a fresh broker meets a fresh database."""
    import asyncpg

    base, _, name = database_url.rpartition("/")
    name = name.split("?", 1)[0]
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()

