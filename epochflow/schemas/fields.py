"""The rules for single values that every door applies: ids, currencies, amounts, dates
and free text. `POST /ingest/`, `epochflow ingest`, the input topics (through the event
models) and the read API's paths and query parameters (`epochflow.web.params`) all check
an id with `id_problem`, so data that is accepted can always be read back.

Each `*_problem` function returns None for a good value, else what is wrong with it (to
be prefixed with the field's name); the annotated types wrap them for pydantic.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_ID_LENGTH = 256
KEY_SEPARATOR = "|"  # joins portfolio and security into a key: never part of an id
MAX_TEXT_LENGTH = 1000
# PostgreSQL's NUMERIC (unconstrained, as every money and quantity column is) stores up to
# 131072 digits before the point and 16383 after, and refuses a larger exponent (such as
# 9e999999) with an error that stalls the sink; the domain multiplies and sums these values in Python's 28-digit Decimal
# context. 18 digits on each side keeps every input exact, storable and far from both.
MAX_INTEGER_DIGITS = 18
MAX_DECIMAL_PLACES = 18
_MAX_NUMBER_TEXT = 64  # a longer string cannot be a number within those bounds
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*", re.DOTALL)


def id_problem(value: str) -> str | None:
    """An id (portfolio, security, transaction, instrument): 1..256 printable characters,
    no whitespace and no `|`. Quotes, slashes or SQL are harmless (ids only travel as bound
    parameters); control characters (NUL, which PostgreSQL refuses in text), unpaired
    surrogates, invisible format characters and absurd lengths are not."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    if not value.isprintable():
        return "contains control or unprintable characters"
    if " " in value:
        return "contains a space"
    if KEY_SEPARATOR in value:
        return f"contains {KEY_SEPARATOR!r}, which separates the parts of a key"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def text_problem(value: str) -> str | None:
    """Free text (a name, a note): printable characters and spaces, bounded."""
    if len(value) > MAX_TEXT_LENGTH:
        return f"is longer than {MAX_TEXT_LENGTH} characters"
    if not value.isprintable():
        return "contains control or unprintable characters"
    return None


def amount_problem(value: Any) -> tuple[Decimal | None, str | None]:
    """(the exact Decimal, None) for a decimal string, a JSON integer or a Decimal within
    the stored range and scale; (None, what is wrong) otherwise. A JSON float is refused,
    not rounded: `100.123456789012345678` would arrive as 100.12345678901235."""
    if isinstance(value, bool):
        return None, "must be a decimal string such as \"12.5\", not true or false"
    if isinstance(value, float):
        return None, ("is a JSON number with a fraction or an exponent, which is read as a binary float and "
                      "may be rounded: write it as a decimal string, e.g. \"100.12\"")
    if isinstance(value, int):
        number = Decimal(value) if abs(value) < 10**MAX_INTEGER_DIGITS else None
        if number is None:
            return None, f"is out of range: at most {MAX_INTEGER_DIGITS} digits before the decimal point"
    elif isinstance(value, str):
        if value.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
            return None, "must be a finite number (NaN and Infinity are refused)"
        if len(value) > _MAX_NUMBER_TEXT or not _DECIMAL_TEXT.fullmatch(value):
            return None, "must be a decimal number written like \"12.5\" or \"-3\""
        try:
            number = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
            return None, "must be a decimal number written like \"12.5\" or \"-3\""
    elif isinstance(value, Decimal):
        number = value
    else:
        return None, f"must be a decimal string, not {type(value).__name__}"
    if not number.is_finite():
        return None, "must be a finite number (NaN and Infinity are refused)"
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > MAX_DECIMAL_PLACES:
        return None, f"has more than {MAX_DECIMAL_PLACES} decimal places"
    if number.copy_abs() >= Decimal(10) ** MAX_INTEGER_DIGITS:  # abs() would round to 28 digits
        return None, f"is out of range: at most {MAX_INTEGER_DIGITS} digits before the decimal point"
    if number == 0:
        number = Decimal(0)  # "-0", "0E+9": one zero
    elif exponent > 0:
        number = number.quantize(Decimal(1))  # "1E+3" -> 1000: plain digits downstream
    return number, None


def date_problem(value: Any) -> str | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return None
    if isinstance(value, str) and ISO_DATE.fullmatch(value):
        return None  # pydantic still checks it is a calendar date
    return "must be a date written YYYY-MM-DD"


def timestamp_problem(value: Any) -> str | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, str) and len(value) <= 64 and _ISO_TIMESTAMP.fullmatch(value):
        return None
    return "must be an ISO 8601 timestamp such as 2025-08-01T10:00:00Z"


def _refuse(kind: str, problem: str) -> PydanticCustomError:
    # the problem as context, not as the template: a brace in it must not be formatted
    return PydanticCustomError(kind, "{problem}", {"problem": problem})


def _checked_id(value: str) -> str:
    problem = id_problem(value)
    if problem:
        raise _refuse("id", problem)
    return value


def _checked_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise _refuse("text", problem)
    return value


def _checked_amount(value: Any) -> Decimal:
    number, problem = amount_problem(value)
    if problem:
        raise _refuse("amount", problem)
    assert number is not None
    return number


def _checked_date(value: Any) -> Any:
    problem = date_problem(value)
    if problem:
        raise _refuse("date", problem)
    return value


def _checked_timestamp(value: Any) -> Any:
    problem = timestamp_problem(value)
    if problem:
        raise _refuse("timestamp", problem)
    return value


Id = Annotated[
    str,
    AfterValidator(_checked_id),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": r"^[^|\s]+$"}),
]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
Text = Annotated[str, AfterValidator(_checked_text), WithJsonSchema({"type": "string", "maxLength": MAX_TEXT_LENGTH})]
Amount = Annotated[
    Decimal,
    BeforeValidator(_checked_amount),
    WithJsonSchema(
        {
            "type": ["string", "integer"],
            "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
            "description": f"An exact decimal: at most {MAX_INTEGER_DIGITS} digits before the point and "
            f"{MAX_DECIMAL_PLACES} after; a JSON float is refused",
        }
    ),
]
Day = Annotated[date, BeforeValidator(_checked_date)]
Timestamp = Annotated[datetime, BeforeValidator(_checked_timestamp)]
