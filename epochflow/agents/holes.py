"""Holes in a role's input, and what a worker does about them.

Offsets within a partition are consecutive on the broker (nothing epochflow reads is
compacted or written in transactions), and every step records the last input offset it
applied (epochflow.tables.journal). So a batch whose inputs do not continue from that
offset shows inputs the consumer never handed over, whatever lost them (Faust's consumer
drops records it fetched for a partition it no longer counts as active, and its commit
steps over a single missing offset). A step takes its inputs only up to such a hole
(`batching.continuing`), and the worker sends its consumer back to the hole's first
offset: the inputs after it come again, in order, and are taken then. While the hole
stays, the consumer is sent back again every `wait_s`.

A hole with no input after it yet (the consumer stands past inputs no step applied, and
nothing newer comes) is found by the worker's watchdog instead (`passed_over`): a partition
whose read offset stands still for its STALL_S is compared with the last input applied, and
sent back the same way (looked at again only after another STALL_S).

Inputs are never skipped while the broker still has them. Only a hole that starts before
the first offset the broker keeps (retention removed the inputs while the role was
stopped) is gone for good: the worker says so, counts it
(`epochflow_input_holes_skipped_total`) and goes on from the first input the broker has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from epochflow import metrics

log = logging.getLogger("epochflow.agents")


@dataclass(frozen=True, slots=True)
class Hole:
    """Inputs of `topic`'s `partition` from `offset` on that did not arrive, while a later
    one did (`seen`: the first that did, not taken)."""

    topic: str
    partition: int
    offset: int
    seen: int

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}]: input {self.offset} did not arrive before input {self.seen}"


def passed_over(topic: str, partition: int, applied: int, position: int | None) -> Hole | None:
    """The hole of a partition whose consumer stands at `position` (its committed offset:
    the next offset it reads) while the last input applied is `applied`: the inputs in
    between were handed over to no step (the hole's `seen` is `position`, which no input
    need have reached yet). None when they were all applied, or when nothing is known (no
    committed offset, or no input applied yet: -1)."""
    if applied < 0 or position is None or position <= applied + 1:
        return None
    return Hole(topic, partition, applied + 1, position)


@dataclass
class _Open:
    offset: int
    seeks: int
    at: float
    earliest: int | None = None  # the broker's first offset, once found past the hole


class Holes:
    """The holes of one worker's input partitions: each is sought back to at once and
    again every `wait_s` while it stays (`take_due`), until a step takes inputs with no
    hole after them (`filled`); or, when the broker no longer has its inputs (`gone`), the
    consumer goes on from the broker's first offset."""

    def __init__(self, wait_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.wait_s = wait_s
        self.clock = clock
        self.open: dict[tuple[str, int], _Open] = {}
        self.due: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset to seek back to

    def resume_at(self, stage: str, hole: Hole) -> int | None:
        """Found by a step: None while the inputs after the hole wait for it; the offset to
        go on from when the broker no longer has the hole's inputs."""
        where, now = (hole.topic, hole.partition), self.clock()
        known = self.open.get(where)
        if known is None or known.offset != hole.offset:
            log.warning("%s: %s; reading again from %d", stage, hole.describe(), hole.offset)
            metrics.INPUT_HOLES.labels(stage).inc()
            self.open[where] = _Open(hole.offset, 1, now)
            self.due[where] = hole.offset
            return None
        if known.earliest is not None:
            return known.earliest
        if now - known.at >= self.wait_s:  # else the inputs read before the seek back are still coming
            known.seeks, known.at = known.seeks + 1, now
            if known.seeks % 10 == 0:
                log.warning("%s: %s; still missing after %d seeks back", stage, hole.describe(), known.seeks)
            self.due[where] = hole.offset
        return None

    def gone(self, stage: str, topic: str, partition: int, earliest: int) -> bool:
        """The broker's first offset of the partition: True (and the hole is to be gone on
        from, said and counted once) when it is past the hole."""
        known = self.open.get((topic, partition))
        if known is None or known.offset >= earliest:
            return False
        if known.earliest is None:
            log.error("%s: %s[%d]: inputs %d..%d are no longer on the broker (it keeps them from %d on); going on "
                      "from there", stage, topic, partition, known.offset, earliest - 1, earliest)
            metrics.INPUT_HOLES_SKIPPED.labels(stage).inc()
        known.earliest = earliest
        return True

    def filled(self, topic: str, partition: int) -> None:
        """A step took inputs of the partition with no hole after them."""
        self.open.pop((topic, partition), None)

    def take_due(self) -> dict[tuple[str, int], int]:
        """The seeks back due now, once."""
        due, self.due = self.due, {}
        return due
