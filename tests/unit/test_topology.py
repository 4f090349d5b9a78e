"""The topology: every role has its app module, its inputs are real topics, and the
replay rules follow from it."""

from __future__ import annotations

from pathlib import Path

from epochflow.config import Settings
from epochflow.streams.names import topic_name, topic_specs
from epochflow.topology import REPLAYABLE, ROLE_NAMES, ROLES, app_id, role

APPS = Path(__file__).resolve().parents[2] / "epochflow" / "apps"


def test_every_role_has_an_app_module_and_every_app_module_a_role():
    modules = {path.stem for path in APPS.glob("*.py")} - {"__init__"}
    assert modules == set(ROLE_NAMES)


def test_every_input_is_a_topic_the_deployment_declares():
    settings = Settings()
    declared = {spec.name for spec in topic_specs(settings)}
    for name, each in ROLES.items():
        assert {topic_name(settings, short) for short in each.inputs} <= declared, name


def test_each_role_has_its_own_app_id_which_is_its_consumer_group():
    settings = Settings(topic_prefix="p")
    assert [ROLES[name].app_id(settings) for name in ROLE_NAMES] == [f"p-{name}" for name in ROLE_NAMES]
    assert app_id(settings, "sink") == "p-sink"


def test_only_roles_that_consume_topics_can_be_replayed():
    assert "api" not in REPLAYABLE
    assert set(REPLAYABLE) == {name for name, each in ROLES.items() if each.inputs}


def test_positions_and_the_scheduler_do_not_rebuild_the_same_from_empty_tables():
    assert {name for name, each in ROLES.items() if each.rebuild_differs} == {"positions", "scheduler"}


def test_an_unknown_role_is_refused_with_the_list_of_roles():
    try:
        role("naive")
    except ValueError as error:
        assert "positions" in str(error)
    else:
        raise AssertionError("naive is no role of the topology")
