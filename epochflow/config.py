"""Settings, read from the environment only (the embedded stack sets the same variables).

Every variable is checked when the settings are loaded, all at once: a value that is not
what the variable accepts stops the process with one line per problem, naming the
variable, its value and what it accepts (`ConfigError`; a CLI command exits with status 2).
An empty variable is an unset one. `describe()` is the effective configuration with the
secrets masked, for `epochflow config`.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import click
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator


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
    # the roles that follow other roles' output (scheduler, valuation, fan-out, timeseries):
    # a wider window makes fewer, larger steps, so fewer records for the broker
    follow_within_s: float = 0.1
    sink_within_s: float = 0.03  # the sink: the last hop of every result's latency
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
    fanout_max_in_flight: int = 96
    fanout_in_flight_timeout_s: float = 60.0
    # versions of result rows superseded longer ago than this are dropped (0: keep them all)
    versions_retention_days: int = 0
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


class ConfigError(click.ClickException):
    """One or more variables hold values they do not accept; `problems` has one line each.
    A click exception, so every CLI command that loads the settings prints it and exits
    with status 2 (a usage error), without a traceback."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


# -- what each variable accepts ----------------------------------------------------------

_DB_PREFIXES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
_NAME = r"[A-Za-z0-9._-]+"
_upper = BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

WHOLE_1 = "a whole number ≥ 1"
SECONDS = "a number of seconds > 0"


def _var(name: str, accepted: str, **constraints: Any) -> Any:
    """A variable: its name in the environment and what it accepts (shown in errors, in
    `epochflow config` and in the README's table). Defaults are the Settings' own."""
    return Field(None, alias=name, description=accepted, **constraints)


