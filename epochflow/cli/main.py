"""The `epochflow` command."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import click

from epochflow.config import ROLES, mask_url


@click.group()
def cli() -> None:
    """epochflow: portfolio positions and valuations kept correct under late, out-of-order,
    duplicated and missing data."""


# -- up / status ------------------------------------------------------------------------

def _parse_workers(values: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        role, _, n = value.partition("=")
        if role not in ROLES or not n.isdigit() or int(n) < 1:
            raise click.BadParameter(f"{value!r}: expected ROLE=N with ROLE one of {', '.join(ROLES)}")
        counts[role] = int(n)
    return counts


@cli.command()
@click.option("--workers", "workers", multiple=True, metavar="ROLE=N", help="Run N workers of ROLE (repeatable).")
@click.option("--partitions", type=int, default=None, help="Partitions per key-scoped topic.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where state, logs and the run file live.")
def up(workers: tuple[str, ...], partitions: int | None, data_dir: Path | None) -> None:
    """Start the stack: embedded broker and PostgreSQL (unless EPOCHFLOW_KAFKA_URL /
    DATABASE_URL point elsewhere), topics, schema, and a worker process per role. Ctrl-C
    stops everything."""
    from epochflow.cli.stack import EmbeddedStack, StackError
    from epochflow.cli.status import collect_status, render_status

    stack = EmbeddedStack(data_dir, workers_per_role=_parse_workers(workers), partitions=partitions)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with stack:
            click.echo(f"kafka     {stack.kafka_url}")
            click.echo(f"database  {mask_url(stack.database_url)}")
            stack.wait_ready(120)
            for worker in stack.describe()["workers"]:
                click.echo(f"worker    {worker['name']:<14} pid {worker['pid']:<8} http://127.0.0.1:{worker['web_port']}/")
            click.echo(render_status(collect_status(stack.data_dir)))
            click.echo("epochflow is up. `epochflow ingest FILE` in another shell; Ctrl-C stops everything.")
            stack.wait()
    except KeyboardInterrupt:
        click.echo("stopping...")
    except StackError as error:
        raise click.ClickException(str(error)) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def status(as_json: bool, data_dir: Path | None) -> None:
    """Whether each role's workers are up and how far behind they are."""
    from epochflow.cli.status import collect_status, render_status

    report = collect_status(data_dir)
    click.echo(render_status(report, as_json=as_json))
    if not report.get("kafka_url"):
        sys.exit(1)


# -- ingest -----------------------------------------------------------------------------

@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", default=None, help="Only this case of a scenario file.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def ingest(file: Path, case: str | None, data_dir: Path | None) -> None:
    """Validate and publish the events of FILE (scenario JSON, JSON list or JSON Lines)."""
    from epochflow.cli.ingest import load_events
    from epochflow.cli.stack import settings_for_running_stack
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


# -- scenario ---------------------------------------------------------------------------

@cli.group()
def scenario() -> None:
    """Acceptance scenarios (shared/acceptance/FORMAT.md)."""


@asynccontextmanager
async def fresh_stack():
    """A new stack per case: business dates are global to an engine instance."""
    from epochflow.cli.stack import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="epochflow-case-") as directory:
        async with EmbeddedStack(Path(directory), topic_prefix=f"case{Path(directory).name[-6:]}") as stack:
            yield stack.settings


@scenario.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--case", default=None, help="Run only the case with this name.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for quiescence at a checkpoint.")
def scenario_run(file: Path, case: str | None, timeout: float) -> None:
    """Run each case on a fresh stack and compare what PostgreSQL holds with the expectations."""
    from epochflow.cli.scenario import run_file
    from epochflow.schemas.events import InvalidEvent

    try:
        results = asyncio.run(run_file(file, fresh_stack, case, timeout, click.echo))
    except InvalidEvent as error:
        raise click.ClickException(error.reason) from None
    sys.exit(1 if any(r.failures for r in results) else 0)


# -- init (deployments with their own Kafka and PostgreSQL) ------------------------------

@cli.command("init")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
              help="Seconds to keep retrying while Kafka or PostgreSQL is not reachable yet.")
