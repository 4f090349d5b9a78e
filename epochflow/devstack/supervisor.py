"""Runs the worker processes of `epochflow up`: each in its own process group, logging to
its own file, restarted with backoff when it crashes, and never left behind.

A Faust worker whose broker vanished can hang on SIGTERM, so every stop is SIGTERM, then
SIGKILL after a deadline (`epochflow.devstack.process`). Children also get the kernel's
parent-death signal, so even a SIGKILLed supervisor leaves nothing running.
"""

from __future__ import annotations

import atexit
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from epochflow.devstack.process import kill_group, signal_group, spawn, terminate, wait_exited

log = logging.getLogger("epochflow.supervisor")


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A snapshot of one supervised worker."""

    name: str
    pid: int | None  # None while waiting to be restarted, or once stopped
    state: str  # "running" | "backoff" | "failed" | "stopped"
    restarts: int
    last_exit_code: int | None
    log_path: Path


class _Worker:
    """Mutable bookkeeping of one worker; guarded by the supervisor's lock."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None, log_path: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.state = "stopped"
        self.restarts = 0
        self.crashes_in_a_row = 0
        self.killed_on_request = False  # by Supervisor.kill(): not a crash of its own
        self.last_exit_code: int | None = None
        self.started_at = 0.0
        self.restart_at = 0.0

    def status(self) -> WorkerStatus:
        pid = self.process.pid if self.process is not None else None
        return WorkerStatus(self.name, pid, self.state, self.restarts, self.last_exit_code, self.log_path)


