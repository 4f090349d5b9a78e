"""Reading a JSON document that comes from outside (a request body, an input file).

`json.loads` recurses once per level of nesting: a body nested 10,000 deep ends in a
RecursionError (an answer of 500) before any validation runs. `nesting_problem` scans the
brackets first, outside strings, and stops at the first level past the limit, so a
hostile document costs one pass and no recursion.
"""

from __future__ import annotations

import json
import re
from typing import Any

# the deepest document epochflow reads is a scenario file: {cases: [{events: [{expected:
# {block: [{row}]}}]}]}, 7 levels; 64 leaves room for any honest document
MAX_NESTING = 64

# a JSON string, escapes included (unrolled, so long strings cost no backtracking)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


class DocumentError(ValueError):
    """A document that is not JSON, or nested too deep; the message says which."""


def nesting_problem(raw: bytes | str, limit: int = MAX_NESTING) -> str | None:
    """None when no array or object in `raw` is nested deeper than `limit`, else the reason."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return f"nested deeper than {limit} levels"
        else:
            depth -= 1
    return None


def load_json(raw: bytes | str, limit: int = MAX_NESTING) -> Any:
    """The parsed document, or DocumentError (not JSON, or nested deeper than `limit`).
    Numbers with a fraction or an exponent come back as floats, which the event models
    refuse: they are never rounded into an amount."""
    problem = nesting_problem(raw, limit)
    if problem:
        raise DocumentError(problem)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise DocumentError(f"not JSON: {error}") from None


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, for a message: `an object`, `a list`, `a number`..."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")
