"""Faust topic objects for the names in `streams.names`. Keys and values are raw bytes:
epochflow encodes and validates messages itself (pydantic), and a message that does not
decode is dead-lettered instead of crashing the agent."""

from __future__ import annotations

from epochflow.app import app, settings
from epochflow.streams.names import topic_name


def _topic(short: str, partitions: int | None = None):
    return app.topic(
        topic_name(settings, short),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions or settings.partitions,
    )


transactions = _topic("transactions")
reference = _topic("reference")
position_commands = _topic("position-commands")
results = _topic("results")
dead_letter = _topic("dead-letter", partitions=1)
valuation_jobs = _topic("valuation-jobs")
scheduler_ticks = _topic("scheduler-ticks")
fanout_ticks = _topic("fanout-ticks")
naive_transactions = _topic("naive-transactions")  # benchmark baseline input only


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
    }[short]
