"""`python -m epochflow worker ROLE` runs one worker of a role (what the supervisor starts);
anything else is the CLI."""

from __future__ import annotations

import os
import sys


def run_worker(role: str) -> None:
    os.environ["EPOCHFLOW_ROLE"] = role
    from epochflow.config import ConfigError
    from epochflow.roles import load_role

    try:
        app = load_role(role)  # loads the settings
    except ConfigError as error:
        print(f"epochflow worker {role}: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    from faust.worker import Worker

    profile_to = os.environ.get("EPOCHFLOW_PROFILE_DIR")
    if profile_to:  # for performance work: a cProfile dump per worker at exit
        import atexit
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        atexit.register(lambda: profiler.dump_stats(os.path.join(profile_to, f"{role}-{os.getpid()}.prof")))
    level = os.environ.get("EPOCHFLOW_LOG_LEVEL", "WARNING").lower()
    Worker(app, loglevel=level, quiet=True).execute_from_commandline()


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        run_worker(sys.argv[2])
        return
    from epochflow.cli.main import cli

    cli()


if __name__ == "__main__":
    main()
