"""`aibench history add|show`: a benchmark history in SQLite, with the change points in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from aibench.cli.common import CliUsageError, console, print_json
from aibench.core.text import printable

_DB = Path("results/history.sqlite")
_db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=_DB, show_default=True,
                          help="The history database (SQLite).")


@click.group("history")
def history_group() -> None:
    """Keep every run's measurements and find where they stepped."""


@history_group.command("add")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_db_option
@click.option("--commit", "git_commit", help="Git commit to file the run under (default: the one the run recorded).")
@click.option("--pubkey", "pubkeys", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Public key that signed the bundles (bundles are verified before they are read).")
def add_command(runs: tuple[Path, ...], db: Path, git_commit: str | None, pubkeys: tuple[Path, ...]) -> None:
    """Add runs (directories or bundles) to the history; a run already there is left as it is.

    \b
    Examples:
      aibench history add results/20261201-101500-ci-3fa2c1
      aibench history add pr-run/ --db results/history.sqlite --commit "$GITHUB_SHA"
    """
    from aibench.bundle.load import load_run
    from aibench.results.history import add_run, open_history

    loaded = [load_run(path, pubkeys) for path in runs]  # all readable before any is stored
    with open_history(db) as conn:
        for run in loaded:
            result = add_run(conn, run, git_commit)
            what = (f"added {result.measurements} measurement(s)" if result.added
                    else "already in the history, unchanged")
            skipped = f" ({result.skipped} without timing samples)" if result.skipped else ""
            console.print(f"{escape(printable(result.run_id))}: {what}{skipped}", highlight=False)


@history_group.command("show")
@_db_option
@click.option("--workload", help="Only this workload (or suite entry).")
@click.option("--since", help="Only runs created on or after this ISO date or time (2026-01-31).")
@click.option("--alpha", type=float, default=0.01, show_default=True,
              help="Largest permutation p-value of a change point (E-divisive means).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the trends into this PNG file (needs matplotlib).")
@click.option("--json", "json_", is_flag=True, help="Print the trends as JSON.")
def show_command(db: Path, workload: str | None, since: str | None, alpha: float, plot: Path | None,
                 json_: bool) -> None:
    """Trends per measurement and device: first, last and median time, runs, and the change points found.

    A change point names the first run (and its commit) at the new level and the size of the step.

    \b
    Examples:
      aibench history show
      aibench history show --workload gemm --since 2026-11-01 --plot gemm.png
    """
    from aibench.results.history import open_history, trends

    if not db.is_file():
        raise CliUsageError(f"{db}: no history yet (aibench history add RUN creates it)")
    if not 0 < alpha < 1:
        raise CliUsageError(f"--alpha must be in (0, 1), got {alpha}")
    with open_history(db) as conn:
        found = trends(conn, workload, since, alpha=alpha)
    if plot is not None:
        _plot(found, plot)
    if json_:
        print_json({"db": str(db), "metric": "time_s", "trends": [t.as_dict() for t in found]})
        return
    if not found:
        console.print("no measurements match", highlight=False)
        return
    table = Table(title=escape(f"{db}: median time per run"))
    for column in ("measurement", "backend", "device", "runs", "first", "last", "median", "change points"):
        table.add_column(column, justify="right" if column in ("runs", "first", "last", "median") else "left",
                         overflow="fold" if column in ("measurement", "change points") else "ellipsis")
    for t in found:
        steps = "; ".join(f"{s.relative * 100:+.1f}% at {s.run_id} ({(s.git_commit or 'commit unknown')[:12]})"
                          for s in t.steps) or "-"
        table.add_row(escape(printable(t.key)), escape(printable(t.backend)), escape(printable(t.device or "-")),
                      str(len(t.points)),
                      _ms(t.points[0].median), _ms(t.points[-1].median), _ms(t.median), escape(printable(steps)))
    console.print(table)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def _plot(found: list[Any], path: Path) -> None:
    """One line per measurement, normalised to its first run, change points marked."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install 'aibench[plot]'") from None
    matplotlib.use("Agg")  # no display on a CI runner
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for t in found:
        values = [p.median / t.points[0].median for p in t.points]
        (line,) = ax.plot(range(len(values)), values, marker=".", label=f"{t.key} ({t.device or 'device unknown'})")
        runs = [p.run_id for p in t.points]
        for s in t.steps:
            ax.axvline(runs.index(s.run_id) - 0.5, color=line.get_color(), linestyle="--", alpha=0.6)
    ax.set_xlabel("run (in order of creation)")
    ax.set_ylabel("median time / first run's")
    if found and len(found) <= 12:  # past a dozen a legend hides the lines it names
        ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
