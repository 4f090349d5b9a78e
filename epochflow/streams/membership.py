"""A restarted worker takes its predecessor's place in the consumer group at once.

A worker that is killed (SIGKILL, OOM, a lost machine) never sends its LeaveGroup: the
broker keeps it as a member until its session times out, and only then hands its partitions
to anyone, so a restarted worker first waits out the dead one's session and often joins
twice (its first generation is dropped when the dead member expires). On the embedded
broker that is 15 s to get partitions back instead of 4.

So each worker keeps its group member id in a file in its data directory (`group-member`,
rewritten when the broker gives it a new one), and a worker starting with that file there
sends the LeaveGroup its predecessor could not, before it joins. The broker then drops the
dead member and the new worker's join is the only one. Nothing is fenced differently: the
predecessor must be dead, not merely recorded: a worker holds an exclusive lock on its data
directory (`worker.lock`, flock) for its whole life, the kernel releases it when the process
dies however it dies, and a worker that cannot take it (another live worker uses the same
directory) sends no LeaveGroup and stops. A member id that is no longer in the group (the
predecessor stopped cleanly, or its session already ran out) changes nothing (Kafka answers
UNKNOWN_MEMBER_ID, the embedded broker 0); a worker whose data directory is new (a
container without a persistent disk) simply waits, as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("epochflow.membership")

MEMBER_FILE = "group-member"
LOCK_FILE = "worker.lock"
RECORD_EVERY_S = 0.5
# answers after which the recorded member is no longer in the group
GONE = {0: "left", 25: "was not a member (UNKNOWN_MEMBER_ID)"}


class DataDirInUse(RuntimeError):
    """Another live process holds the worker's data directory."""


_held: dict[Path, int] = {}  # data directory -> its lock's file descriptor, open for life


def hold_data_dir(datadir: str | Path) -> None:
    """Take the exclusive lock on `datadir` for the rest of this process's life, or raise
    DataDirInUse naming the process that holds it."""
    directory = Path(datadir).resolve()
    if directory in _held:
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(f"{directory} is in use by another live worker (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[directory] = fd


def member_file(datadir: str | Path) -> Path:
    return Path(datadir) / MEMBER_FILE


def record(path: Path, member_id: str | None) -> bool:
    """Keep `member_id` in `path` (written whole, then renamed); True when it changed."""
    if not member_id:
        return False
    try:
        if path.read_text() == member_id:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(member_id)
    part.replace(path)
    return True


def leave_for_predecessor(bootstrap: str, group_id: str, datadir: str | Path, timeout_s: float = 10.0,
                          **client_options: Any) -> int | None:
    """Hold `datadir` (see hold_data_dir: its previous owner is dead), then send the
    LeaveGroup of the member recorded there, if any, and forget it once the broker says it
    is gone. Returns the broker's error code (0: it has left, or, on the embedded broker,
    was not there), or None when there was no predecessor or the broker could not be asked
    (the new worker then waits for the dead member's session to run out, as it would
    without this)."""
    from epochflow.streams.admin import leave_group

    hold_data_dir(datadir)
    path = member_file(datadir)
    try:
        member_id = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not member_id:
        return None
    try:
        code = asyncio.run(asyncio.wait_for(leave_group(bootstrap, group_id, member_id, **client_options), timeout_s))
    except Exception as error:  # an unreachable broker must not stop the worker from starting
        log.warning("group %s: could not remove the previous member %s (%r)", group_id, member_id, error)
        return None
    if code in GONE:
        path.unlink(missing_ok=True)
        log.info("group %s: the previous member %s %s", group_id, member_id, GONE[code])
    else:  # e.g. the coordinator is moving: the next start asks again
        log.warning("group %s: the previous member %s was not removed (error code %d)", group_id, member_id, code)
    return code


def current_member_id(app: Any) -> str | None:
    """The group member id the worker's Kafka consumer holds now (None before it joined)."""
    try:
        return app.consumer._thread._consumer._coordinator.member_id  # noqa: SLF001 - the client keeps it there
    except AttributeError:
        return None


def install(app: Any) -> None:
    """Keep the worker's member id in its data directory while it runs (a timer)."""
    path = member_file(app.conf.datadir)
    recorded: list[str | None] = [None]

    @app.timer(interval=RECORD_EVERY_S)
    async def _record_member() -> None:
        member_id = current_member_id(app)
        if member_id and member_id != recorded[0]:
            record(path, member_id)
            recorded[0] = member_id
