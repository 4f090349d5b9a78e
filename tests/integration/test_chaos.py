"""`epochflow chaos` on two fast public cases, with a worker SIGKILLed every 6-15 s: the
real command on the real embedded stack (a fresh stack per case).

It checks the command, not yet the roles' crash safety: every case must reach a verdict
(the command neither wedges nor crashes), every kill is reported with how its recovery
ended, and the summary has the kills and recovery times per role."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from epochflow.scenarios.chaos import DEFAULT_ROLES

CASES_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "acceptance" / "public_cases.json"
CASES = ("simple_buy_and_valuation", "backdated_transaction_epoch_bump")
ROLES = DEFAULT_ROLES  # the roles whose workers it kills by default

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not CASES_FILE.exists(), reason=f"{CASES_FILE} not found"),
]


def test_chaos_runs_the_cases_under_kills_and_reports_recovery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EPOCHFLOW_KAFKA_URL", "DATABASE_URL")}
    env["TMPDIR"] = str(tmp_path)  # where the cases' stacks live: nothing may be left there
    done = subprocess.run(
        [sys.executable, "-m", "epochflow", "chaos", str(CASES_FILE), "--case", CASES[0], "--case", CASES[1],
         "--kill-every", "6", "15", "--seed", "1", "--timeout", "90"],
        capture_output=True, text=True, timeout=400, env=env,
    )
    out = done.stdout
    print(out)
    print(done.stderr[-3000:])
    lines = out.splitlines()

    # every case reached a verdict, and the run its totals (passing is not asserted yet)
    verdicts = {m.group(2): m.group(1) for m in (re.match(r"(PASS|FAIL|SKIP) (\w+)", line) for line in lines) if m}
    assert set(verdicts) == set(CASES), f"a case has no verdict line:\n{out}"
    assert not any("could not run" in line for line in lines), "a case's stack broke"
    assert any(re.fullmatch(r"\d+ passed, \d+ failed, \d+ skipped", line) for line in lines)
    assert done.returncode == (1 if "FAIL" in verdicts.values() else 0)

    # progress: each case announced
    assert [line for line in lines if " case " in line and line.endswith("kills so far)")][:1]
    # kills as they happen, and every one's recovery accounted for
    kills = [line for line in lines if re.match(r"\[\d\d:\d\d\.\d\] kill #\d+: \w+ \w+-\d+ pid \d+ \(case \d/2 ", line)]
    assert kills, f"no kill in the run:\n{out}"
    endings = [line for line in lines if re.match(r"\[\d\d:\d\d\.\d\] kill #\d+ \w+-\d+: .* after \d+\.\ds$", line)]
    assert len(endings) == len(kills), "a kill has no recovery line"

    # the summary: kills per role, recovery p50 and max
    summary = lines[next(i for i, line in enumerate(lines) if line.startswith("chaos: ")):]
    assert summary[0].startswith(f"chaos: {len(kills)} kills over 2 case(s), seed 1, a kill every 6-15s")
    table = {line.split()[0]: line.split() for line in summary if line.split() and line.split()[0] in (*ROLES, "all")}
    assert set(table) == {*ROLES, "all"}
    assert int(table["all"][1]) == len(kills)
    assert sum(int(table[role][1]) for role in ROLES) == len(kills)
    for row in table.values():
        assert all(re.fullmatch(r"\d+\.\d|-", value) for value in row[3:5]), row  # p50 s, max s

    assert not list(tmp_path.glob("epochflow-case-*")), "a case's stack was left behind"
