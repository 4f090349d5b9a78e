"""`python -m epochflow worker ROLE` runs one worker of a role (what the supervisor starts);
anything else is the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        from epochflow.apps import load, run_worker
        from epochflow.config import ConfigError

        try:
            app = load(sys.argv[2])  # loads the settings
        except ValueError as error:  # an unknown role
            raise SystemExit(str(error)) from None
        except ConfigError as error:
            print(f"epochflow worker {sys.argv[2]}: {error.format_message()}", file=sys.stderr)
            sys.exit(error.exit_code)
        run_worker(app, sys.argv[2])
        return
    from epochflow.cli.main import cli

    cli()


if __name__ == "__main__":
    main()
