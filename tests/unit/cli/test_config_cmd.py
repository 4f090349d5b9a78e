"""`epochflow config`, and a bad setting met by any command or worker: a clean message
naming the variable (exit status 2), never a traceback; passwords never printed or
written to the run file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from epochflow.cli.main import cli
from epochflow.config import VARIABLES, load_settings

SECRET_URL = "postgresql://me:hunter2@db.example:5432/epochflow"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def run(*args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env=env)


def test_config_prints_each_variable_its_value_and_source_with_secrets_masked() -> None:
    result = run("config", DATABASE_URL=SECRET_URL, EPOCHFLOW_API_TOKEN="s3cret", EPOCHFLOW_PARTITIONS="12")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert set(lines) == set(VARIABLES)
    assert lines["EPOCHFLOW_PARTITIONS"] == ["12", "[environment]"]
    assert lines["EPOCHFLOW_TOPIC_PREFIX"] == ["epochflow", "[default]"]
    assert lines["DATABASE_URL"] == ["postgresql://me:***@db.example:5432/epochflow", "[environment]"]
    assert lines["EPOCHFLOW_API_TOKEN"] == ["***", "[environment]"]
    assert "hunter2" not in result.output and "s3cret" not in result.output


def test_config_json() -> None:
    result = run("config", "--json", DATABASE_URL=SECRET_URL, EPOCHFLOW_KAFKA_SASL_PASSWORD="pa55",
                 EPOCHFLOW_KAFKA_SASL_USERNAME="svc")
    assert result.exit_code == 0, result.output
    entries = {e["variable"]: e for e in json.loads(result.output)}
    assert entries["DATABASE_URL"]["value"] == "postgresql://me:***@db.example:5432/epochflow"
    assert entries["EPOCHFLOW_KAFKA_SASL_PASSWORD"] == {
        "variable": "EPOCHFLOW_KAFKA_SASL_PASSWORD", "value": "***", "source": "environment", "secret": True,
        "accepted": entries["EPOCHFLOW_KAFKA_SASL_PASSWORD"]["accepted"]}
    assert "hunter2" not in result.output and "pa55" not in result.output


@pytest.mark.parametrize("command", [["config"], ["config", "--json"], ["status"], ["status", "--json"], ["init"]])
def test_a_bad_setting_stops_a_command_with_a_clean_message(command: list[str]) -> None:
    result = run(*command, EPOCHFLOW_PARTITIONS="twelve", EPOCHFLOW_FANOUT_RATE="-1")
    assert result.exit_code == 2, result.output
    assert "EPOCHFLOW_PARTITIONS='twelve': expected a whole number ≥ 1" in result.output
    assert "EPOCHFLOW_FANOUT_RATE='-1': expected" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)


def test_a_bad_setting_stops_a_worker_with_a_clean_message() -> None:
    env = {**os.environ, "EPOCHFLOW_PARTITIONS": "0"}
    done = subprocess.run([sys.executable, "-m", "epochflow", "worker", "sink"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "EPOCHFLOW_PARTITIONS='0': expected a whole number ≥ 1" in done.stderr
    assert "Traceback" not in done.stderr


async def test_status_does_not_show_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from epochflow.ops.status import build_status, render_status

    monkeypatch.setenv("DATABASE_URL", SECRET_URL)
    report = await build_status(load_settings(), None, roles=("sink",))
    for text in (render_status(report), render_status(report, as_json=True)):
        assert "hunter2" not in text and "me:***@db.example" in text


def test_the_run_file_does_not_hold_the_database_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from epochflow.devstack.stack import EmbeddedStack

    monkeypatch.setenv("DATABASE_URL", SECRET_URL)
    stack = EmbeddedStack(tmp_path, roles=())
    assert stack.database_url == SECRET_URL  # what the workers are given
    written = json.dumps(stack.describe())  # what `_write_run_file` writes
    assert "hunter2" not in written and "me:***@db.example" in written
