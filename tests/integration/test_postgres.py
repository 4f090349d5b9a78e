"""The embedded PostgreSQL launcher and the schema migrations, against real servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from epochflow.devstack.postgres import PgHandle, start_postgres, system_bin_dirs
from epochflow.sinks.models import Base
from epochflow.sinks.schema import create_engine, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="epochflow-pg-test-"))
    yield base / "pgdata"
    shutil.rmtree(base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _processes_using(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(data_dir).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _select_one(handle: PgHandle) -> int:
    conn = await asyncpg.connect(handle.url)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_start_stop_leaves_no_process(data_dir: Path) -> None:
    handle = start_postgres(data_dir)
    try:
        assert handle.url == f"postgresql://postgres@127.0.0.1:{handle.port}/epochflow"
        assert await _select_one(handle) == 1
        processes = [handle.pid, *_children(handle.pid)]
        assert len(processes) > 1  # postmaster and its background workers
    finally:
        handle.stop()

    assert not [pid for pid in processes if _alive(pid)]
    assert _processes_using(data_dir) == []
    assert not _port_open(handle.port)
    handle.stop()  # idempotent


async def test_restart_keeps_the_cluster(data_dir: Path) -> None:
    first = start_postgres(data_dir)
    try:
        conn = await asyncpg.connect(first.url)
        await conn.execute("CREATE TABLE kept (x int)")
        await conn.close()
    finally:
        first.stop()
    second = start_postgres(data_dir)
    try:
        conn = await asyncpg.connect(second.url)
        assert await conn.fetchval("SELECT count(*) FROM kept") == 0
        await conn.close()
    finally:
        second.stop()


async def test_a_server_left_by_a_killed_process_is_replaced(data_dir: Path) -> None:
    # os._exit skips atexit: the postmaster outlives its parent, as after a SIGKILL.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from epochflow.devstack.postgres import start_postgres
        print(start_postgres(Path({str(data_dir)!r})).pid, flush=True)
        os._exit(0)
        """
    )
    orphan = int(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    try:
        assert _alive(orphan)
        handle = start_postgres(data_dir)
        try:
            assert not _alive(orphan)
            assert await _select_one(handle) == 1
        finally:
            handle.stop()
    finally:
        if _alive(orphan):  # only on failure: do not leave the test's server behind
            subprocess.run(["kill", "-9", str(orphan)], check=False)
    assert _processes_using(data_dir) == []


@pytest.mark.skipif(not system_bin_dirs(), reason="no PostgreSQL installed on the machine")
async def test_falls_back_to_system_binaries(data_dir: Path) -> None:
    handle = start_postgres(data_dir, bin_dirs=[Path("/nonexistent/bin"), *system_bin_dirs()])
    try:
        assert await _select_one(handle) == 1
    finally:
        handle.stop()
    assert _processes_using(data_dir) == []


async def test_migrate_twice_and_concurrently(postgres_url: str) -> None:
    migrate(postgres_url)  # already at head: a no-op
    with ThreadPoolExecutor(max_workers=3) as pool:
        for done in [pool.submit(migrate, postgres_url) for _ in range(3)]:
            done.result()
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    from alembic.script import ScriptDirectory

    from epochflow.sinks.schema import alembic_config

    assert versions == [ScriptDirectory.from_config(alembic_config()).get_current_head()] == ["0007"]


async def test_migrations_match_the_models(postgres_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
