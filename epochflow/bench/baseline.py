"""The benchmark baseline as a role of its own (`naive`): the positions logic one event at
a time (`epochflow.bench.naive`), fed from its own topic. Only `epochflow bench ingest`
declares that topic and runs the role: no deployment has either.

`python -m epochflow.bench.baseline` runs one worker of it (the stack's worker command
for the role, see `worker_command`).
"""

from __future__ import annotations

import sys

from epochflow.config import Settings
from epochflow.devstack.stack import worker_command as role_worker_command
from epochflow.streams.names import TopicSpec, topic_name
from epochflow.topology import Role

NAIVE_TOPIC = "naive-transactions"
NAIVE = Role("naive", ("epochflow.bench.naive",), (NAIVE_TOPIC, "reference"))
# the stages the naive agents forward barriers through (see epochflow.client)
NAIVE_STAGES = {NAIVE_TOPIC: "naive.apply", "reference": "naive.reference"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics a bench run declares besides the deployment's."""
    return [TopicSpec(topic_name(settings, NAIVE_TOPIC), settings.partitions, "input of the benchmark's naive baseline agent")]


def worker_command(role: str) -> list[str]:
    """The EmbeddedStack command: the naive role from here, the others as usual."""
    if role == NAIVE.name:
        return [sys.executable, "-m", __name__]
    return role_worker_command(role)


def main() -> None:
    from epochflow.apps import build, run_worker

    run_worker(build(NAIVE), NAIVE.name)


if __name__ == "__main__":
    main()
