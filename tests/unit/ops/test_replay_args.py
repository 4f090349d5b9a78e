"""`epochflow replay` without a broker: argument validation, which local stores a replay
removes, and how a plan reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from epochflow.ops.replay import ReplayError, ReplayPlan, ReplayRequest, local_state_dirs, parse_datetime, replay_request

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("role", ["valuation", "fanout", "sink"])
def test_every_role_that_consumes_topics_can_be_replayed_from_earliest(role: str) -> None:
    request = replay_request(role, to_earliest=True, to_datetime=None, now=NOW)
    assert request == ReplayRequest(role, None, keep_state=False)
    assert request.resets_state


@pytest.mark.parametrize("role, why", [
    ("positions", "a key's epochs depend on the order"),
    ("scheduler", "stay PROCESSING in portfolio_valuation_jobs"),
])
def test_rebuilding_positions_or_the_scheduler_needs_force(role: str, why: str) -> None:
    with pytest.raises(ReplayError, match=f"replaying {role} with its tables reset does not rebuild the same results: "
                                          f".*{why}.* --keep-state .* or --force"):
        replay_request(role, True, None, now=NOW)
    assert replay_request(role, True, None, force=True, now=NOW).resets_state
    assert not replay_request(role, True, None, keep_state=True, now=NOW).resets_state
    assert replay_request(role, False, "2026-11-24T09:00:00Z", now=NOW).to_datetime is not None


@pytest.mark.parametrize(
    "role, to_earliest, to_datetime, message",
    [
        pytest.param("api", True, None, "the api role consumes no topic", id="api-consumes-nothing"),
        pytest.param("nope", True, None, "ROLE is one of positions, scheduler, valuation, fanout, timeseries, sink", id="unknown-role"),
        pytest.param("sink", False, None, "exactly one of --to-earliest or --to-datetime", id="neither"),
        pytest.param("sink", True, "2026-11-24T09:00:00Z", "exactly one of", id="both"),
        pytest.param("positions", False, "yesterday", "is not an ISO 8601 date and time", id="not-iso"),
        pytest.param("positions", False, "2026-11-24T09:00:00", "has no UTC offset", id="naive"),
        pytest.param("positions", False, "2026-11-24", "has no UTC offset", id="date-only"),
        pytest.param("positions", False, "2026-11-24T13:00:00+00:00", "is in the future", id="future"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_write(role: str, to_earliest: bool, to_datetime: str | None,
                                                      message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        replay_request(role, to_earliest, to_datetime, now=NOW)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-24T09:30:00Z", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("2026-11-24T10:30:00+01:00", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("2026-11-24 09:30:00.250-00:00", datetime(2026, 11, 24, 9, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_iso_datetimes_with_an_offset_are_accepted(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


def test_a_datetime_replay_keeps_the_state_whatever_is_asked() -> None:
    """A table rebuilt from part of its input would be wrong."""
    request = replay_request("positions", False, "2026-11-24T09:00:00+01:00", keep_state=False, now=NOW)
    assert request.to_datetime == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert not request.resets_state
    assert "published at or after 2026-11-24T09:00:00+01:00" in request.start


def test_keep_state_leaves_an_earliest_replay_s_state_alone() -> None:
    assert not replay_request("sink", True, None, keep_state=True, now=NOW).resets_state


def test_local_stores_are_the_role_s_worker_directories_only(tmp_path: Path) -> None:
    own = tmp_path / "positions-0"  # a worker run on its own: EPOCHFLOW_DATA_DIR/positions-0
    stack = tmp_path / "workers" / "positions-1" / "positions-1"  # a stopped `epochflow up` stack
    named = tmp_path / "elsewhere" / "positions-7"  # named by a run file
    for directory in (own, stack, named):
        (directory / "v1" / "tables").mkdir(parents=True)
    for directory in (tmp_path / "positions-notes" / "x", tmp_path / "workers" / "valuation-0" / "valuation-0" / "v1",
                      tmp_path / "positionsX-0" / "v1", tmp_path / "logs", tmp_path / "positions-new"):
        directory.mkdir(parents=True)
    (tmp_path / "positions-0.log").write_text("not a directory")
    (tmp_path / "positions-link").symlink_to(own)
    run = {"workers": [{"role": "positions", "data_dir": str(tmp_path / "elsewhere")},
                       {"role": "valuation", "data_dir": str(tmp_path / "workers" / "valuation-0")}]}

    found = local_state_dirs(tmp_path, "positions", run)

    # not positions-notes (not laid out like a Faust data dir); positions-new: empty, not started yet
    assert found == sorted(p.resolve() for p in (own, stack, named, tmp_path / "positions-new"))
    assert local_state_dirs(tmp_path / "missing", "positions") == []


def test_a_plan_says_what_it_resets() -> None:
    request = ReplayRequest("positions")
    plan = ReplayPlan(request, "ef-positions", ["ef.transactions"],
                      {TopicPartition("ef.transactions", p): 0 for p in range(4)}, backlog=120,
                      changelogs={"ef-positions-position_state-changelog": 4}, local_dirs=[])
    text = plan.describe()
    assert "replay positions from the earliest offsets" in text
    assert "ef.transactions (4 partitions)" in text
    assert "120 records" in text
    assert "1 to empty: ef-positions-position_state-changelog" in text
    assert "must start with an empty EPOCHFLOW_DATA_DIR" in text

    kept = ReplayPlan(ReplayRequest("sink", NOW - timedelta(hours=1)), "ef-sink", ["ef.results"], {}, 0)
    assert "table state     kept" in kept.describe()
