"""A long-running command stopped by SIGTERM (a service manager, `kill`) or SIGINT (Ctrl-C)
stops the embedded stack it started: no PostgreSQL, broker or worker of it is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# One small case: long enough that the stack is still up when the signal arrives.
CASES = {
    "cases": [
        {
            "name": "one_buy",
            "business_date": "2025-07-27",
            "events": [
                {"type": "portfolio", "portfolio_id": "P1", "base_currency": "USD", "open_date": "2025-01-01"},
                {"type": "instrument", "security_id": "S1", "name": "S1", "isin": "I1", "currency": "USD",
                 "product_type": "Equity"},
                {"type": "transaction", "transaction_id": "T1", "portfolio_id": "P1", "instrument_id": "S1",
                 "security_id": "S1", "transaction_type": "BUY", "transaction_date": "2025-07-27T10:00:00Z",
                 "quantity": "10", "price": "100", "gross_amount": "1000", "trade_fee": "0",
                 "trade_currency": "USD", "currency": "USD"},
                {"type": "market_price", "security_id": "S1", "price_date": "2025-07-27", "price": "110",
                 "currency": "USD"},
                {"type": "business_date", "date": "2025-07-27"},
            ],
            "expected": {},
        }
    ]
}


def _wait_for_run_file(tmp_path: Path, process: subprocess.Popen[str], timeout_s: float = 90.0) -> dict:
    """The run file of the case's stack (its data dir is a temporary directory under
    TMPDIR), once it lists every worker running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the command ended before its stack was up: {process.communicate()}"
        for run_file in tmp_path.glob("epochflow-case-*/run.json"):
            try:
                run = json.loads(run_file.read_text())
            except (OSError, ValueError):
                continue
            if run["workers"] and all(w["pid"] for w in run["workers"]):
                return run
        time.sleep(0.1)
    raise AssertionError("the case's stack did not come up")


def _stack_pids(run: dict) -> dict[str, int]:
    """Every process of the stack the run file names, with PostgreSQL's backends."""
    pids = {w["name"]: w["pid"] for w in run["workers"]}
    for component in ("kafka", "postgres"):
        if run["embedded"][component] is not None:
            pids[component] = run["embedded"][component]["pid"]
    postmaster = run["embedded"]["postgres"]
    if postmaster is not None:
        for child in psutil.Process(postmaster["pid"]).children(recursive=True):
            pids[f"postgres-{child.pid}"] = child.pid
    return pids


def _processes_of(directory: Path) -> dict[str, int]:
    """Every process whose command line or environment names `directory` (the workers a
    supervisor restarted after the run file was read, PostgreSQL by its data dir)."""
    found = {}
    for process in psutil.process_iter(["pid", "cmdline", "environ"]):
        text = " ".join(process.info["cmdline"] or []) + " ".join((process.info["environ"] or {}).values())
        if str(directory) in text and process.pid != os.getpid() and _alive(process.pid):
            found[f"{' '.join(process.info['cmdline'] or [])[:60]}"] = process.pid
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """The command starts with SIGINT as a terminal's foreground job has it, whatever this
    process was started with: a job a non-interactive shell puts in the background (`cmd
    &`, as some CI runners do) ignores SIGINT, a child inherits that across exec, and a
    Python started so never turns Ctrl-C into KeyboardInterrupt."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler is reset to the default at exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


SCENARIO_RUN = ("scenario", "run", "{cases}")
CHAOS = ("chaos", "{cases}", "--kill-every", "1", "2")  # workers restarted all the time


@pytest.mark.parametrize("command, sig, settle_s", [
    pytest.param(SCENARIO_RUN, signal.SIGTERM, 0.0, id="scenario-run-SIGTERM-while-starting"),
    pytest.param(SCENARIO_RUN, signal.SIGTERM, 3.0, id="scenario-run-SIGTERM-while-running"),
    pytest.param(SCENARIO_RUN, signal.SIGINT, 0.0, id="scenario-run-SIGINT-while-starting"),
    pytest.param(SCENARIO_RUN, signal.SIGINT, 3.0, id="scenario-run-SIGINT-while-running"),
    pytest.param(CHAOS, signal.SIGTERM, 5.0, id="chaos-SIGTERM-while-killing"),
])
def test_a_command_stopped_by_a_signal_leaves_nothing_running(tmp_path: Path, command: tuple[str, ...],
                                                              sig: signal.Signals, settle_s: float) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(CASES))
    env = {k: v for k, v in os.environ.items() if k not in ("EPOCHFLOW_KAFKA_URL", "DATABASE_URL")}
    env["TMPDIR"] = str(tmp_path)
    with _sigint_not_ignored():
        process = subprocess.Popen(
            [sys.executable, "-m", "epochflow", *(part.format(cases=cases) for part in command)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
    pids: dict[str, int] = {}
    try:
        run = _wait_for_run_file(tmp_path, process)
        time.sleep(settle_s)
        pids = _stack_pids(run)
        assert _alive(pids["kafka"]) and _alive(pids["postgres"])
        assert _processes_of(tmp_path), "the scan for leftovers finds the running stack's processes"

        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)

        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {name: pid for name, pid in pids.items() if _alive(pid)} | _processes_of(tmp_path)
        assert not left, f"left running after {sig.name}: {left}\nstderr:\n{stderr[-3000:]}"
        assert process.returncode != 0
        assert not list(tmp_path.glob("epochflow-case-*")), "the case's temporary directory is left behind"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids.values():  # whatever the command left, the test does not leave
            if _alive(pid):
                psutil.Process(pid).kill()
