"""One Faust app per role: `epochflow/apps/<role>.py` binds the role, builds its app and
imports the role's modules, so faust's own CLI works on any of them
(`faust -A epochflow.apps.positions worker -l info`, `... agents`, `... tables`), and
`epochflow worker ROLE` runs the same app.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys

import faust

from epochflow.topology import EVERY_ROLE, Role, role

log = logging.getLogger("epochflow.apps")


def build(bound: Role, modules: tuple[str, ...] | None = None) -> faust.App:
    """Bind `bound` as this process's role and declare its topics, tables, agents and views
    (its topology modules, or `modules`, and what every role runs: topology.EVERY_ROLE),
    and the record of its group member id (epochflow.streams.membership)."""
    from epochflow.app import bind
    from epochflow.streams import membership

    app = bind(bound)
    for module in (bound.modules if modules is None else modules) + EVERY_ROLE:
        importlib.import_module(module)
    membership.install(app)  # for the worker that will take its place after a crash
    return app


def load(name: str) -> faust.App:
    """The app of the role called `name` (importing its module builds it)."""
    return importlib.import_module(f"{__name__}.{role(name).name}").app


def refuse_partition_mismatch(name: str) -> None:
    """A worker routes by EPOCHFLOW_PARTITIONS (its ticks, `POST /ingest/`) and co-partitions
    its tables by it: refuse to start when the broker's key-scoped topics say otherwise,
    naming both counts (streams.publish.check_partitions). A broker not reachable yet is
    no mismatch: the worker starts and waits for it as usual."""
    from epochflow.app import settings
    from epochflow.streams.producer import Producer
    from epochflow.streams.publish import PartitionMismatch, check_partitions
    from epochflow.streams.security import client_options

    if not settings.kafka_url:
        return

    async def check() -> None:
        async with Producer(settings.kafka_bootstrap, **client_options(settings)) as producer:
            await check_partitions(settings, producer.partition_counts)

    try:
        asyncio.run(asyncio.wait_for(check(), timeout=30))
    except PartitionMismatch as error:
        print(f"epochflow worker {name}: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # unreachable, timed out: Faust's own retries take over
        log.warning("worker %s: partition counts not checked (%r)", name, error)


def leave_for_predecessor(app: faust.App) -> None:
    """The group member this worker's data directory recorded (its predecessor, killed
    before it could leave) leaves the group now, so this worker joins at once instead of
    after the dead member's session (epochflow.streams.membership). A data directory that
    another live worker holds stops this one, naming it."""
    from epochflow.app import settings
    from epochflow.streams import membership
    from epochflow.streams.security import client_options

    if not settings.kafka_url:
        return
    try:
        membership.leave_for_predecessor(settings.kafka_bootstrap, app.conf.id, app.conf.datadir,
                                         **client_options(settings))
    except membership.DataDirInUse as error:
        print(f"epochflow worker: {error}", file=sys.stderr)
        sys.exit(2)


def run_worker(app: faust.App, name: str) -> None:
    """Run one worker of `app` in this process until it is stopped."""
    from faust.worker import Worker

    from epochflow.runtime import tune_collector

    refuse_partition_mismatch(name)
    leave_for_predecessor(app)

    profile_to = os.environ.get("EPOCHFLOW_PROFILE_DIR")
    if profile_to:  # for performance work: a cProfile dump per worker at exit
        import atexit
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        atexit.register(lambda: profiler.dump_stats(os.path.join(profile_to, f"{name}-{os.getpid()}.prof")))
    level = os.environ.get("EPOCHFLOW_LOG_LEVEL", "WARNING").lower()
    tune_collector()  # last, so everything made while starting is frozen
    Worker(app, loglevel=level, quiet=True).execute_from_commandline()
