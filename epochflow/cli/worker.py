"""`epochflow worker ROLE`."""

from __future__ import annotations

import sys

import click

from epochflow.topology import ROLE_NAMES


@click.command()
@click.argument("role", type=click.Choice(ROLE_NAMES))
def worker(role: str) -> None:
    """Run one worker of ROLE in this process (`epochflow up` starts them for you); the
    same app as `faust -A epochflow.apps.ROLE worker`."""
    from epochflow.apps import load, run_worker

    app = load(role)
    sys.argv = [sys.argv[0]]
    run_worker(app, role)
