"""`aibench suite NAME|PATH`: run a whole suite into a run directory."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aibench.cli.common import CliUsageError, console, device_option, err_console

if TYPE_CHECKING:
    from aibench.collectives.group import RankGroup
    from aibench.suite.model import Suite


@click.command("suite")
@click.argument("suite_ref", metavar="NAME|PATH")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Folder that receives the run directory.")
@device_option
@click.option("--quick", is_flag=True, help="Fewer shapes and shorter durations (about 3 minutes on one GPU).")
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Finish an interrupted run directory: runs only what is missing.")
@click.option("--system", "system_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="System description (TOML or JSON, MLPerf field names).")
@click.option("--telemetry/--no-telemetry", default=True, show_default=True,
              help="Sample power, clocks and energy while measuring.")
@click.option("--plan", "plan_only", is_flag=True, help="List the cases this run would measure, then stop.")
@click.option("--json", "json_", is_flag=True, help="With --plan: print the plan as JSON.")
def suite_command(suite_ref: str, out: Path, device_spec: str, quick: bool, resume: Path | None,
                  system_file: Path | None, telemetry: bool, plan_only: bool, json_: bool) -> None:
    """Run a benchmark suite (gigafactory, ci, smoke, or your own TOML file).

    \b
    Examples:
      aibench suite gigafactory --system system.toml
      aibench suite smoke --device cpu
      aibench suite gigafactory --resume results/20261127-101500-gigafactory-3fa2c1
      aibench suite gigafactory --quick --plan
    """
    from aibench.collectives.group import RankFailure
    from aibench.collectives.ranked import stop_followers
    from aibench.device.system import build_system_description
    from aibench.suite import run as suite_run
    from aibench.suite.launched import join_launched, leading
    from aibench.suite.load import load_suite
    from aibench.suite.session import Session

    if json_ and not plan_only:  # a run prints a table; silently running a whole suite is no answer to --json
        raise CliUsageError("--json goes with --plan (a run's records are in its run directory, records.jsonl)")
    suite = load_suite(suite_ref)
    if plan_only:
        if system_file is not None:  # a plan is the place to find a bad file, before hours of measuring
            from aibench.device.system import validate_system_file
            validate_system_file(system_file)
        _print_plan(suite, device_spec, quick, json_)
        return
    group = join_launched(device_spec)  # torchrun / srun: this process is one rank of the job
    if group is not None and not group.is_leader:
        raise click.exceptions.Exit(_follow_suite(group, suite, quick, telemetry))
    session = Session.open(device_spec, telemetry=telemetry)
    try:
        mode = suite_run.suite_mode(session, quick)
        if session.preview:
            err_console.print(
                f"[bold yellow]PREVIEW MODE[/bold yellow] on {session.device_info.name}: no GPU, so the suite runs "
                "its small preview sizes. Results are marked comparable: false and must not be compared."
            )
        if resume is not None:
            run = suite_run.resume_run(session, suite, mode, resume)
            if run.manifest.get("environment_sha256") != session.environment_sha256:
                err_console.print("[yellow]warning: the environment changed since this run started (versions, "
                                  "driver or host); its new records will say so[/yellow]")
        else:
            system = build_system_description(system_file, session.environment)
            run = suite_run.start_run(session, suite, mode, out, system)
        err_console.print(f"suite {suite.name} {suite.version} ({mode}) -> {run.path}", soft_wrap=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True) as progress:
            overall = progress.add_task(f"suite {suite.name}", total=None)
            current = progress.add_task("", total=None)

            def on_progress(p: suite_run.Progress) -> None:
                progress.update(overall, total=p.total, completed=p.done)
                progress.update(current, total=p.entry_total, completed=p.entry_done,
                                description=f"  {p.case_id[:70]}" if p.phase == "start" else f"  {p.entry_id}")

            was_complete, kept = run.manifest.get("complete") is True, len(run.records())
            try:
                with leading(group, f"aibench suite {suite.name}", session.record_distributed):
                    suite_run.execute(session, suite, mode, on_progress)
            except RankFailure as exc:  # the launcher stopped the job: what rank 0 measured is kept
                raise click.ClickException(f"the job lost a rank ({exc}): {len(run.records())} record(s) kept "
                                           f"in {run.path} (manifest: distributed.partial)") from None
            except KeyboardInterrupt:  # what the run directory holds, backends of an unfinished case included
                # The command that finishes it repeats what chose the mode and device: without --quick
                # (or --device) the resume would be refused as another mode.
                again = ["aibench", "suite", suite_ref, *(["--quick"] if quick else []),
                         *(["--device", device_spec] if device_spec != "auto" else []),
                         *([] if telemetry else ["--no-telemetry"]), "--resume", str(run.path)]
                raise click.ClickException(
                    f"interrupted: {len(run.records())} record(s) kept in {run.path}; "
                    f"finish it with: {shlex.join(again)}"
                ) from None
        if was_complete and len(run.records()) == kept:
            err_console.print(f"{run.path} was already complete: nothing was run", soft_wrap=True)
    finally:
        session.close()
        if group is not None:
            stop_followers(group)
            group.finish()
    from aibench.cli.format import records_table
    from aibench.results.node_spread import is_rank_record

    # Per-rank records (a launched job's per-GPU cases) stand behind their aggregate: it is the one shown.
    shown = [r for r in run.records() if not is_rank_record(r)]
    console.print(records_table(shown, title=f"{suite.name} {suite.version} ({mode})"))
    if per_rank := len(run.records()) - len(shown):
        console.print(f"{per_rank} per-rank record(s) beside them (each aggregate is its slowest rank's)")
    counts: dict[str, int] = {}
    for rec in shown:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    console.print(f"run directory: {run.path}", soft_wrap=True)


def _follow_suite(group: RankGroup, suite: Suite, quick: bool, telemetry: bool) -> int:
    """A follower rank's `aibench suite`: serve rank 0's commands (collectives, and the per-GPU
    cases it runs on every GPU at once) on this rank's own device; the exit status."""
    from aibench.collectives.ranked import follow
    from aibench.suite import run as suite_run
    from aibench.suite.node_load import follower_commands
    from aibench.suite.session import Session

    session: Session | None = None
    try:
        # Only its own GPU sampled: rank 0 watches the node, each rank's record counts its own GPU.
        session = Session.open(str(group.device), telemetry=telemetry, own_device_only=True)
        extra = follower_commands(group, session, suite, suite_run.suite_mode(session, quick))
        return follow(group, extra)  # rank 0 runs the suite and writes the one run directory
    finally:
        if session is not None:
            session.close()
        group.finish()


def _print_plan(suite: Suite, device_spec: str, quick: bool, json_: bool) -> None:
    """The planned cases for this machine: what runs, with which backends and timing, what is skipped."""
    import json

    from aibench.cli.format import plan_table
    from aibench.core.jsonutil import jsonable_params
    from aibench.device import devices
    from aibench.suite.model import PlanContext

    device = devices.resolve(device_spec)
    mode = "preview" if device.type == "cpu" else ("quick" if quick else "full")
    cases = suite.plan(mode, PlanContext.detect() if device.type == "cuda" else PlanContext())
    rows = [{"entry": c.entry_id, "case": c.case_id, "workload": c.workload, "params": jsonable_params(c.params),
             "backends": c.backend_names(), "timer": dict(c.timer), "skip_reason": c.skip_reason} for c in cases]
    if json_:
        console.print_json(json.dumps({"suite": suite.name, "version": suite.version, "mode": mode,
                                       "device": str(device), "cases": rows}))
        return
    console.print(plan_table(rows, title=f"{suite.name} {suite.version} ({mode}) on {device}: plan"))
    runs = sum(1 for r in rows if r["skip_reason"] is None)
    console.print(f"{runs} case(s) to measure, {len(rows) - runs} skipped; nothing was run")
