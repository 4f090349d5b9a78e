"""`epochflow demo`."""

from __future__ import annotations

import asyncio
import sys

import click


@click.command()
def demo() -> None:
    """Run the built-in dataset through a fresh embedded stack and show the result."""
    from epochflow.demo.runner import run_demo

    sys.exit(asyncio.run(run_demo(click.echo)))
