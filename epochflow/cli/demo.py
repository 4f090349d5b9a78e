"""`epochflow demo`."""

from __future__ import annotations

import sys

import click

from epochflow.cli.interrupt import run_interruptible


@click.command()
def demo() -> None:
    """Run the built-in dataset through a fresh embedded stack and show the result."""
    from epochflow.demo.runner import run_demo

    sys.exit(run_interruptible(run_demo(click.echo)))
