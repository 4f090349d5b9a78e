"""`epochflow ingest [--dry-run] [--wait] FILE...`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from epochflow.ops.ingest import FORMATS
from epochflow.schemas.tabular import EVENT_FIELDS

PUBLISH_BATCH = 500  # events sent (and flushed) between two steps of the progress bar


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="json (a scenario file, a JSON list or JSON Lines) or csv; default: from each file's suffix "
                   "(.csv is csv, anything else json).")
@click.option("--type", "event_type", type=click.Choice(list(EVENT_FIELDS)), default=None,
              help="CSV only: the event type of rows without a `type` cell (default: from the file name, "
                   "e.g. transactions.csv, prices.csv, fx_rates.csv).")
@click.option("--case", default=None, help="Only this case of a scenario file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--dry-run", is_flag=True, help="Only validate the files: list every problem (exit status 1 if any), "
              "or what would be published. Needs no broker.")
@click.option("--wait", is_flag=True, help="After publishing, show the engine's progress until it is quiescent "
              "(everything published is in PostgreSQL and valued up to the business date).")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True,
              help="With --wait: give up after this many seconds (exit status 1).")
def ingest(files: tuple[Path, ...], fmt: str | None, event_type: str | None, case: str | None,
           data_dir: Path | None, dry_run: bool, wait: bool, timeout_s: float) -> None:
    """Validate and publish the events of FILE... (scenario JSON, JSON list, JSON Lines, or
    CSV with one event a row), in the order given.

    Nothing is published unless every event of every file is valid; every problem is listed
    with its file, line, event index or CSV row, the field and the reason."""
    from epochflow.ops.ingest import format_of, problem_count, read_files

    paths = list(files)
    formats = {format_of(path, fmt) for path in paths}
    if event_type is not None and formats != {"csv"}:
        raise click.UsageError("--type applies to CSV files only")
    if case is not None and "csv" in formats:
        raise click.UsageError("--case applies to scenario files (JSON) only")
    reading = read_files(paths, case, fmt, event_type)
    named = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files"
    if dry_run:
        _dry_run_report(named, reading)
        return
    if reading.problems:
        _list_problems(reading, f"{named}: {problem_count(reading)}; nothing was published", err=True)

    from epochflow.client import NotQuiescent
    from epochflow.devstack.stack import settings_for_running_stack
    from epochflow.streams.publish import PartitionMismatch

    settings = settings_for_running_stack(data_dir)
    if not settings.kafka_url:
        raise click.ClickException("no running stack found: start one with `epochflow up` or set EPOCHFLOW_KAFKA_URL")
    if wait and not settings.database_url:
        raise click.ClickException("--wait reads the engine's progress from PostgreSQL: set DATABASE_URL")
    try:
        asyncio.run(_publish(settings, reading.events, wait, timeout_s))
    except PartitionMismatch as error:
        raise click.ClickException(f"{error}; nothing was published") from None
    except NotQuiescent as error:
        raise click.ClickException(f"everything was published, but {error}") from None


def _list_problems(reading, closing: str, err: bool) -> None:
    """Every problem, one a line (where: field: reason), then `closing`; exit status 1."""
    for problem in reading.problems:
        click.echo(str(problem), err=err)
    click.echo(closing, err=err)
    sys.exit(1)


def _dry_run_report(named: str, reading) -> None:
    from epochflow.ops.ingest import problem_count

    if reading.problems:
        _list_problems(reading, f"{named}: {problem_count(reading)}", err=False)
    by_type = ", ".join(f"{count} {kind}" for kind, count in reading.counts_by_type().items())
    click.echo(f"{named}: {reading.total} events, all valid (dry run: nothing published)")
    click.echo(f"would publish {len(reading.events)} events" + (f": {by_type}" if by_type else ""))
    if reading.checkpoints:
        click.echo(f"would skip {reading.checkpoints} checkpoint(s): only the scenario runner acts on them")


async def _publish(settings, events: list, wait: bool, timeout_s: float) -> None:
    """Publish with a progress bar; with `wait`, then wait for the engine with a second one,
    through the client the scenario runner and the demo use (`Pipeline.settle`)."""
    if not wait:
        from epochflow.streams.producer import Producer
        from epochflow.streams.publish import check_partitions, publish
        from epochflow.streams.security import client_options

        async with Producer(settings.kafka_bootstrap, **client_options(settings)) as producer:
            await check_partitions(settings, producer.partition_counts)

            async def send(batch: list) -> None:
                await publish(batch, settings, producer.send)
                await producer.flush()  # the bar counts events on the broker, not queued

            await _send_with_progress(events, send)
        click.echo(f"published {len(events)} events to {settings.kafka_url}")
        return

    from epochflow.cli.replay import progress_bar
    from epochflow.client import Pipeline
    from epochflow.ops.ingest import running_roles

    async with await Pipeline.connect(settings, running_roles(settings)) as pipeline:
        await _send_with_progress(events, pipeline.publish)
        click.echo(f"published {len(events)} events to {settings.kafka_url}")
        peak = 0
        with progress_bar("waiting for the engine", 1) as update:

            def outstanding(count: int) -> None:
                nonlocal peak
                peak = max(peak, count)
                update(peak - count, peak)

            seconds = await pipeline.settle(timeout_s, on_progress=outstanding)
            update(peak, peak)
    valued = pipeline.business_date and "scheduler" in pipeline.roles  # what settle waited for
    upto = f", every key valued up to {pipeline.business_date} or waiting for data" if valued else ""
    click.echo(f"quiescent after {seconds:.1f}s: everything published is in PostgreSQL{upto}")


async def _send_with_progress(events: list, send_batch) -> None:
    with click.progressbar(length=len(events), label=f"publishing {len(events)} events", show_eta=True,
                           show_pos=True) as bar:
        for start in range(0, len(events), PUBLISH_BATCH):
            batch = events[start:start + PUBLISH_BATCH]
            await send_batch(batch)
            bar.update(len(batch))
