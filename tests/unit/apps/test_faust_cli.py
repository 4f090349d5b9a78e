"""faust's own CLI works on a role's app module: it lists the role's agents and tables
(no broker needed)."""

from __future__ import annotations

import os
import subprocess
import sys


def faust(tmp_path, *args: str) -> str:
    env = {**os.environ, "EPOCHFLOW_DATA_DIR": str(tmp_path)}
    env.pop("EPOCHFLOW_KAFKA_URL", None)
    done = subprocess.run([sys.executable, "-m", "faust", *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_faust_lists_the_positions_agents_and_tables(tmp_path):
    agents = faust(tmp_path, "-A", "epochflow.apps.positions", "agents")
    assert {"@positions.apply", "@positions.reference", "@positions.commands"} <= set(agents.split())
    assert "@sink.write" not in agents
    tables = faust(tmp_path, "-A", "epochflow.apps.positions", "tables")
    assert "position_state" in tables.split()
