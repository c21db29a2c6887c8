"""The command line: parses, calls the core, formats. No measurement logic lives here."""

from __future__ import annotations

import os


def _prepare_triton() -> None:
    """Run Triton kernels through its CPU interpreter where no GPU driver exists.

    TRITON_INTERPRET must be set before triton is first imported (torch may import it), so this
    runs before anything else; a user's explicit setting always wins.
    """
    has_driver = any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd"))
    if not has_driver:
        os.environ.setdefault("TRITON_INTERPRET", "1")


_prepare_triton()

import click  # noqa: E402

from aibench import __version__  # noqa: E402
from aibench.cli.common import AibenchGroup  # noqa: E402


@click.group(cls=AibenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="aibench")
def cli() -> None:
    """GPU inference benchmarks that procurement teams can trust and compare."""


def _register() -> None:
    from aibench.cli.accept import accept_command, commitments_command
    from aibench.cli.bundle import bundle_group
    from aibench.cli.compare import compare_command
    from aibench.cli.env import env_command
    from aibench.cli.history import history_group
    from aibench.cli.report import report_command
    from aibench.cli.run import list_command, run_command
    from aibench.cli.serve import serve_bench_command, serve_command
    from aibench.cli.slurm import slurm_command
    from aibench.cli.suite import suite_command

    for command in (env_command, list_command, run_command, suite_command, bundle_group, report_command,
                    compare_command, commitments_command, accept_command, history_group, serve_command,
                    serve_bench_command, slurm_command):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="aibench")
