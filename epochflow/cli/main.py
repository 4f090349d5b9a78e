"""The `epochflow` command: one group, its commands in the modules beside this one."""

from __future__ import annotations

import click

from epochflow.cli.bench import bench
from epochflow.cli.chaos import chaos
from epochflow.cli.config_cmd import config_command
from epochflow.cli.demo import demo
from epochflow.cli.ingest import ingest
from epochflow.cli.init import init_command
from epochflow.cli.replay import replay
from epochflow.cli.scenario import scenario
from epochflow.cli.up import status, up
from epochflow.cli.worker import worker


@click.group()
def cli() -> None:
    """epochflow: portfolio positions and valuations kept correct under late, out-of-order,
    duplicated and missing data."""


for command in (up, status, ingest, scenario, init_command, replay, demo, bench, chaos, worker, config_command):
    cli.add_command(command)
