"""The Faust app of the role this process runs (EPOCHFLOW_ROLE). Each role is its own app
id and consumer group, so roles scale and replay independently."""

from __future__ import annotations

import os

import faust

from epochflow.config import load_settings
from epochflow.streams.security import faust_options

settings = load_settings()
ROLE = os.environ.get("EPOCHFLOW_ROLE", "positions")


def app_id(role: str) -> str:
    return f"{settings.topic_prefix}-{role}"


if settings.kafka_url:
    from epochflow.streams.fetch_wait import cap_fetch_wait
    from epochflow.streams.highwater import install_fetch_highwaters
    from epochflow.streams.security import client_options

    install_fetch_highwaters(settings.kafka_bootstrap, **client_options(settings))
    cap_fetch_wait(settings.fetch_wait_ms)

DATA_DIR = settings.data_dir / f"{ROLE}-{settings.worker_id}"
DATA_DIR.mkdir(parents=True, exist_ok=True)

app = faust.App(
    app_id(ROLE),
    broker=settings.faust_broker or "kafka://127.0.0.1:9092",
    store="rocksdb://",
    datadir=str(DATA_DIR),
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
    web_enabled=True,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    web_host=settings.web_host,
    **faust_options(settings),
)


@app.task
async def _quiet_client_libraries() -> None:
    """aiokafka and faust log at DEBUG per message when their loggers inherit a low level;
    building those records costs more than the work itself."""
    import logging

    level = logging.getLevelName(settings.log_level.upper())
    for name in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(name).setLevel(level if isinstance(level, int) else logging.WARNING)
