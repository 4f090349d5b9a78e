"""What a handler returns for a topic other than results (the batch sends it as is)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """Something to send to a topic other than results (short topic name)."""

    topic: str
    partition: int
    key: bytes
    value: bytes
