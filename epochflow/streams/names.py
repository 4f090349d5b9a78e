"""Every topic epochflow uses, with its partition count: the one place to look them up.

Key-scoped topics share one partition count (co-partitioned), so a key's whole life
(`portfolio_id|security_id`) is on one worker of each role.
"""

from __future__ import annotations

from dataclasses import dataclass

from epochflow.config import Settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    purpose: str


def topic_name(settings: Settings, short: str) -> str:
    return f"{settings.topic_prefix}.{short}"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    return [
        TopicSpec(topic_name(settings, "transactions"), n, "booked transactions, keyed portfolio|security"),
        TopicSpec(topic_name(settings, "reference"), n, "portfolios, instruments, prices, FX, business dates; each event on every partition"),
        TopicSpec(topic_name(settings, "position-commands"), n, "commands to the positions role (advance / reset watermark), keyed portfolio|security"),
        TopicSpec(topic_name(settings, "results"), n, "rows for PostgreSQL (and for the scheduler and valuation roles); message key = producing role"),
        TopicSpec(topic_name(settings, "valuation-jobs"), n, "valuation jobs from the scheduler, keyed portfolio|security"),
        TopicSpec(topic_name(settings, "scheduler-ticks"), n, "the scheduler's clock, one tick per partition"),
        TopicSpec(topic_name(settings, "fanout-ticks"), n, "the fan-out's clock, one tick per partition"),
        TopicSpec(topic_name(settings, "portfolio-changes"), n, "snapshot, epoch and cash-flow changes for the timeseries role, keyed and partitioned by portfolio id"),
        TopicSpec(topic_name(settings, "dead-letter"), 1, "invalid messages with the reason"),
    ]
