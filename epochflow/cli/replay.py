"""`epochflow replay ROLE`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from epochflow.topology import REPLAYABLE

if TYPE_CHECKING:
    from epochflow.ops.replay import Progress


@click.command()
@click.argument("role", type=click.Choice(REPLAYABLE))
@click.option("--to-earliest", is_flag=True, help="Read the input topics again from their first offsets; the role's tables are rebuilt.")
@click.option("--to-datetime", "to_datetime", metavar="T", default=None,
              help="Read them again from the first records published at or after T (ISO 8601 with a UTC offset); tables kept.")
@click.option("--keep-state", is_flag=True, help="With --to-earliest: keep the role's tables (it re-reads over them and re-sends its results).")
@click.option("--force", is_flag=True, help="Rebuild positions or the scheduler from empty tables although the results differ (README).")
@click.option("--wait", is_flag=True, help="After the reset, show the replay's progress until the role has caught up.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="With --wait: give up after this many seconds.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before resetting.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def replay(role: str, to_earliest: bool, to_datetime: str | None, keep_state: bool, force: bool, wait: bool,
           timeout_s: float | None, yes: bool, data_dir: Path | None) -> None:
    """Replay ROLE by resetting its consumer group's offsets (from the earliest, its tables
    are rebuilt too). Stop the role's workers first; start them again when told."""
    from epochflow.devstack.stack import read_run_file, settings_for_running_stack
    from epochflow.ops.replay import ReplayError, replay_request, start_hint, summarize, wait_caught_up
    from epochflow.ops.replay import replay as reset_for_replay
    from epochflow.streams.admin import AdminError, run_sync

    try:
        request = replay_request(role, to_earliest, to_datetime, keep_state, force)
    except ReplayError as error:
        raise click.UsageError(str(error)) from None
    settings = settings_for_running_stack(data_dir)
    run = read_run_file(settings.data_dir)
    confirm = None if yes else (lambda plan: click.confirm("reset now?", default=False))
    try:
        plan = run_sync(reset_for_replay(settings, request, run, data_dir=settings.data_dir, echo=click.echo, confirm=confirm))
        if plan is None:
            raise click.Abort()
        click.echo(f"now {start_hint(role, run)}")
        if not wait:
            click.echo("`epochflow status` shows its lag; `--wait` would have shown its progress")
            return
        with progress_bar(f"replaying {role}", plan.backlog) as update:
            seconds = run_sync(wait_caught_up(settings, plan, update, timeout_s))
        click.echo(summarize(plan, seconds))
    except (ReplayError, AdminError) as error:
        raise click.ClickException(str(error)) from None


@contextmanager
def progress_bar(label: str, length: int) -> Iterator[Progress]:
    """A click progress bar (counts and ETA) fed with (done, total)."""
    with click.progressbar(length=max(length, 1), label=label, show_eta=True, show_pos=True) as bar:
        shown = 0

        def update(done: int, total: int) -> None:
            nonlocal shown
            if total > bar.length:
                bar.length = total
            if done > shown:
                bar.update(done - shown)
                shown = done

        yield update