class _Environment(BaseModel):
    """The variables, typed and bounded; field names are the Settings attributes."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, str_strip_whitespace=True)

    kafka_url: str | None = _var("EPOCHFLOW_KAFKA_URL", "host:port[,host:port…] (kafka:// optional); unset: embedded")
    database_url: str | None = _var(
        "DATABASE_URL", "postgresql://user[:password]@host[:port]/database[?sslmode=…]; unset: embedded"
    )
    partitions: int | None = _var("EPOCHFLOW_PARTITIONS", WHOLE_1, ge=1)
    topic_prefix: str | None = _var("EPOCHFLOW_TOPIC_PREFIX", "letters, digits, '.', '_', '-' (≤ 200)",
                                    pattern=f"^{_NAME}$", max_length=200)
    data_dir: Path | None = _var("EPOCHFLOW_DATA_DIR", "a directory path")
    web_port: int | None = _var("EPOCHFLOW_WEB_PORT", "a port number, 1–65535", ge=1, le=65535)
    web_host: str | None = _var("EPOCHFLOW_WEB_HOST", "a host name or IP address", pattern=r"^\S+$")
    worker_id: str | None = _var("EPOCHFLOW_WORKER_ID", "letters, digits, '.', '_', '-'", pattern=f"^{_NAME}$")
    session_timeout_s: float | None = _var("EPOCHFLOW_SESSION_TIMEOUT_S", SECONDS, gt=0)
    heartbeat_s: float | None = _var("EPOCHFLOW_HEARTBEAT_S", SECONDS, gt=0)
    commit_interval_s: float | None = _var("EPOCHFLOW_COMMIT_INTERVAL_S", SECONDS, gt=0)
    batch_size: int | None = _var("EPOCHFLOW_BATCH_SIZE", WHOLE_1, ge=1)
    batch_within_s: float | None = _var("EPOCHFLOW_BATCH_WITHIN_S", SECONDS, gt=0)
    follow_within_s: float | None = _var("EPOCHFLOW_FOLLOW_WITHIN_S", SECONDS, gt=0)
    sink_within_s: float | None = _var("EPOCHFLOW_SINK_WITHIN_S", SECONDS, gt=0)
    log_level: Annotated[Literal[LOG_LEVELS], _upper] | None = _var(  # type: ignore[valid-type]
        "EPOCHFLOW_LOG_LEVEL", ", ".join(LOG_LEVELS) + " (any case)"
    )
    retry_backoff_s: float | None = _var("EPOCHFLOW_RETRY_BACKOFF_S", "a number of seconds ≥ 0", ge=0)
    max_attempts: int | None = _var("EPOCHFLOW_MAX_ATTEMPTS", WHOLE_1, ge=1)
    processing_timeout_s: float | None = _var("EPOCHFLOW_PROCESSING_TIMEOUT_S", SECONDS, gt=0)
    scheduler_max_processing: int | None = _var("EPOCHFLOW_SCHEDULER_IN_FLIGHT", WHOLE_1, ge=1)
    tick_s: float | None = _var("EPOCHFLOW_TICK_S", SECONDS, gt=0)
    fetch_wait_ms: int | None = _var("EPOCHFLOW_FETCH_WAIT_MS", "a whole number of milliseconds ≥ 1", ge=1)
    fanout_rate_per_s: float | None = _var("EPOCHFLOW_FANOUT_RATE", "a number of keys per second > 0", gt=0)
    fanout_keys_per_cycle: int | None = _var("EPOCHFLOW_FANOUT_BATCH", WHOLE_1, ge=1)
    fanout_claim_batch: int | None = _var("EPOCHFLOW_FANOUT_CLAIM", WHOLE_1, ge=1)
    fanout_max_in_flight: int | None = _var("EPOCHFLOW_FANOUT_IN_FLIGHT", WHOLE_1, ge=1)
    fanout_in_flight_timeout_s: float | None = _var("EPOCHFLOW_FANOUT_IN_FLIGHT_TIMEOUT_S", SECONDS, gt=0)
    versions_retention_days: int | None = _var(
        "EPOCHFLOW_VERSIONS_RETENTION_DAYS", "a whole number of days ≥ 0 (0: keep every version)", ge=0
    )
    kafka_security_protocol: Annotated[Literal[KAFKA_PROTOCOLS], _upper] | None = _var(  # type: ignore[valid-type]
        "EPOCHFLOW_KAFKA_SECURITY_PROTOCOL", ", ".join(KAFKA_PROTOCOLS)
    )
    kafka_sasl_mechanism: Annotated[Literal[KAFKA_MECHANISMS], _upper] | None = _var(  # type: ignore[valid-type]
        "EPOCHFLOW_KAFKA_SASL_MECHANISM", ", ".join(KAFKA_MECHANISMS)
    )
    kafka_sasl_username: str | None = _var("EPOCHFLOW_KAFKA_SASL_USERNAME", "any text; required with SASL_*")
    kafka_sasl_password: str | None = _var("EPOCHFLOW_KAFKA_SASL_PASSWORD", "any text (secret)")
    kafka_ssl_cafile: str | None = _var("EPOCHFLOW_KAFKA_SSL_CAFILE", "a readable PEM file; unset: the system's CAs")
    api_token: str | None = _var("EPOCHFLOW_API_TOKEN", "any text (secret); unset: routes open")
    api_reads_need_token: bool | None = _var("EPOCHFLOW_API_READS_NEED_TOKEN", "true or false (1/0, yes/no, on/off)")
    api_max_body_bytes: int | None = _var("EPOCHFLOW_API_MAX_BODY_BYTES", "a whole number of bytes ≥ 1", ge=1)

    @field_validator("kafka_url")
    @classmethod
    def _kafka_url(cls, value: str | None) -> str | None:
        for part in (value or "").split(","):
            host, sep, port = part.strip().removeprefix("kafka://").rpartition(":")
            if not (host and sep and port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(part)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(_DB_PREFIXES):
            raise ValueError("scheme")
        from urllib.parse import urlsplit

        from epochflow.sinks.schema import tls_options

        try:
            urlsplit(value).port  # noqa: B018 - raises on a port that is not a number
            tls_options(value)  # sslmode and sslrootcert
        except (ValueError, OSError, ssl.SSLError) as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError("not readable")
        return value

    @model_validator(mode="after")
    def _sasl_needs_a_user(self) -> _Environment:
        if (self.kafka_security_protocol or "").startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError("EPOCHFLOW_KAFKA_SASL_USERNAME: required with EPOCHFLOW_KAFKA_SECURITY_PROTOCOL="
                             f"{self.kafka_security_protocol}")
        return self


VARIABLES: dict[str, str] = {f.alias: name for name, f in _Environment.model_fields.items() if f.alias}
"""Environment variable -> Settings attribute."""
SECRETS = frozenset({"DATABASE_URL", "EPOCHFLOW_KAFKA_SASL_PASSWORD", "EPOCHFLOW_API_TOKEN"})


def accepted(variable: str) -> str:
    """What `variable` accepts, in words."""
    return _Environment.model_fields[VARIABLES[variable]].description or ""


def _environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in VARIABLES if environ.get(name, "") != ""}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment (default: `os.environ`); raises `ConfigError`
    naming every variable whose value is not accepted."""
    given = _environment(os.environ if environ is None else environ)
    try:
        env = _Environment.model_validate(given)
    except ValidationError as error:
        raise ConfigError(_problems(error, given)) from None
    values = {name: value for name, value in env.model_dump().items() if value is not None}
    return Settings(**values)


def _problems(error: ValidationError, given: Mapping[str, str]) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        if not item["loc"]:  # a rule across variables: its message names them
            problems.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        variable = str(item["loc"][0])
        value = given.get(variable, "")
        shown = mask_url(value) if variable == "DATABASE_URL" else "***" if variable in SECRETS else value
        problems.append(f"{variable}={shown!r}: expected {accepted(variable)}")
    return problems


# -- secrets -----------------------------------------------------------------------------

_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):(?P<password>[^?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password (user:PASSWORD@ or ?password=) replaced by ***: what
    may be printed, logged or written to a file."""
    masked = _USERINFO.sub(lambda m: f"{m['head']}:***@", url, count=1)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", masked)


def _shown(variable: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if variable == "DATABASE_URL":
        return mask_url(text)
    if variable in SECRETS and text:
        return "***"
    return text


def describe(settings: Settings, environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The effective configuration, one entry per variable: its value as the settings hold
    it (secrets masked), whether it came from the environment or is the default, and what
    it accepts."""
    given = _environment(os.environ if environ is None else environ)
    return [
        {
            "variable": variable,
            "value": _shown(variable, getattr(settings, attribute)),
            "source": "environment" if variable in given else "default",
            "secret": variable in SECRETS,
            "accepted": accepted(variable),
        }
        for variable, attribute in VARIABLES.items()
    ]
