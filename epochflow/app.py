"""The Faust app of this process. A process runs one role: `epochflow.apps.<role>` binds
it (`bind`), which builds the app under the role's app id (also its consumer group) and
data dir, so roles scale and replay independently. The role's modules then declare their
topics, tables, agents and views on it with `from epochflow.app import app`; importing
one of them before a role is bound fails and says so.
"""

from __future__ import annotations

import logging

import faust

from epochflow.config import load_settings
from epochflow.streams.security import faust_options
from epochflow.topology import Role

settings = load_settings()


def bind(role: Role) -> faust.App:
    """Build this process's app for `role` (once; binding the same role again returns it)."""
    global app, ROLE
    bound = globals().get("ROLE")
    if bound is not None:
        if bound != role.name:
            raise RuntimeError(f"this process already runs the {bound} role's app; it cannot run {role.name} too")
        return app
    if settings.kafka_url:
        from epochflow.streams.fetch_wait import cap_fetch_wait
        from epochflow.streams.highwater import install_fetch_highwaters
        from epochflow.streams.security import client_options

        install_fetch_highwaters(settings.kafka_bootstrap, **client_options(settings))
        cap_fetch_wait(settings.fetch_wait_ms)
    app = _build(role)
    ROLE = role.name
    return app


def bound_role() -> str | None:
    """The role this process's app runs, or None while none is bound."""
    return globals().get("ROLE")


def __getattr__(name: str):
    if name in ("app", "ROLE"):
        raise ImportError(
            f"epochflow.app.{name}: no role is bound in this process yet; import the role's app module "
            "first (epochflow.apps.<role>, e.g. epochflow.apps.positions)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build(role: Role) -> faust.App:
    data_dir = settings.data_dir / f"{role.name}-{settings.worker_id}"
    data_dir.mkdir(parents=True, exist_ok=True)
    built = faust.App(
        role.app_id(settings),
        broker=settings.faust_broker or "kafka://127.0.0.1:9092",
        store="rocksdb://",
        datadir=str(data_dir),
        autodiscover=False,
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=1000,
        stream_recovery_delay=0.1,
        stream_wait_empty=False,
        producer_linger_ms=2,
        # a step sends up to megabytes at once (journal, table records, results): in
        # batches of 512 KB, not faust's 16 KB, the broker stores and lists far fewer of
        # them (a Kafka broker's default message.max.bytes is 1 MB)
        producer_max_batch_size=1 << 19,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        **faust_options(settings),
    )

    @built.task
    async def _quiet_client_libraries() -> None:
        """aiokafka and faust log at DEBUG per message when their loggers inherit a low level;
        building those records costs more than the work itself."""
        level = logging.getLevelName(settings.log_level.upper())
        for name in ("aiokafka", "faust", "mode", "kafka"):
            logging.getLogger(name).setLevel(level if isinstance(level, int) else logging.WARNING)

    return built
