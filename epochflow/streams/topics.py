"""Faust topic objects for the names in `streams.names`. Keys and values are raw bytes:
epochflow encodes and validates messages itself (pydantic), and a message that does not
decode is dead-lettered instead of crashing the agent."""

from __future__ import annotations

from epochflow.app import app, settings
from epochflow.streams.names import topic_name


def raw_topic(short: str, partitions: int | None = None):
    """A topic of this app with raw bytes keys and values, by its short name."""
    return app.topic(
        topic_name(settings, short),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions or settings.partitions,
    )


transactions = raw_topic("transactions")
reference = raw_topic("reference")
position_commands = raw_topic("position-commands")
results = raw_topic("results")
dead_letter = raw_topic("dead-letter", partitions=1)
valuation_jobs = raw_topic("valuation-jobs")
scheduler_ticks = raw_topic("scheduler-ticks")
fanout_ticks = raw_topic("fanout-ticks")
portfolio_changes = raw_topic("portfolio-changes")


def by_short_name(short: str):
    return {
        "transactions": transactions,
        "reference": reference,
        "position-commands": position_commands,
        "results": results,
        "dead-letter": dead_letter,
        "valuation-jobs": valuation_jobs,
        "scheduler-ticks": scheduler_ticks,
        "fanout-ticks": fanout_ticks,
        "portfolio-changes": portfolio_changes,
    }[short]
