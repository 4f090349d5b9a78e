"""`epochflow up` and `epochflow status`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from epochflow.config import mask_url
from epochflow.topology import ROLE_NAMES


def _parse_workers(values: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        role, _, n = value.partition("=")
        if role not in ROLE_NAMES or not n.isdigit() or int(n) < 1:
            raise click.BadParameter(f"{value!r}: expected ROLE=N with ROLE one of {', '.join(ROLE_NAMES)}")
        counts[role] = int(n)
    return counts


@click.command()
@click.option("--workers", "workers", multiple=True, metavar="ROLE=N", help="Run N workers of ROLE (repeatable).")
@click.option("--partitions", type=int, default=None, help="Partitions per key-scoped topic.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where state, logs and the run file live.")
def up(workers: tuple[str, ...], partitions: int | None, data_dir: Path | None) -> None:
    """Start the stack: embedded broker and PostgreSQL (unless EPOCHFLOW_KAFKA_URL /
    DATABASE_URL point elsewhere), topics, schema, and a worker process per role. Ctrl-C
    stops everything."""
    from epochflow.devstack.stack import EmbeddedStack, StackError
    from epochflow.ops.status import collect_status, render_status

    stack = EmbeddedStack(data_dir, workers_per_role=_parse_workers(workers), partitions=partitions)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with stack:
            click.echo(f"kafka     {stack.kafka_url}")
            click.echo(f"database  {mask_url(stack.database_url)}")
            stack.wait_ready(120)
            for worker in stack.describe()["workers"]:
                click.echo(f"worker    {worker['name']:<14} pid {worker['pid']:<8} http://127.0.0.1:{worker['web_port']}/")
            click.echo(render_status(collect_status(stack.data_dir)))
            click.echo("epochflow is up. `epochflow ingest FILE` in another shell; Ctrl-C stops everything.")
            stack.wait()
    except KeyboardInterrupt:
        click.echo("stopping...")
    except StackError as error:
        raise click.ClickException(str(error)) from None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def status(as_json: bool, data_dir: Path | None) -> None:
    """Whether each role's workers are up and how far behind they are."""
    from epochflow.ops.status import collect_status, render_status

    report = collect_status(data_dir)
    click.echo(render_status(report, as_json=as_json))
    if not report.get("kafka_url"):
        sys.exit(1)
