"""`epochflow bench ingest | replay | fanout | timeseries | versions | broker`."""

from __future__ import annotations

import json

import click

from epochflow.cli.interrupt import run_interruptible

PROFILE_HELP = ("Also print where the timed run's time went: seconds per stage and phase (decode, domain, "
                "table reads and writes, produce, sink) and changelog bytes, from the workers' metrics.")


@click.group()
def bench() -> None:
    """Benchmarks (apart from the tests); each prints ratios against a baseline run in
    the same invocation."""
    from epochflow.runtime import tune_collector

    tune_collector()  # the floor runs in this process: as the workers run


@bench.command("ingest")
@click.option("--transactions", "n", default=20000, show_default=True)
@click.option("--keys", "k", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
@click.option("--profile", is_flag=True, help=PROFILE_HELP)
@click.option("--hot-key", is_flag=True, help="Instead: 5,000 trades in one month on one key against 100 keys x 50 "
              "(the cost per trade of a busy key; --transactions and --keys do not apply).")
def bench_ingest(n: int, k: int, as_json: bool, profile: bool, hot_key: bool) -> None:
    """N transactions over K keys through positions and sink, against a naive agent and
    against the floor (the same trades through the domain core in one process)."""
    from epochflow.bench.runner import bench_hot_key, bench_ingest

    figures = run_interruptible(bench_hot_key(click.echo, profile) if hot_key else bench_ingest(n, k, click.echo, profile))
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("replay")
@click.option("--histories", default="1000,5000,20000", show_default=True, help="Transactions per key (H), comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
@click.option("--profile", is_flag=True, help=PROFILE_HELP)
def bench_replay(histories: str, as_json: bool, profile: bool) -> None:
    """Time until a key is CURRENT again after a back-dated trade near the start, middle
    and end of histories of several lengths, and the floor of the same."""
    from epochflow.bench.runner import bench_replay as run

    figures = run_interruptible(run(tuple(int(h) for h in histories.split(",")), click.echo, profile))
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
@click.option("--profile", is_flag=True, help=PROFILE_HELP)
def bench_fanout(portfolios: str, days: int, live_rate: float, idle_seconds: float, rate: float | None,
                 in_flight: int | None, as_json: bool, profile: bool) -> None:
    """A price correction fanned out to N holders: time until all are CURRENT again (and
    the floor of the same), and live-trade latency during the fan-out against the same
    stream without it."""
    from epochflow.bench.runner import bench_fanout as run

    if days <= 10:
        raise click.BadParameter("must be more than 10", param_hint="--days")
    env = {name: str(value) for name, value in (("EPOCHFLOW_FANOUT_RATE", rate), ("EPOCHFLOW_FANOUT_IN_FLIGHT", in_flight))
           if value is not None}
    figures = run_interruptible(run(tuple(int(n) for n in portfolios.split(",")), days, live_rate, idle_seconds, click.echo, env,
                                    profile))
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("timeseries")
@click.option("--keys", default=1000, show_default=True, help="Keys of the portfolio (K).")
@click.option("--days", default=250, show_default=True, help="Days of snapshots per key (D), more than 10.")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_timeseries(keys: int, days: int, as_json: bool) -> None:
    """A back-dated trade in a portfolio of K keys x D days: the series kept as deltas
    against the portfolio's series recomputed from scratch."""
    from epochflow.bench.timeseries import run

    if days <= 10:
        raise click.BadParameter("must be more than 10", param_hint="--days")
    figures = run(keys, days, click.echo)
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("versions")
@click.option("--keys", default=500, show_default=True, help="Keys of the book (K).")
@click.option("--days", default=60, show_default=True, help="Valued days per key (D), at least 2.")
@click.option("--rounds", default=6, show_default=True, help="Revisions of the book (R): price corrections, every other one with a back-dated trade.")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_versions(keys: int, days: int, rounds: int, as_json: bool) -> None:
    """What keeping every version costs: storage, write time with and without the
    versions, and a current read against the same read as at an earlier time."""
    from epochflow.bench.versions import run

    if days < 2:
        raise click.BadParameter("must be at least 2", param_hint="--days")
    figures = run(keys, days, rounds, click.echo)
    if as_json:
        click.echo(json.dumps(figures))


@bench.command("broker")
@click.option("--batches", default=120000, show_default=True, help="Batches the partition grows to.")
@click.option("--step", default=20000, show_default=True, help="Batches added between two measurements.")
@click.option("--json", "as_json", is_flag=True, help="Last line: the figures as one JSON object.")
def bench_broker(batches: int, step: int, as_json: bool) -> None:
    """What a message costs the embedded broker as a partition's log grows: latency and
    broker CPU per message after each growth step, against the first."""
    from epochflow.bench.broker import run

    if step < 1 or batches < 2 * step:
        raise click.BadParameter("must be at least twice --step, and --step at least 1", param_hint="--batches")
    figures = run(batches, step, click.echo)
    if as_json:
        click.echo(json.dumps(figures))
