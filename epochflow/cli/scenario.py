"""`epochflow scenario run FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from epochflow.cli.interrupt import run_interruptible


@click.group()
def scenario() -> None:
    """Acceptance scenarios (shared/acceptance/FORMAT.md)."""


@scenario.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", default=None, help="Run only the case with this name.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for quiescence at a checkpoint.")
def scenario_run(file: Path, case: str | None, timeout: float) -> None:
    """Run each case on a fresh stack and compare what PostgreSQL holds with the expectations.

    The file's shape is checked first: every problem is listed (case, block, row, reason)
    and the exit status is 2, with no stack started."""
    from epochflow.scenarios.checks import ScenarioFileError
    from epochflow.scenarios.runner import fresh_stack, run_file
    from epochflow.schemas.events import InvalidEvent

    try:
        results = run_interruptible(run_file(file, fresh_stack, (case,) if case else None, timeout, click.echo))
    except ScenarioFileError as error:  # checked before any stack started
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except InvalidEvent as error:
        raise click.ClickException(error.reason) from None
    sys.exit(1 if any(r.failures for r in results) else 0)
