"""The worker supervisor, with dummy workers (tiny Python processes) instead of Faust."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from epochflow.devstack.process import pid_alive
from epochflow.devstack.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def make_supervisor(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """Supervisors that are stopped after the test whatever happens in it."""
    made: list[Supervisor] = []

    def make(**options: object) -> Supervisor:
        supervisor = Supervisor(tmp_path / "run", **{"backoff_s": 0.05, "stop_timeout_s": 2.0, **options})  # type: ignore[arg-type]
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop()


def test_workers_run_in_their_own_process_groups_with_env_and_log_files(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    supervisor = make_supervisor()
    supervisor.add("a", python("""
        import os, time
        print("role", os.environ["EPOCHFLOW_ROLE"], flush=True)
        while True: time.sleep(0.1)
    """), env={**os.environ, "EPOCHFLOW_ROLE": "positions"})
    supervisor.start()

    pid = supervisor.pid("a")
    assert pid is not None and pid_alive(pid)
    assert os.getpgid(pid) == pid != os.getpgid(0)
    log_path = supervisor.status("a").log_path
    wait_until(lambda: "role positions" in log_path.read_text())


def test_a_crashed_worker_is_restarted_and_counted(make_supervisor: Callable[..., Supervisor], tmp_path: Path) -> None:
    flag = tmp_path / "crashed-once"
    supervisor = make_supervisor()
    # Crashes on its first run only, then stays up.
    supervisor.add("flaky", python(f"""
        import pathlib, sys, time
        flag = pathlib.Path({str(flag)!r})
        if not flag.exists():
            flag.touch()
            sys.exit(3)
        while True: time.sleep(0.1)
    """))
    supervisor.start()

    wait_until(lambda: supervisor.status("flaky").restarts == 1 and supervisor.status("flaky").state == "running")
    status = supervisor.status("flaky")
    assert status.last_exit_code == 3
    assert status.pid is not None and pid_alive(status.pid)


def test_a_worker_that_keeps_crashing_fails_after_max_restarts(make_supervisor: Callable[..., Supervisor]) -> None:
    supervisor = make_supervisor(max_restarts=2)
    supervisor.add("broken", python("import sys; sys.exit(7)"))
    supervisor.start()

    wait_until(lambda: supervisor.status("broken").state == "failed")
    status = supervisor.status("broken")
    assert (status.restarts, status.last_exit_code, status.pid) == (2, 7, None)


def test_kill_crashes_a_worker_and_the_supervisor_restarts_it(make_supervisor: Callable[..., Supervisor]) -> None:
    supervisor = make_supervisor()
    supervisor.add("w", SLEEPER)
    supervisor.start()

    killed = supervisor.kill("w")
    new_pid = supervisor.wait_for_pid("w", not_pid=killed)

    wait_until(lambda: not pid_alive(killed))
    assert pid_alive(new_pid)
    status = supervisor.status("w")
    assert (status.restarts, status.last_exit_code) == (1, -signal.SIGKILL)


def test_a_worker_killed_on_request_is_restarted_at_once_however_often(make_supervisor: Callable[..., Supervisor]) -> None:
    # A chaos run kills workers every few seconds: a backoff that grew with each kill would
    # keep them down longer than the gap between kills.
    supervisor = make_supervisor(backoff_s=30.0)
    supervisor.add("w", SLEEPER)
    supervisor.start()

    pid = supervisor.pid("w")
    for _ in range(4):
        started = time.monotonic()
        pid = supervisor.wait_for_pid("w", not_pid=supervisor.kill("w"), timeout_s=5.0)
        assert time.monotonic() - started < 2.0

    assert pid_alive(pid)
    assert supervisor.status("w").restarts == 4


def test_a_worker_that_crashes_by_itself_again_waits_for_its_backoff(make_supervisor: Callable[..., Supervisor]) -> None:
    supervisor = make_supervisor(backoff_s=30.0)
    supervisor.add("w", python("import sys, time; time.sleep(0.3); sys.exit(5)"))
    supervisor.start()

    wait_until(lambda: supervisor.status("w").state == "backoff")
    time.sleep(1.0)
    assert supervisor.status("w").state == "backoff" and supervisor.status("w").restarts == 0


def test_restart_on_request_replaces_the_process_at_once(make_supervisor: Callable[..., Supervisor]) -> None:
    supervisor = make_supervisor(backoff_s=30.0)  # a restart on request must not wait for backoff
    supervisor.add("w", SLEEPER)
    supervisor.start()
    old_pid = supervisor.pid("w")

    new_pid = supervisor.restart("w")

    assert new_pid != old_pid and pid_alive(new_pid)
    assert old_pid is not None and not pid_alive(old_pid)
    assert supervisor.status("w").restarts == 1


def test_stop_kills_workers_that_ignore_sigterm_and_their_children(
    make_supervisor: Callable[..., Supervisor], tmp_path: Path
) -> None:
    child_pid_file = tmp_path / "child.pid"
    supervisor = make_supervisor(stop_timeout_s=1.0)
    supervisor.add("polite", SLEEPER)
    # Like a Faust worker whose broker vanished: deaf to SIGTERM, with a child of its own.
    supervisor.add("stubborn", python(f"""
        import pathlib, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        pathlib.Path({str(child_pid_file)!r}).write_text(str(child.pid))
        while True: time.sleep(0.1)
    """))
    supervisor.start()
    wait_until(lambda: child_pid_file.exists() and child_pid_file.read_text() != "")
    pids = [supervisor.pid("polite"), supervisor.pid("stubborn"), int(child_pid_file.read_text())]

    started = time.monotonic()
    supervisor.stop()
    took = time.monotonic() - started

    wait_until(lambda: not any(pid_alive(pid) for pid in pids if pid), timeout_s=5)
    assert 1.0 <= took < 5.0
    assert all(status.state == "stopped" for status in supervisor.statuses().values())


def _run_supervisor_process(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """A separate process running a supervisor with one sleeper; returns it and the
    worker's PID."""
    script = textwrap.dedent(f"""
        import sys, time
        from epochflow.devstack.supervisor import Supervisor
        supervisor = Supervisor(__import__("pathlib").Path({str(tmp_path / "run")!r}))
        supervisor.add("w", {SLEEPER!r})
        supervisor.start()
        print(supervisor.pid("w"), flush=True)
        while True:
            time.sleep(0.1)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_its_supervisor(tmp_path: Path, sig: signal.Signals) -> None:
    process, worker_pid = _run_supervisor_process(tmp_path)
    try:
        assert pid_alive(worker_pid)

        process.send_signal(sig)  # SIGTERM: stop() via SystemExit; SIGKILL: parent-death signal
        process.wait(timeout=10)

        wait_until(lambda: not pid_alive(worker_pid), timeout_s=5)
    finally:
        process.kill()
        process.wait()
        if pid_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
