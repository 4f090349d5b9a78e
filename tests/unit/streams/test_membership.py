"""The record of a worker's group member id, which its successor reads after a crash."""

from __future__ import annotations

from pathlib import Path

from epochflow.streams import membership


def test_the_member_id_is_kept_whole_and_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    path = membership.member_file(tmp_path / "positions-0")

    assert membership.record(path, "member-1")
    assert path.read_text() == "member-1"
    assert not membership.record(path, "member-1")
    assert membership.record(path, "member-2")
    assert path.read_text() == "member-2"
    assert [p.name for p in path.parent.iterdir()] == [membership.MEMBER_FILE]  # no part file left


def test_no_member_id_yet_records_nothing(tmp_path: Path) -> None:
    path = membership.member_file(tmp_path)
    assert not membership.record(path, "")
    assert not membership.record(path, None)
    assert not path.exists()


def test_a_worker_without_a_predecessor_asks_the_broker_nothing(tmp_path: Path) -> None:
    # no broker listens on this address: asking it would fail or time out
    assert membership.leave_for_predecessor("127.0.0.1:1", "group", membership.member_file(tmp_path)) is None


def test_a_broker_out_of_reach_does_not_stop_the_worker(tmp_path: Path) -> None:
    path = membership.member_file(tmp_path)
    membership.record(path, "member-1")
    assert membership.leave_for_predecessor("127.0.0.1:1", "group", path, timeout_s=2) is None
    assert path.read_text() == "member-1"  # kept: the next start tries again
