"""The status report of `epochflow status`: per role, whether its worker processes run and
how far its consumer group lags behind the topics it reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from epochflow.config import Settings, mask_url
from epochflow.devstack.process import pid_alive
from epochflow.devstack.stack import read_run_file, settings_for_running_stack
from epochflow.streams.admin import consumer_lag, run_sync
from epochflow.streams.names import topic_name
from epochflow.topology import ROLE_NAMES
from epochflow.topology import role as role_of


async def build_status(
    settings: Settings, run: Mapping[str, Any] | None = None, roles: Sequence[str] = ROLE_NAMES
) -> dict[str, Any]:
    """The status report as plain data. `run` is a running stack's run file (see
    `epochflow.devstack.stack.read_run_file`): without one, workers are not known here (they
    run elsewhere, e.g. in docker compose) and only lag is reported."""
    report: dict[str, Any] = {
        "kafka_url": settings.kafka_url,
        "database_url": mask_url(settings.database_url),
        "topic_prefix": settings.topic_prefix,
        "partitions": settings.partitions,
        "stack_pid": run["pid"] if run else None,
        "roles": {},
    }
    for role in roles:
        topics = [topic_name(settings, short) for short in role_of(role).inputs]
        group = role_of(role).app_id(settings)
        entry: dict[str, Any] = {"group_id": group, "topics": topics}
        if run is not None:
            entry["workers"] = [_worker_entry(w) for w in run.get("workers", []) if w.get("role") == role]
        entry.update(await _lag_entry(settings, group, topics))
        report["roles"][role] = entry
    return report


def _worker_entry(worker: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("name", "pid", "state", "restarts", "web_port", "log")
    return {**{key: worker.get(key) for key in keys}, "alive": pid_alive(worker.get("pid") or 0)}


async def _lag_entry(settings: Settings, group: str, topics: list[str]) -> dict[str, Any]:
    if not settings.kafka_url:
        return {"lag": None, "total_lag": None, "error": "no running stack found and EPOCHFLOW_KAFKA_URL unset"}
    try:
        lag = await consumer_lag(settings.kafka_bootstrap, group, topics)
    except Exception as exc:  # a status report shows the problem rather than dying on it
        return {"lag": None, "total_lag": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"lag": lag, "total_lag": sum(n for parts in lag.values() for n in parts.values())}


def collect_status(data_dir: Path | None = None, roles: Sequence[str] = ROLE_NAMES) -> dict[str, Any]:
    """The report for the stack running from `data_dir` (or the one the environment
    points at); sync, for the CLI."""
    settings = settings_for_running_stack(data_dir)
    return run_sync(build_status(settings, read_run_file(settings.data_dir), roles))


def render_status(report: Mapping[str, Any], as_json: bool = False) -> str:
    """The report as JSON (`--json`) or as a readable table."""
    if as_json:
        return json.dumps(report, indent=2, sort_keys=True)
    lines = [
        f"kafka     {report['kafka_url'] or '(not configured)'}",
        f"database  {report['database_url'] or '(not configured)'}",
        f"topics    prefix {report['topic_prefix']}, {report['partitions']} partitions",
        "",
        f"{'role':<12}{'workers':<16}{'restarts':>9}{'lag':>10}  by partition",
    ]
    for role, entry in report["roles"].items():
        workers = entry.get("workers")
        if workers is None:
            alive, restarts = "unknown", "-"
        else:
            alive = f"{sum(w['alive'] for w in workers)}/{len(workers)} alive"
            restarts = str(sum(w["restarts"] or 0 for w in workers))
        if entry.get("error"):
            lag, detail = "?", entry["error"]
        else:
            lag = str(entry["total_lag"])
            detail = "  ".join(
                f"{topic.rsplit('.', 1)[-1]}[{','.join(str(parts[p]) for p in sorted(parts))}]"
                for topic, parts in entry["lag"].items()
            )
        lines.append(f"{role:<12}{alive:<16}{restarts:>9}{lag:>10}  {detail}")
    return "\n".join(lines)
