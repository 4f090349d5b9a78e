"""Child processes of the embedded stack (broker, PostgreSQL, workers): start them in their
own process group, tell whether they still run, stop them for sure, and show the end of
their logs.

A process whose peer vanished can hang on SIGTERM, so every stop is SIGTERM (or a polite
request), then SIGKILL after a deadline. Children also get the kernel's parent-death
signal, so even a SIGKILLed parent leaves nothing running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("epochflow.process")

_PR_SET_PDEATHSIG = 1
try:
    # Resolved up front: between fork and exec the child must not load anything.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def spawn(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in a new session (its own process group), stdout+stderr appended to
    `log_path`. A terminal's Ctrl-C then reaches only us, so we choose the stop order;
    and the kernel SIGKILLs the child if the thread that spawned it dies."""
    parent = os.getpid()

    def die_with_parent() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    out = open(log_path, "ab") if log_path is not None else None
    try:
        return subprocess.Popen(
            [os.fspath(part) for part in cmd],
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - async-signal-safe: one libc call
        )
    finally:
        if out is not None:
            out.close()


def terminate(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """Stop every process group: SIGTERM all at once, SIGKILL whatever still runs after
    `timeout_s`, and reap the leaders. Returns once they are all gone."""
    # Only unreaped leaders: a reaped PID (and so its group id) may already be reused.
    live = [p for p in processes if p.returncode is None]
    try:
        for process in live:
            signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in live:
            if not wait_exited(process.pid, deadline - time.monotonic()):
                log.warning("process.sigkill pid=%d (still running %.1fs after SIGTERM)", process.pid, timeout_s)
    finally:  # also when the wait is interrupted (a second Ctrl-C): nothing is left running
        for process in live:
            kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL the process group and reap its leader; returns the exit code."""
    if process.returncode is None:
        # Also the leader's stragglers: the group lives on while the leader is unreaped.
        signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait for `pid` (our child) to exit without reaping it."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (PID 1 of a container may never
    reap the orphans it inherits)."""
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill(pid: int) -> None:
    """SIGKILL one process (not our child: nothing to reap)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_dead(pids: Sequence[int], timeout_s: float) -> None:
    """Wait until none of `pids` runs, or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def log_tail(log_path: Path | None, lines: int = 10) -> str:
    """The last `lines` lines of a log file ("" when there is none)."""
    if log_path is None:
        return ""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
