"""Where a quiescence timeout looks for a missing barrier (epochflow.client.barrier_hops):
every hop of every stage a barrier passes through is an input topic of the role named,
and the last hop is the sink on the barrier's own results partition."""

from __future__ import annotations

import pytest

from epochflow.bench.baseline import NAIVE, NAIVE_STAGES
from epochflow.client import barrier_hops, barrier_stages
from epochflow.topology import ROLE_NAMES, ROLES

PARTITIONS = 4
GRAPH = {**barrier_stages(ROLE_NAMES), **{topic: [stage] for topic, stage in NAIVE_STAGES.items()}}
GRAPH["reference"] = barrier_stages(ROLE_NAMES)["reference"] + [NAIVE_STAGES["reference"]]
TOPIC_OF = {stage: topic for topic, stages in GRAPH.items() for stage in stages}
INPUTS = {**{name: role.inputs for name, role in ROLES.items()}, NAIVE.name: NAIVE.inputs}


@pytest.mark.parametrize("stage", sorted(TOPIC_OF))
def test_every_hop_is_an_input_of_its_role_and_the_sink_comes_last(stage: str) -> None:
    hops = barrier_hops(stage, 2, TOPIC_OF, PARTITIONS)
    assert hops[-1] == ("sink", "results", 2)
    for role, topic, partition in hops:
        assert topic in INPUTS[role], (stage, role, topic)
        assert 0 <= partition < PARTITIONS


def test_a_stage_of_its_own_is_read_from_the_topic_its_barrier_is_sent_into() -> None:
    assert barrier_hops("positions.apply", 1, TOPIC_OF, PARTITIONS)[0] == ("positions", "transactions", 1)
    assert barrier_hops("positions.commands", 1, TOPIC_OF, PARTITIONS)[0] == ("positions", "position-commands", 1)
    assert barrier_hops("valuation.reference", 1, TOPIC_OF, PARTITIONS)[0] == ("valuation", "reference", 1)
    assert barrier_hops("naive.apply", 1, TOPIC_OF, PARTITIONS)[0] == ("naive", "naive-transactions", 1)


def test_a_follower_reads_the_barrier_from_the_results_topic() -> None:
    assert barrier_hops("valuation<-positions.apply", 3, TOPIC_OF, PARTITIONS) == [
        ("valuation", "results", 3), ("sink", "results", 3)]


def test_the_timeseries_barrier_waits_on_every_results_partition_then_its_changes_partition() -> None:
    assert barrier_hops("timeseries<-positions.reference", 3, TOPIC_OF, PARTITIONS) == [
        *(("timeseries", "results", q) for q in range(PARTITIONS)),
        ("timeseries", "portfolio-changes", 3), ("sink", "results", 3)]