def init_command(timeout_s: float) -> None:
    """Bring PostgreSQL's schema up to date and create the topics with their partition
    counts (EPOCHFLOW_KAFKA_URL, DATABASE_URL, EPOCHFLOW_PARTITIONS), then exit.
    Idempotent: run it before every rollout."""
    from epochflow.cli.init import InitError, initialize
    from epochflow.config import load_settings

    try:
        lines = asyncio.run(
            initialize(load_settings(), timeout_s=timeout_s, report=lambda line: click.echo(line, err=True))
        )
    except InitError as error:
        raise click.ClickException(str(error)) from None
    for line in lines:
        click.echo(line)


# -- replay -----------------------------------------------------------------------------

@cli.command()
@click.argument("role", type=click.Choice(["positions", "scheduler", "valuation", "fanout", "sink"]))
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
    from epochflow.cli.broker import BrokerError, run_sync
    from epochflow.cli.replay import ReplayError, progress_bar, replay_request, start_hint, summarize, wait_caught_up
    from epochflow.cli.replay import replay as reset_for_replay
    from epochflow.cli.stack import read_run_file, settings_for_running_stack

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
    except (ReplayError, BrokerError) as error:
        raise click.ClickException(str(error)) from None


# -- demo / bench -----------------------------------------------------------------------

@cli.command()
def demo() -> None:
    """Run the built-in dataset through a fresh embedded stack and show the result."""
    from epochflow.cli.demo import run_demo

    sys.exit(asyncio.run(run_demo(click.echo)))


@cli.group()
def bench() -> None:
    """Benchmarks (apart from the tests); each prints ratios against a baseline run in
    the same invocation."""


@bench.command("ingest")
@click.option("--transactions", "n", default=20000, show_default=True)
@click.option("--keys", "k", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_ingest(n: int, k: int, as_json: bool) -> None:
    """N transactions over K keys through positions and sink, against a naive agent."""
    from epochflow.cli.bench import bench_ingest as run

    figures = asyncio.run(run(n, k, click.echo))
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("replay")
@click.option("--histories", default="1000,5000,20000", show_default=True, help="Transactions per key (H), comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_replay(histories: str, as_json: bool) -> None:
    """Time until a key is CURRENT again after a back-dated trade near the start, middle
    and end of histories of several lengths."""
    from epochflow.cli.bench import bench_replay as run

    figures = asyncio.run(run(tuple(int(h) for h in histories.split(",")), click.echo))
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("fanout")
@click.option("--portfolios", default="1000,10000", show_default=True, help="Holders of the corrected security (N), comma-separated.")
@click.option("--days", default=20, show_default=True, help="Days of history per key (D); the price is corrected D - 10 days back.")
@click.option("--live-rate", default=20.0, show_default=True, help="Live trades per second on other securities.")
@click.option("--idle-seconds", default=15.0, show_default=True, help="How long the live stream runs with no fan-out.")
@click.option("--rate", type=float, default=None, help="EPOCHFLOW_FANOUT_RATE for the run (default: the configured one).")
@click.option("--in-flight", type=int, default=None, help="EPOCHFLOW_FANOUT_IN_FLIGHT for the run (default: the configured one).")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_fanout(portfolios: str, days: int, live_rate: float, idle_seconds: float, rate: float | None,
                 in_flight: int | None, as_json: bool) -> None:
    """A price correction fanned out to N holders: time until all are CURRENT again, and
    live-trade latency during the fan-out against the same stream without it."""
    from epochflow.cli.bench import bench_fanout as run

    if days <= 10:
        raise click.BadParameter("must be more than 10", param_hint="--days")
    env = {name: str(value) for name, value in (("EPOCHFLOW_FANOUT_RATE", rate), ("EPOCHFLOW_FANOUT_IN_FLIGHT", in_flight))
           if value is not None}
    figures = asyncio.run(run(tuple(int(n) for n in portfolios.split(",")), days, live_rate, idle_seconds, click.echo, env))
    if as_json:
        click.echo(json.dumps(figures))


from epochflow.cli.config_cmd import config_command  # noqa: E402
cli.add_command(config_command)


@cli.command(hidden=True)
@click.argument("role", type=click.Choice(list(ROLES) + ["naive"]))
def worker(role: str) -> None:
    """Run one worker of ROLE (the supervisor does this for you)."""
    from epochflow.__main__ import run_worker

    sys.argv = [sys.argv[0]]
    run_worker(role)
