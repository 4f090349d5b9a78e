"""`epochflow ingest FILE`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", default=None, help="Only this case of a scenario file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def ingest(file: Path, case: str | None, data_dir: Path | None) -> None:
    """Validate and publish the events of FILE (scenario JSON, JSON list or JSON Lines)."""
    from epochflow.devstack.stack import settings_for_running_stack
    from epochflow.ops.ingest import load_events
    from epochflow.schemas.events import InvalidEvent

    try:
        events = load_events(file, case)
    except InvalidEvent as error:
        raise click.ClickException(error.reason) from None
    settings = settings_for_running_stack(data_dir)
    if not settings.kafka_url:
        raise click.ClickException("no running stack found: start one with `epochflow up` or set EPOCHFLOW_KAFKA_URL")
    asyncio.run(_publish_with_progress(settings, events))


async def _publish_with_progress(settings, events: list) -> None:
    from epochflow.streams.producer import Producer
    from epochflow.streams.publish import route
    from epochflow.streams.security import client_options

    async with Producer(settings.kafka_bootstrap, **client_options(settings)) as producer:
        with click.progressbar(events, label=f"publishing {len(events)} events", show_eta=True, show_pos=True) as bar:
            for event in bar:
                for routed in route(event, settings):
                    await producer.send(routed.topic, routed.partition, routed.key, routed.value)
    click.echo(f"published {len(events)} events to {settings.kafka_url}")
