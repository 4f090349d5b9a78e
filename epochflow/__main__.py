"""`python -m epochflow worker ROLE` runs one worker of a role (what the supervisor starts);
anything else is the CLI."""

from __future__ import annotations

import os
import sys


def run_worker(role: str) -> None:
    os.environ["EPOCHFLOW_ROLE"] = role
    from epochflow.roles import load_role

    app = load_role(role)
    from faust.worker import Worker

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
