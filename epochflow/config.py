"""Settings, read from the environment only (the embedded stack sets the same variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("positions", "scheduler", "valuation", "fanout", "sink", "api")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_url: str = ""
    database_url: str = ""
    partitions: int = 4
    topic_prefix: str = "epochflow"
    data_dir: Path = Path(".epochflow")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    worker_id: str = "0"
    session_timeout_s: float = 8.0
    heartbeat_s: float = 0.8
    commit_interval_s: float = 0.5
    batch_size: int = 1000
    batch_within_s: float = 0.1
    follow_within_s: float = 0.03  # scheduler, valuation, sink: latency of the valuation loop
    log_level: str = "WARNING"
    retry_backoff_s: float = 60.0
    max_attempts: int = 5
    processing_timeout_s: float = 60.0
    tick_s: float = 0.25
    fetch_wait_ms: int = 100
    fanout_rate_per_s: float = 2000.0
    fanout_keys_per_cycle: int = 500
    fanout_claim_batch: int = 4
    fanout_max_in_flight: int = 32
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        """host:port list for aiokafka (the URL may be written kafka://host:port)."""
        return ",".join(part.split("://", 1)[-1] for part in self.kafka_url.split(","))

    @property
    def faust_broker(self) -> str:
        return ";".join(
            part if "://" in part else f"kafka://{part}" for part in self.kafka_url.split(",")
        )

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL in the asyncpg dialect SQLAlchemy wants."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        return url


def load_settings() -> Settings:
    return Settings(
        kafka_url=_env("EPOCHFLOW_KAFKA_URL", ""),
        database_url=_env("DATABASE_URL", ""),
        partitions=int(_env("EPOCHFLOW_PARTITIONS", "4")),
        topic_prefix=_env("EPOCHFLOW_TOPIC_PREFIX", "epochflow"),
        data_dir=Path(_env("EPOCHFLOW_DATA_DIR", ".epochflow")),
        web_port=int(_env("EPOCHFLOW_WEB_PORT", "6066")),
        web_host=_env("EPOCHFLOW_WEB_HOST", "127.0.0.1"),
        worker_id=_env("EPOCHFLOW_WORKER_ID", "0"),
        session_timeout_s=float(_env("EPOCHFLOW_SESSION_TIMEOUT_S", "8")),
        heartbeat_s=float(_env("EPOCHFLOW_HEARTBEAT_S", "0.8")),
        commit_interval_s=float(_env("EPOCHFLOW_COMMIT_INTERVAL_S", "0.5")),
        batch_size=int(_env("EPOCHFLOW_BATCH_SIZE", "1000")),
        batch_within_s=float(_env("EPOCHFLOW_BATCH_WITHIN_S", "0.1")),
        follow_within_s=float(_env("EPOCHFLOW_FOLLOW_WITHIN_S", "0.03")),
        log_level=_env("EPOCHFLOW_LOG_LEVEL", "WARNING"),
        retry_backoff_s=float(_env("EPOCHFLOW_RETRY_BACKOFF_S", "60")),
        max_attempts=int(_env("EPOCHFLOW_MAX_ATTEMPTS", "5")),
        processing_timeout_s=float(_env("EPOCHFLOW_PROCESSING_TIMEOUT_S", "60")),
        tick_s=float(_env("EPOCHFLOW_TICK_S", "0.25")),
        fetch_wait_ms=int(_env("EPOCHFLOW_FETCH_WAIT_MS", "100")),
        fanout_rate_per_s=float(_env("EPOCHFLOW_FANOUT_RATE", "2000")),
        fanout_keys_per_cycle=int(_env("EPOCHFLOW_FANOUT_BATCH", "500")),
        fanout_claim_batch=int(_env("EPOCHFLOW_FANOUT_CLAIM", "4")),
        fanout_max_in_flight=int(_env("EPOCHFLOW_FANOUT_IN_FLIGHT", "32")),
    )
