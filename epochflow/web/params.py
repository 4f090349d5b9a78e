"""What a request says, checked: ids, dates, date ranges, paging and enumerations.

Every failure is an `ApiError` whose message names the parameter and says what it must
be, so a caller never has to guess from a 500. Nothing here touches the database: values
that pass are handed to the reads as bound parameters, and each is bounded by the column
it reaches (an epoch or a count by PostgreSQL's 32-bit integer, an id by the same rule
ingest applies, `epochflow.schemas.fields.id_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime

from epochflow.schemas.fields import ISO_DATE, KEY_SEPARATOR, id_problem

INT32_MAX = 2**31 - 1  # PostgreSQL's integer: epoch, partition, attempt and key counts
MAX_SUBJECT_PARTS = 3  # fx|FROM|TO


class ApiError(Exception):
    """An answer other than 200: `status` and a message for `{"error": ...}`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def identifier(name: str, value: str) -> str:
    """A portfolio or security id, by the rule ingest applies: an id ingest refuses could
    never have been stored, and one it accepts can always be read back."""
    problem = id_problem(value)
    if problem:
        raise bad_request(f"{name} {problem}")
    return value


def optional_identifier(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return None if value is None else identifier(name, value)


def optional_subject(query: Mapping[str, str], name: str) -> str | None:
    """A fan-out subject, `price|SECURITY` or `fx|FROM|TO`: ids joined by `|`."""
    value = query.get(name)
    if value is None:
        return None
    parts = value.split(KEY_SEPARATOR)
    if len(parts) > MAX_SUBJECT_PARTS:
        raise bad_request(f"{name} has more than {MAX_SUBJECT_PARTS} parts separated by {KEY_SEPARATOR!r}")
    for part in parts:
        problem = id_problem(part)
        if problem:
            raise bad_request(f"{name}: a part {problem}")
    return value


def iso_date(name: str, value: str) -> date:
    """A calendar date written YYYY-MM-DD (only that form: no week dates, no compact form)."""
    if not ISO_DATE.fullmatch(value):
        raise bad_request(f"{name} must be a date written YYYY-MM-DD, not {_shown(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{name} is not a calendar date: {_shown(value)}") from None


def optional_date(query: Mapping[str, str], name: str) -> date | None:
    value = query.get(name)
    return None if value is None else iso_date(name, value)


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})")


def optional_timestamp(query: Mapping[str, str], name: str) -> datetime | None:
    """An instant written ISO 8601 with its offset (`2026-12-03T21:00:00.123456Z`,
    `...+01:00`); a '+' sent unescaped arrives as a space and is read as the '+' it was."""
    value = query.get(name)
    if value is None:
        return None
    written = value[:-6] + "+" + value[-5:] if len(value) > 6 and value[-6] == " " else value
    if not _TIMESTAMP.fullmatch(written):
        raise bad_request(f"{name} must be an ISO 8601 time with its offset, e.g. 2026-12-03T21:00:00Z, not {_shown(value)}")
    try:
        return datetime.fromisoformat(written)
    except ValueError:
        raise bad_request(f"{name} is not a valid time: {_shown(value)}") from None


def date_range(query: Mapping[str, str]) -> tuple[date | None, date | None]:
    """`from` and `to`, both optional and inclusive; `from` after `to` is an error."""
    date_from, date_to = optional_date(query, "from"), optional_date(query, "to")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise bad_request(f"from ({date_from}) is after to ({date_to})")
    return date_from, date_to


def integer(name: str, value: str, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """An integer within minimum..maximum (by default what a 32-bit column holds, >= 0)."""
    # int() would accept " 7", "7_000" and "٧": only plain ASCII digits with an optional sign
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
        raise bad_request(f"{name} must be an integer, not {_shown(value)}")
    number = int(value)
    if number < minimum or number > maximum:
        raise bad_request(f"{name} must be {minimum}..{maximum}, not {number}")
    return number


def optional_integer(query: Mapping[str, str], name: str, minimum: int = 0, maximum: int = INT32_MAX) -> int | None:
    value = query.get(name)
    return None if value is None else integer(name, value, minimum, maximum)


def paging(query: Mapping[str, str], default_limit: int = 100, max_limit: int = 1000) -> tuple[int, int]:
    """`limit` (1..max_limit) and `offset` (0..INT32_MAX) of a list."""
    limit = integer("limit", query.get("limit", str(default_limit)), 1, max_limit)
    offset = integer("offset", query.get("offset", "0"), 0, INT32_MAX)
    return limit, offset


def choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, not {_shown(value)}")
    return value


def boolean(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise bad_request(f"{name} must be true or false, not {_shown(value)}")
    return value == "true"


def _shown(value: str, most: int = 40) -> str:
    """A caller's value quoted for a message, cut short and with control characters escaped."""
    return repr(value if len(value) <= most else value[:most] + "…")
