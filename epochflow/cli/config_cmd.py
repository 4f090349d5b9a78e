"""`epochflow config`: the effective configuration, secrets masked."""

from __future__ import annotations

import json

import click


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
def config_command(as_json: bool) -> None:
    """Print every variable epochflow reads, its value and whether it came from the
    environment or is the default (passwords and tokens masked). Invalid values are
    listed, all of them, with what each variable accepts (exit status 2)."""
    from epochflow.config import describe, load_settings

    entries = describe(load_settings())
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    width = max(len(entry["variable"]) for entry in entries)
    for entry in entries:
        value = entry["value"] if entry["value"] != "" else "(unset)"
        click.echo(f"{entry['variable']:<{width}}  {value}  [{entry['source']}]")
