"""`epochflow chaos FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from epochflow.cli.interrupt import run_interruptible


def _names(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kill-every", nargs=2, type=float, default=(6.0, 15.0), show_default=True, metavar="MIN MAX",
              help="Seconds between kills, uniform in [MIN, MAX].")
@click.option("--roles", "roles", default="positions,scheduler,valuation,fanout,timeseries,sink", show_default=True,
              help="Comma-separated roles whose workers are killed.")
@click.option("--seed", default=0, show_default=True, help="Seed of the kill schedule (per case: seed and case name).")
@click.option("--case", "cases", multiple=True, help="Run only these cases (repeatable, or comma-separated).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for quiescence at a checkpoint.")
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each case's logs (the broker's and every worker's) in DIR/CASE.")
def chaos(file: Path, kill_every: tuple[float, float], roles: str, seed: int, cases: tuple[str, ...],
          timeout: float, logs: Path | None) -> None:
    """Run the scenario cases of FILE (each on a fresh stack, as `scenario run` does) while
    SIGKILLing a random worker of ROLES every MIN-MAX seconds; print each kill, each
    case's verdict, and per role the kills and the time to recover (p50, max)."""
    from epochflow.scenarios.chaos import KILLABLE, ChaosOptions, run_chaos
    from epochflow.scenarios.checks import ScenarioFileError
    from epochflow.schemas.events import InvalidEvent

    low, high = kill_every
    if not 0 < low <= high:
        raise click.BadParameter("expected 0 < MIN <= MAX", param_hint="--kill-every")
    chosen = tuple(dict.fromkeys(_names((roles,))))
    unknown = [role for role in chosen if role not in KILLABLE]
    if unknown or not chosen:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'}: roles are {', '.join(KILLABLE)}",
                                 param_hint="--roles")
    options = ChaosOptions((low, high), chosen, seed, timeout, _names(cases) or None, logs)
    try:
        results = run_interruptible(run_chaos(file, options, click.echo))
    except ScenarioFileError as error:  # checked before any stack started
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except InvalidEvent as error:
        raise click.ClickException(error.reason) from None
    sys.exit(1 if any(r.failures for r in results) else 0)
