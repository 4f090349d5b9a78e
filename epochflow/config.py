"""Settings, read from the environment only (the embedded stack sets the same variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _flag(name: str, default: str) -> bool:
    """A boolean variable: true/1/yes/on or false/0/no/off (any case); anything else is a
    mistake worth stopping for rather than guessing."""
    value = _env(name, default).strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value in _TRUE


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
    scheduler_max_processing: int = 500
    tick_s: float = 0.25
    fetch_wait_ms: int = 100
    fanout_rate_per_s: float = 2000.0
    fanout_keys_per_cycle: int = 500
    fanout_claim_batch: int = 4
    fanout_max_in_flight: int = 32
    fanout_in_flight_timeout_s: float = 60.0
    # Kafka security for production clusters (every client: workers, CLI, admin)
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""  # CA bundle to verify the brokers (default: the system's)
    extra: dict[str, str] = field(default_factory=dict)
    # the web API: a bearer token for write and admin routes (and reads when
    # api_reads_need_token); no token configured means every route is open
    api_token: str = ""
    api_reads_need_token: bool = False
    api_max_body_bytes: int = 16 * 1024 * 1024

    @property
    def kafka_bootstrap(self) -> str:
        """host:port list for aiokafka (the URL may be written kafka://host:port)."""
        return ",".join(part.split("://", 1)[-1] for part in self.kafka_url.split(","))

    @property
    def faust_broker(self) -> str:
        return ";".join(
            part if "://" in part else f"kafka://{part}" for part in self.kafka_url.split(",")
        )


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
        scheduler_max_processing=int(_env("EPOCHFLOW_SCHEDULER_IN_FLIGHT", "500")),
        kafka_security_protocol=_env("EPOCHFLOW_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
        kafka_sasl_mechanism=_env("EPOCHFLOW_KAFKA_SASL_MECHANISM", "PLAIN").upper(),
        kafka_sasl_username=_env("EPOCHFLOW_KAFKA_SASL_USERNAME", ""),
        kafka_sasl_password=_env("EPOCHFLOW_KAFKA_SASL_PASSWORD", ""),
        kafka_ssl_cafile=_env("EPOCHFLOW_KAFKA_SSL_CAFILE", ""),
        fetch_wait_ms=int(_env("EPOCHFLOW_FETCH_WAIT_MS", "100")),
        fanout_rate_per_s=float(_env("EPOCHFLOW_FANOUT_RATE", "2000")),
        fanout_keys_per_cycle=int(_env("EPOCHFLOW_FANOUT_BATCH", "500")),
        fanout_claim_batch=int(_env("EPOCHFLOW_FANOUT_CLAIM", "4")),
        fanout_max_in_flight=int(_env("EPOCHFLOW_FANOUT_IN_FLIGHT", "32")),
        fanout_in_flight_timeout_s=float(_env("EPOCHFLOW_FANOUT_IN_FLIGHT_TIMEOUT_S", "60")),
        api_token=_env("EPOCHFLOW_API_TOKEN", ""),
        api_reads_need_token=_flag("EPOCHFLOW_API_READS_NEED_TOKEN", "false"),
        api_max_body_bytes=int(_env("EPOCHFLOW_API_MAX_BODY_BYTES", str(16 * 1024 * 1024))),
    )
