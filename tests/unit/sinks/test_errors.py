"""Which database errors the sink retries and which mean a row PostgreSQL refuses."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from epochflow.sinks.errors import ErrorKind, classify, reason, sqlstate


class _AdaptedError(Exception):
    """What SQLAlchemy's asyncpg adapter raises in place of asyncpg's error (`from` it)."""


def wrapped(error: BaseException, *, invalidated: bool = False) -> DBAPIError:
    """The error as SQLAlchemy hands it to the sink: DBAPIError -> adapter error -> asyncpg's."""
    adapted = _AdaptedError(f"{type(error)}: {error}")
    adapted.sqlstate = getattr(error, "sqlstate", None)  # type: ignore[attr-defined]
    adapted.__cause__ = error
    outer = DBAPIError("INSERT INTO transactions ...", {}, adapted, connection_invalidated=invalidated)
    outer.__cause__ = adapted
    return outer


TRANSIENT = [
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process"),
    asyncpg.exceptions.SerializationError("could not serialize access due to concurrent update"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),
]

REFUSED = [
    asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
    asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
    asyncpg.exceptions.DataError(
        "invalid input for query argument $7: [Decimal('9E+999999')] "
        "(cannot encode Decimal value into numeric: exponent is too large)"
    ),
    asyncpg.exceptions.InvalidTextRepresentationError('invalid input syntax for type numeric: "x"'),
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.CheckViolationError('new row violates check constraint "positive"'),
    asyncpg.exceptions.NotNullViolationError('null value in column "epoch" violates not-null constraint'),
    asyncpg.exceptions.ProgramLimitExceededError("index row size 9000 exceeds btree version 4 maximum 2704"),
]

OTHER = [
    asyncpg.exceptions.UndefinedTableError('relation "transactions" does not exist'),
    asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table transactions"),
    RuntimeError("something else"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_lost_or_busy_database_is_retried(error: BaseException) -> None:
    assert classify(error) is ErrorKind.TRANSIENT
    assert classify(wrapped(error)) is ErrorKind.TRANSIENT


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: type(e).__name__)
def test_a_value_postgresql_refuses_blames_a_row(error: BaseException) -> None:
    assert classify(error) is ErrorKind.REFUSED_ROW
    assert classify(wrapped(error)) is ErrorKind.REFUSED_ROW


@pytest.mark.parametrize("error", OTHER, ids=lambda e: type(e).__name__)
def test_what_no_row_is_to_blame_for_is_neither(error: BaseException) -> None:
    assert classify(error) is ErrorKind.OTHER
    assert classify(wrapped(error)) is ErrorKind.OTHER


def test_sqlalchemy_s_own_disconnect_signals_are_transient() -> None:
    refused_looking = asyncpg.exceptions.DataError("whatever")
    assert classify(wrapped(refused_looking, invalidated=True)) is ErrorKind.TRANSIENT
    assert classify(DisconnectionError("connection invalidated")) is ErrorKind.TRANSIENT
    assert classify(PoolTimeout("QueuePool limit reached")) is ErrorKind.TRANSIENT


def test_the_reason_is_postgresql_s_message_without_the_wrapping() -> None:
    error = asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')
    assert reason(wrapped(error)) == 'invalid byte sequence for encoding "UTF8": 0x00'
    assert sqlstate(wrapped(error)) == "22021"
    assert sqlstate(RuntimeError("x")) is None
    assert reason(RuntimeError("x")) == "RuntimeError: x"
