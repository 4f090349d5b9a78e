"""The record of a worker's group member id, which its successor reads after a crash, and
the lock that proves that successor's predecessor is dead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from epochflow.streams import admin, membership


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The LeaveGroups that would have been sent (none reach a broker)."""
    sent: list[str] = []

    async def leave_group(bootstrap: str, group_id: str, member_id: str, **options) -> int:
        sent.append(member_id)
        return 0

    monkeypatch.setattr(admin, "leave_group", leave_group)
    return sent


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


def test_a_worker_without_a_predecessor_asks_the_broker_nothing(tmp_path: Path, no_broker: list[str]) -> None:
    assert membership.leave_for_predecessor("broker:9092", "group", tmp_path / "a") is None
    assert no_broker == []


def test_the_recorded_predecessor_leaves_and_is_forgotten(tmp_path: Path, no_broker: list[str]) -> None:
    directory = tmp_path / "b"
    membership.record(membership.member_file(directory), "member-1")
    assert membership.leave_for_predecessor("broker:9092", "group", directory) == 0
    assert no_broker == ["member-1"]
    assert not membership.member_file(directory).exists()


def test_a_broker_out_of_reach_does_not_stop_the_worker(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    membership.record(membership.member_file(directory), "member-1")
    assert membership.leave_for_predecessor("127.0.0.1:1", "group", directory, timeout_s=2) is None
    assert membership.member_file(directory).read_text() == "member-1"  # kept: the next start asks again


def test_a_retriable_answer_keeps_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def coordinator_moving(*args, **options) -> int:
        return 16  # NOT_COORDINATOR

    monkeypatch.setattr(admin, "leave_group", coordinator_moving)
    directory = tmp_path / "d"
    membership.record(membership.member_file(directory), "member-1")
    assert membership.leave_for_predecessor("broker:9092", "group", directory) == 16
    assert membership.member_file(directory).read_text() == "member-1"


def test_a_data_dir_held_by_a_live_worker_is_never_taken_over(tmp_path: Path, no_broker: list[str]) -> None:
    directory = tmp_path / "e"
    membership.record(membership.member_file(directory), "member-of-a-live-worker")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from epochflow.streams import membership; "
                               "membership.hold_data_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)",
         str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(membership.DataDirInUse, match=rf"in use by another live worker \(pid {holder.pid}\)"):
            membership.leave_for_predecessor("broker:9092", "group", directory)
    finally:
        holder.kill()
        holder.wait()
    assert no_broker == []
    assert membership.member_file(directory).read_text() == "member-of-a-live-worker"

    # the holder is dead (killed: the kernel released its lock): its successor takes over
    assert membership.leave_for_predecessor("broker:9092", "group", directory) == 0
    assert no_broker == ["member-of-a-live-worker"]