class Supervisor:
    """Starts named worker processes and keeps them running until `stop()`.

    A worker that exits is restarted after `backoff_s`, doubling per crash in a row up to
    `max_backoff_s` (a worker that ran `stable_after_s` starts over); after
    `max_restarts` it stays "failed". A worker stopped by `kill()` is restarted at once
    and its kill is not counted as a crash in a row: the backoff is for a worker that keeps
    failing by itself, and growing it on deliberate kills (a chaos run's, every few
    seconds) would keep a worker down longer than the gap between kills. `stop()` runs at interpreter exit too, and SIGTERM /
    SIGHUP raise SystemExit in the main thread so `with` blocks and atexit clean up.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        stable_after_s: float = 10.0,
        max_restarts: int | None = None,
        stop_timeout_s: float = 6.0,
        poll_interval_s: float = 0.1,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.poll_interval_s = poll_interval_s
        self.on_change = on_change
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.RLock()
        self._stopping = False
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None
        self._previous_handlers: dict[int, object] = {}

    # -- set up --------------------------------------------------------------------------

    def add(self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Register a worker; it starts with `start()` (or at once if already started)."""
        with self._lock:
            if name in self._workers:
                raise ValueError(f"worker {name!r} already exists")
            worker = _Worker(name, list(cmd), dict(env) if env is not None else None, self.run_dir / f"{name}.log")
            self._workers[name] = worker
            if self._monitor is not None:
                self._spawn(worker)
        self._changed()

    def start(self) -> Supervisor:
        """Start every registered worker and the thread that restarts crashed ones."""
        if self._monitor is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        self._install_signal_handlers()
        with self._lock:
            for worker in self._workers.values():
                self._spawn(worker)
            # Restarted workers are tied (parent-death signal) to this thread: it lives
            # until stop() has terminated them.
            self._monitor = threading.Thread(target=self._watch, name="epochflow-supervisor", daemon=True)
            self._monitor.start()
        self._changed()
        return self

    # -- inspection ------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return list(self._workers)

    def pid(self, name: str) -> int | None:
        """The worker's current PID (None while it waits to be restarted)."""
        return self.status(name).pid

    def status(self, name: str) -> WorkerStatus:
        with self._lock:
            return self._workers[name].status()

    def statuses(self) -> dict[str, WorkerStatus]:
        with self._lock:
            return {name: worker.status() for name, worker in self._workers.items()}

    def wait_for_pid(self, name: str, not_pid: int | None = None, timeout_s: float = 30.0) -> int:
        """Wait until the worker runs with a PID other than `not_pid`; return that PID."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(name)
            if status.state == "running" and status.pid is not None and status.pid != not_pid:
                return status.pid
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name} not (re)started within {timeout_s}s: {status}")
            time.sleep(0.02)

    # -- control ---------------------------------------------------------------------------

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Signal the worker's process group (a crash, by default); the supervisor then
        restarts it like any crashed worker. Returns the signalled PID."""
        with self._lock:
            worker = self._workers[name]
            if worker.process is None or wait_exited(worker.process.pid, 0):
                raise RuntimeError(f"worker {name} is not running ({worker.state})")
            signal_group(worker.process.pid, sig)
            worker.killed_on_request = True
            return worker.process.pid

    def restart(self, name: str) -> int:
        """SIGKILL the worker and start it again at once (no backoff); returns the new PID."""
        with self._lock:
            worker = self._workers[name]
            if self._stopping:
                raise RuntimeError("supervisor is stopping")
            if worker.process is not None:
                worker.last_exit_code = kill_group(worker.process)
            worker.restarts += 1
            self._spawn(worker)
            pid = worker.process.pid  # type: ignore[union-attr]
        self._changed()
        return pid

    def stop(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after stop_timeout_s) and the monitor;
        idempotent, and safe to call from atexit."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            processes = [w.process for w in self._workers.values() if w.process is not None]
        terminate(processes, self.stop_timeout_s)
        with self._lock:
            for worker in self._workers.values():
                if worker.process is not None:
                    worker.last_exit_code = worker.process.returncode
                worker.process = None
                worker.state = "stopped"
        self._closed.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join()
        atexit.unregister(self.stop)
        self._restore_signal_handlers()
        log.info("supervisor.stopped workers=%d", len(processes))

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        # One marker per start, so a log file with several lives reads in order.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with worker.log_path.open("ab") as out:
            out.write(f"\n--- supervisor: start {worker.name} at {stamp}\n".encode())
        worker.process = spawn(worker.cmd, env=worker.env, log_path=worker.log_path)
        worker.killed_on_request = False
        worker.state = "running"
        worker.started_at = time.monotonic()
        log.info("supervisor.started worker=%s pid=%d", worker.name, worker.process.pid)

    def _watch(self) -> None:
        while not self._closed.wait(self.poll_interval_s):
            changed = False
            with self._lock:
                if self._stopping:
                    continue
                now = time.monotonic()
                for worker in self._workers.values():
                    changed |= self._check(worker, now)
            if changed:
                self._changed()

    def _check(self, worker: _Worker, now: float) -> bool:
        if worker.state == "running" and worker.process is not None:
            if not wait_exited(worker.process.pid, 0):
                return False
            code = kill_group(worker.process)  # leftovers of the crashed group go too
            worker.process = None
            worker.last_exit_code = code
            ran_for = now - worker.started_at
            on_request, worker.killed_on_request = worker.killed_on_request, False
            if not on_request:
                worker.crashes_in_a_row = 1 if ran_for >= self.stable_after_s else worker.crashes_in_a_row + 1
            if self.max_restarts is not None and worker.restarts >= self.max_restarts:
                worker.state = "failed"
                log.error("supervisor.failed worker=%s exit=%s restarts=%d", worker.name, code, worker.restarts)
                return True
            delay = 0.0 if on_request else min(self.max_backoff_s, self.backoff_s * 2 ** (worker.crashes_in_a_row - 1))
            worker.state = "backoff"
            worker.restart_at = now + delay
            level = logging.INFO if on_request else logging.WARNING  # a kill on request is expected
            log.log(level, "supervisor.crashed worker=%s exit=%s ran=%.1fs restart_in=%.1fs", worker.name, code, ran_for, delay)
            return True
        if worker.state == "backoff" and now >= worker.restart_at:
            try:
                self._spawn(worker)
            except OSError as exc:
                worker.restart_at = now + self.max_backoff_s
                log.error("supervisor.spawn_failed worker=%s error=%s", worker.name, exc)
                return False
            worker.restarts += 1
            return True
        return False

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # a broken observer must not take the workers down
            log.exception("supervisor.on_change_failed")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            # Only where nobody else has a say: an app's own handler wins.
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._previous_handlers[sig] = signal.signal(sig, _exit_on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            if signal.getsignal(sig) is _exit_on_signal:
                signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous_handlers.clear()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds `with` blocks and runs atexit: the default action would not.
    raise SystemExit(128 + signum)
