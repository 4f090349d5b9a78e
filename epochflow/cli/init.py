"""`epochflow init` (deployments with their own Kafka and PostgreSQL)."""

from __future__ import annotations

import asyncio

import click


@click.command("init")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
              help="Seconds to keep retrying while Kafka or PostgreSQL is not reachable yet.")
def init_command(timeout_s: float) -> None:
    """Bring PostgreSQL's schema up to date and create the topics with their partition
    counts (EPOCHFLOW_KAFKA_URL, DATABASE_URL, EPOCHFLOW_PARTITIONS), then exit.
    Idempotent: run it before every rollout."""
    from epochflow.config import load_settings
    from epochflow.ops.init import InitError, initialize

    try:
        lines = asyncio.run(
            initialize(load_settings(), timeout_s=timeout_s, report=lambda line: click.echo(line, err=True))
        )
    except InitError as error:
        raise click.ClickException(str(error)) from None
    for line in lines:
        click.echo(line)
