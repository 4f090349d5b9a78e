"""`epochflow demo`."""

from __future__ import annotations

import sys

import click

from epochflow.cli.interrupt import run_interruptible


@click.command()
@click.option("--keep-running", is_flag=True,
              help="After the demo, leave the stack up (dashboard, API docs and a portfolio page printed) "
                   "until Ctrl-C, which stops everything.")
def demo(keep_running: bool) -> None:
    """Run the built-in dataset through a fresh embedded stack and show the result."""
    from epochflow.demo.runner import run_demo

    try:
        code = run_interruptible(run_demo(click.echo, keep_running))
    except KeyboardInterrupt:
        if not keep_running:
            raise
        # the stack has stopped by now: the interruption unwound run_demo's `async with`
        click.echo("stopped; nothing left running.")
        code = 0
    sys.exit(code)
