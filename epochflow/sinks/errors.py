"""What a database error means for the sink: try again, or leave a row out.

A batch that failed because PostgreSQL was unreachable, restarting or busy (a lost
connection, an admin shutdown, a serialization failure or deadlock) succeeds when sent
again; a batch that failed because PostgreSQL refused a value in it (a NUL in a text, a
number it cannot store, a violated constraint) fails the same way forever, so the rows it
refuses must be found and set aside. Anything else (a missing table, a permission) is
neither: no row is to blame, so the sink keeps retrying until an operator fixes it.

Errors arrive as asyncpg's exceptions or wrapped by SQLAlchemy (`DBAPIError.orig`, whose
`__cause__` is asyncpg's); both carry PostgreSQL's SQLSTATE, which decides. asyncpg's own
encoding errors come as its `DataError`, SQLSTATE 22000. (Amounts reach PostgreSQL as
text, `sinks.statements`, so one too large for `numeric` is PostgreSQL's 22003.)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"  # the same batch can succeed later: retry it
    REFUSED_ROW = "refused_row"  # PostgreSQL refuses a row in it: isolate that row
    OTHER = "other"  # not a row's fault and not known to pass: retry, loudly


# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_TRANSIENT_CLASSES = ("08", "40", "53", "58")  # connection, rollback (serialization, deadlock), resources, system
_TRANSIENT_CODES = ("57P01", "57P02", "57P03", "57014")  # admin/crash shutdown, cannot connect now, canceled
_REFUSED_CLASSES = ("22", "23", "54")  # data exception (encoding, range), integrity constraint, program limit (row size)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped, and their causes (a short, cycle-free walk)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen or len(seen) >= 8:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, current.__cause__, current.__context__]


def sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of the error (or of what it wraps), if it has one."""
    for item in _chain(error):
        code = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def classify(error: BaseException) -> ErrorKind:
    for item in _chain(error):
        if isinstance(item, (OSError, sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return ErrorKind.TRANSIENT  # OSError covers ConnectionError and TimeoutError
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return ErrorKind.TRANSIENT
    code = sqlstate(error)
    if code is None:
        return ErrorKind.OTHER
    if code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES:
        return ErrorKind.TRANSIENT
    if code[:2] in _REFUSED_CLASSES:
        return ErrorKind.REFUSED_ROW
    return ErrorKind.OTHER


def reason(error: BaseException) -> str:
    """PostgreSQL's message (and detail), without SQLAlchemy's wrapping: what a dead letter
    says about a refused row."""
    for item in _chain(error):
        if isinstance(item, asyncpg.PostgresError):
            message = str(item).strip()
            detail = getattr(item, "detail", None)
            return f"{message} ({detail})" if detail else message
    if isinstance(error, sa_exc.StatementError) and error.orig is not None:
        return str(error.orig).strip()
    return f"{type(error).__name__}: {error}"
