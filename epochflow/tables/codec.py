"""Compact JSON encoding of the domain's frozen dataclasses for table values and messages.
Decimals travel as strings, so amounts survive exactly."""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")


@cache
def adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def encode(value: Any, kind: Any) -> bytes:
    return adapter(kind).dump_json(value)


def decode(raw: bytes, kind: type[T]) -> T:
    return adapter(kind).validate_json(raw)
