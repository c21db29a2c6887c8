"""`aibench env`: the environment fingerprint that every run records."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from aibench.cli.common import console, print_json


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            rows.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for i, value in enumerate(data):
            rows.extend(_flatten(value, f"{prefix}[{i}]"))
    else:
        rows.append((prefix, "null" if data is None else str(data)))
    return rows


@click.command("env")
@click.option("--json", "json_", is_flag=True, help="Print the fingerprint as JSON.")
def env_command(json_: bool) -> None:
    """Show the environment fingerprint (versions, GPUs, host)."""
    from aibench.device.env import collect_environment

    env = collect_environment()
    if json_:
        print_json(env)
        return
    table = Table(title="aibench environment", show_lines=False)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value")
    for key, value in _flatten(env):
        table.add_row(key, value)
    console.print(table)
