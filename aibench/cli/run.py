"""`aibench run` (one workload) and `aibench list` (what can be run)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from aibench.cli.common import CliUsageError, console, device_option, err_console, parse_params, print_json
from aibench.cli.format import records_table


def timer_options(func: Any) -> Any:
    """Options of the stopping rule, shared by `run` and `suite` (they override the suite's rules)."""
    options = [
        click.option("--min-time", type=float, default=None, help="Minimum seconds of samples per measurement."),
        click.option("--max-time", type=float, default=None, help="Give up converging after this many seconds."),
        click.option("--noise", "target_rel_se", type=float, default=None,
                     help="Target relative standard error of the median (0.01 = 1%)."),
        click.option("--telemetry/--no-telemetry", default=True, show_default=True,
                     help="Sample power, clocks and energy while measuring."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("run")
@click.argument("workload")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a workload parameter.")
@click.option("--backend", "backends", multiple=True, help="Run only this backend (repeatable).")
@device_option
@timer_options
@click.option("--cuda-graph", is_flag=True, help="Time CUDA-graph replays (for tiny kernels).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a run directory under this folder.")
@click.option("--json", "json_", is_flag=True, help="Print the records as JSON.")
def run_command(workload: str, params: tuple[str, ...], backends: tuple[str, ...], device_spec: str,
                min_time: float | None, max_time: float | None, target_rel_se: float | None, telemetry: bool,
                cuda_graph: bool, out: Path | None, json_: bool) -> None:
    """Measure one workload on every backend (baseline first).

    \b
    Examples:
      aibench run memory.copy --device cpu --json
      aibench run gemm -p m=8192 -p n=8192 -p k=8192 -p dtype=bfloat16
    """
    from aibench.collectives.group import RankFailure
    from aibench.collectives.ranked import follow, stop_followers
    from aibench.device.devices import resolve
    from aibench.suite.launched import join_launched, leading
    from aibench.suite.session import Session, timer_config
    from aibench.workloads.registry import get

    overrides = parse_params(params)
    # Validate everything the user typed before the (slower) session opens: errors come first.
    _check_timer_options(min_time, max_time, target_rel_se)
    wl = get(workload)
    wl.resolve_params(overrides, preview=resolve(device_spec).type == "cpu")
    for name in backends:
        wl.get_backend(name)
    group = join_launched(device_spec)  # torchrun / srun: this process is one rank of the job
    if group is not None and not group.is_leader:
        try:
            code = follow(group)  # rank 0 runs the command and writes everything
        finally:
            group.finish()
        raise click.exceptions.Exit(code)
    session = Session.open(device_spec, telemetry=telemetry)
    try:
        timer = timer_config(session.rules, min_time_s=min_time, max_time_s=max_time,
                             target_rel_se=target_rel_se, cuda_graph=cuda_graph or None)
        if session.preview and not json_:
            err_console.print(f"[yellow]preview mode on {session.device_info.name}: small sizes, "
                              "results not comparable[/yellow]")
        try:
            with leading(group, f"aibench run {workload}", session.record_distributed), \
                    err_console.status(f"measuring {workload} ..."):
                records = session.run_one(workload, overrides, list(backends) or None, timer, out)
        except (KeyboardInterrupt, RankFailure) as exc:
            kept = f": {len(session.run_dir.records())} record(s) kept in {session.run_dir.path}" if session.run_dir else ""
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"the job lost a rank ({exc})"
            raise click.ClickException(f"{why}{kept}") from None
    finally:
        session.close()
        if group is not None:
            stop_followers(group)
            group.finish()
    if json_:
        print_json(records)
    else:
        console.print(records_table(records, title=workload))
    if session.run_dir is not None:  # on stderr with --json: stdout stays one JSON document
        (err_console if json_ else console).print(f"run directory: {session.run_dir.path}", soft_wrap=True)
    broken = [r for r in records if r["status"] in ("failed", "invalid")]
    if broken:  # the records are out (and written); the exit status says they are not measurements
        raise click.ClickException(
            f"{len(broken)} of {len(records)} measurement(s) failed or were invalid: "
            + "; ".join(f"{r['backend']}: {r['status']}" for r in broken))


def _check_timer_options(min_time: float | None, max_time: float | None, target_rel_se: float | None) -> None:
    """The stopping rule's limits (RunRules.problems), checked where the user typed them: --noise 0
    was a traceback, --min-time -1 or --max-time nan ran under a rule that means nothing."""
    for flag, value, ok, wanted in (
        ("--min-time", min_time, lambda v: 0 <= v < math.inf, "a finite number of seconds >= 0"),
        ("--max-time", max_time, lambda v: 0 < v < math.inf, "a finite number of seconds > 0"),
        ("--noise", target_rel_se, lambda v: 0 < v < 1, "a fraction in (0, 1), e.g. 0.01 for 1%"),
    ):
        if value is not None and not ok(value):  # NaN fails every comparison
            raise CliUsageError(f"{flag} {value}: expected {wanted}")


@click.command("list")
@click.option("--json", "json_", is_flag=True, help="Print as JSON.")
def list_command(json_: bool) -> None:
    """List workloads (parameters, backends) and suites."""
    from aibench.suite.catalog import catalog

    data = catalog()
    if json_:
        print_json(data)
        return
    table = Table(title="workloads")
    table.add_column("workload", style="cyan")
    table.add_column("parameters (default)")
    table.add_column("backends")
    for wl in data["workloads"]:
        params = ", ".join(f"{p['name']}={p['default']}" for p in wl["params"])
        backends = ", ".join(
            (b["name"] + (" (baseline)" if b["baseline"] else ""))
            + ("" if b["available"] else f" [dim]unavailable: {b['reason']}[/dim]")
            for b in wl["backends"]
        )
        table.add_row(wl["name"], params, backends)
    console.print(table)
    suites = Table(title="suites")
    suites.add_column("suite", style="cyan")
    suites.add_column("version")
    suites.add_column("description")
    for s in data["suites"]:
        suites.add_row(s["name"], str(s["version"]), s["description"])
    console.print(suites)
    for module, error in data["load_errors"].items():
        err_console.print(f"[red]could not load {module}: {error}[/red]")
