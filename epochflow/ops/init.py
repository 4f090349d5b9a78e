"""What `epochflow init` does: bring an external deployment's PostgreSQL schema and Kafka topics to
what this version needs, then return. Idempotent, so it can run before every rollout
(docker-compose runs it before any worker starts).

Kafka and PostgreSQL often start alongside it, so connection errors are retried until a
deadline; anything else (a wrong password, a topic with the wrong partition count) fails
at once, since waiting would not fix it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from epochflow.config import Settings

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRY_INTERVAL_S = 2.0


class InitError(RuntimeError):
    """Kafka or PostgreSQL could not be prepared; the message says which and why."""


async def initialize(
    settings: Settings,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Migrate PostgreSQL to the latest schema revision, then create the topics with their
    partition counts. Returns one human-readable line per thing done.

    Connection errors are retried every `retry_interval_s` until `timeout_s` after the
    call; `report` (if given) hears about each wait, so a slow start is not a silent one.
    """
    from epochflow.sinks.schema import migrate
    from epochflow.streams.admin import create_topics
    from epochflow.streams.names import topic_specs

    missing = [
        name
        for name, value in (("EPOCHFLOW_KAFKA_URL", settings.kafka_url), ("DATABASE_URL", settings.database_url))
        if not value
    ]
    if missing:
        raise InitError(
            f"{' and '.join(missing)} must be set: `epochflow init` prepares an external Kafka and "
            "PostgreSQL (`epochflow up` prepares its embedded ones itself)"
        )

    deadline = time.monotonic() + timeout_s
    database = _describe_database(settings.database_url)
    await _retrying(
        f"PostgreSQL at {database}",
        # migrate() runs its own event loop; on a worker thread it does not block ours.
        lambda: asyncio.to_thread(migrate, settings.database_url),
        deadline=deadline, timeout_s=timeout_s, retry_interval_s=retry_interval_s, report=report,
    )
    lines = [f"postgres  {database}: schema at revision {_head_revision()} (latest)"]

    specs = topic_specs(settings)
    await _retrying(
        f"Kafka at {settings.kafka_bootstrap}",
        lambda: create_topics(settings.kafka_bootstrap, specs),
        deadline=deadline, timeout_s=timeout_s, retry_interval_s=retry_interval_s, report=report,
    )
    width = max(len(spec.name) for spec in specs)
    lines.append(f"kafka     {settings.kafka_bootstrap}: {len(specs)} topics ready")
    for spec in specs:
        partitions = f"{spec.partitions:>3} partition" + ("s" if spec.partitions != 1 else " ")
        lines.append(f"topic     {spec.name:<{width}}  {partitions}  {spec.purpose}")
    return lines


async def _retrying(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    timeout_s: float,
    retry_interval_s: float,
    report: Callable[[str], None] | None,
) -> T:
    attempts = 0
    while True:
        attempts += 1
        try:
            return await attempt()
        except Exception as error:
            if not is_connection_error(error):
                raise InitError(f"{what}: {_describe_error(error)}") from error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InitError(
                    f"{what} not reachable after {timeout_s:g}s ({attempts} attempts); "
                    f"last error: {_describe_error(error)}"
                ) from error
            if report is not None:
                report(f"waiting for {what}: {_describe_error(error)} (giving up in {remaining:.0f}s)")
            await asyncio.sleep(min(retry_interval_s, remaining))


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` (or what caused it) means "not reachable yet" rather than "wrong":
    refused or reset connections, names that do not resolve yet, timeouts, a PostgreSQL
    still starting up, a Kafka that cannot be bootstrapped or has no controller yet."""
    import asyncpg
    from aiokafka.errors import KafkaError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, asyncio.TimeoutError)):  # includes DNS failures
            return True
        if isinstance(
            current,
            (
                asyncpg.exceptions.CannotConnectNowError,  # "the database system is starting up"
                asyncpg.exceptions.PostgresConnectionError,
                asyncpg.exceptions.TooManyConnectionsError,
            ),
        ):
            return True
        if isinstance(current, KafkaError) and current.retriable:
            return True
        # SQLAlchemy keeps the driver's error in .orig; Python's chain has the rest.
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def _describe_error(error: BaseException) -> str:
    name, text = type(error).__name__, str(error).strip()
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"  # aiokafka's errors name themselves


def _describe_database(database_url: str) -> str:
    """host:port/database, without the credentials (this ends up in logs)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception:  # an unparseable URL fails clearly in migrate(); only the label is lost
        return "DATABASE_URL"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from epochflow.sinks.schema import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or "base"
