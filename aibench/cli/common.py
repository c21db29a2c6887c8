"""What every command shares: error translation, the device option, JSON output, the console."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from aibench.core.errors import AibenchError, UsageError
from aibench.core.jsonutil import json_safe

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class CliUsageError(click.ClickException):
    """A one-line usage error with exit code 2 (click's own UsageError prints the usage block)."""

    exit_code = 2


class AibenchGroup(click.Group):
    """Turns domain errors into click exceptions at the boundary: one line, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise CliUsageError(str(exc)) from None
        except AibenchError as exc:
            raise click.ClickException(str(exc)) from None


def device_option(func: Any) -> Any:
    return click.option(
        "--device", "device_spec", default="auto", show_default=True,
        help="auto, cpu, cuda or cuda:N (ROCm GPUs answer to cuda too).",
    )(func)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else on stdout (progress and banners go to stderr)."""
    sys.stdout.write(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"bad parameter {pair!r}: expected key=value")
        if key.strip() in params:  # the last one silently winning hides a typo in a long command
            raise CliUsageError(f"parameter {key.strip()!r} given twice ({params[key.strip()]!r} and {value.strip()!r})")
        params[key.strip()] = value.strip()
    return params
