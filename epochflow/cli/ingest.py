"""`epochflow ingest [--dry-run] FILE`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", default=None, help="Only this case of a scenario file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--dry-run", is_flag=True, help="Only validate FILE: list every problem (exit status 1 if any), "
              "or what would be published. Needs no broker.")
def ingest(file: Path, case: str | None, data_dir: Path | None, dry_run: bool) -> None:
    """Validate and publish the events of FILE (scenario JSON, JSON list or JSON Lines).

    Nothing is published unless every event is valid; every problem is listed with its
    line or event index, the field and the reason."""
    from epochflow.ops.ingest import problem_count, read_events

    reading = read_events(file, case)
    if dry_run:
        _dry_run_report(file, reading)
        return
    if reading.problems:
        _list_problems(reading, f"{file}: {problem_count(reading)}; nothing was published", err=True)

    from epochflow.devstack.stack import settings_for_running_stack
    from epochflow.streams.publish import PartitionMismatch

    settings = settings_for_running_stack(data_dir)
    if not settings.kafka_url:
        raise click.ClickException("no running stack found: start one with `epochflow up` or set EPOCHFLOW_KAFKA_URL")
    try:
        asyncio.run(_publish_with_progress(settings, reading.events))
    except PartitionMismatch as error:
        raise click.ClickException(f"{error}; nothing was published") from None


def _list_problems(reading, closing: str, err: bool) -> None:
    """Every problem, one a line (where: field: reason), then `closing`; exit status 1."""
    for problem in reading.problems:
        click.echo(str(problem), err=err)
    click.echo(closing, err=err)
    sys.exit(1)


def _dry_run_report(file: Path, reading) -> None:
    from epochflow.ops.ingest import problem_count

    if reading.problems:
        _list_problems(reading, f"{file}: {problem_count(reading)}", err=False)
    by_type = ", ".join(f"{count} {kind}" for kind, count in reading.counts_by_type().items())
    click.echo(f"{file}: {reading.total} events, all valid (dry run: nothing published)")
    click.echo(f"would publish {len(reading.events)} events" + (f": {by_type}" if by_type else ""))
    if reading.checkpoints:
        click.echo(f"would skip {reading.checkpoints} checkpoint(s): only the scenario runner acts on them")


async def _publish_with_progress(settings, events: list) -> None:
    from epochflow.streams.producer import Producer
    from epochflow.streams.publish import check_partitions, route
    from epochflow.streams.security import client_options

    async with Producer(settings.kafka_bootstrap, **client_options(settings)) as producer:
        await check_partitions(settings, producer.partition_counts)
        with click.progressbar(events, label=f"publishing {len(events)} events", show_eta=True, show_pos=True) as bar:
            for event in bar:
                for routed in route(event, settings):
                    await producer.send(routed.topic, routed.partition, routed.key, routed.value)
    click.echo(f"published {len(events)} events to {settings.kafka_url}")
