"""`aibench compare BASE NEW`: regression verdicts; exit 1 on a real slowdown."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from aibench.cli.common import console, err_console, print_json
from aibench.core.text import printable

_STYLE = {"slower": "red", "broken": "red", "lost": "red", "faster": "green", "noise": "yellow", "missing": "yellow",
          "new": "cyan", "not_comparable": "dim", "same": ""}


def _ratio(r: float) -> str:
    """Three decimals, or scientific notation below 0.001: a ratio is never shown as 0."""
    return f"{r:.3f}" if r >= 0.001 else f"{r:.2e}"


@click.command("compare")
@click.argument("base", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--threshold", type=float, default=0.03, show_default=True,
              help="Smallest relative change of the median that counts (0.03 = 3%; a change exactly "
                   "this large is caught half the time).")
@click.option("--alpha", type=float, default=0.002, show_default=True,
              help="Significance bound of the Mann-Whitney U test on the raw samples.")
@click.option("--pubkey", "pubkeys", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Public key that signed the bundles (bundles are verified before they are read); repeat it "
                   "for bundles of several signers: each must be signed by one of the keys.")
@click.option("--allow-different-devices", is_flag=True, help="Compare runs from different GPUs anyway.")
@click.option("--no-fail", is_flag=True, help="Exit 0 even when something got slower.")
@click.option("--json", "json_", is_flag=True, help="Print the verdicts as JSON.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write JUnit XML: one test case per measurement, failures for slower/broken/lost.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a pull-request comment in Markdown: the changes first, then every measurement.")
def compare_command(base: Path, new: Path, threshold: float, alpha: float, pubkeys: tuple[Path, ...],
                    allow_different_devices: bool, no_fail: bool, json_: bool, junit_path: Path | None,
                    markdown_path: Path | None) -> None:
    """Compare two runs (directories or bundles); exit 1 on a statistically real slowdown.

    Also exit 1 when a measurement broke (failed or invalid) or was lost (measured in BASE, not
    in NEW: skipped now, or never reached by an interrupted run). Exit 2: usage error.

    \b
    Examples:
      aibench compare results/main-run results/pr-run
      aibench compare base.tar.gz new.tar.gz --pubkey vendor.key.pub --json
      aibench compare base/ new/ --junit compare.xml --markdown comment.md
    """
    from aibench.bundle.load import load_run
    from aibench.core.gcpause import collector_paused
    from aibench.results.compare import CompareOptions, compare_junit, compare_runs, geomean_phrase
    from aibench.results.compare_markdown import compare_markdown

    options = CompareOptions(threshold=threshold, alpha=alpha, allow_different_devices=allow_different_devices)
    with collector_paused():  # two runs' record objects, long-lived: core/gcpause.py
        result = compare_runs(load_run(base, pubkeys), load_run(new, pubkeys), options)
    # Written before the exit code is decided: a failing gate is exactly when CI needs them.
    for path, text in ((junit_path, compare_junit), (markdown_path, compare_markdown)):
        if path is not None:
            try:
                path.write_text(text(result), encoding="utf-8")
            except OSError as exc:
                raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    if json_:
        print_json(result.as_dict())
    else:
        table = Table(title=escape(f"{base} -> {new}"))
        for column in ("measurement", "backend", "verdict", "base", "new", "new/base", "p"):
            # A key differs from its neighbours at its end (a sweep's last parameter): wrap it,
            # never cut it, or a CI log names a regression no one can find.
            table.add_column(column, justify="right" if column in ("base", "new", "new/base", "p") else "left",
                             overflow="fold" if column == "measurement" else "ellipsis")
        for c in result.comparisons:
            style = _STYLE.get(c.verdict, "")
            # Keys hold `[params]` and reasons hold error text: data, never rich markup.
            table.add_row(
                escape(printable(c.key)), escape(printable(c.backend)),
                f"[{style}]{c.verdict}[/{style}]" if style else c.verdict,
                f"{c.base_median_s * 1e3:.4g} ms" if c.base_median_s else "-",
                f"{c.new_median_s * 1e3:.4g} ms" if c.new_median_s else "-",
                _ratio(c.ratio) if c.ratio else (escape(printable(c.reason[:60])) or "-"),
                f"{c.p_value:.1e}" if c.p_value is not None else "-",
            )
        console.print(table)
        geo = result.geomean_ratio
        counts = ", ".join(f"{n} {v}" for v, n in result.counts().items() if n)
        console.print(f"{counts}; {geomean_phrase(geo)}" if geo else counts)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(printable(warning))}")
    if result.failing and not no_fail:
        raise click.ClickException(
            f"{len(result.failing)} measurement(s) got slower, broke or were not measured "
            f"(threshold {threshold * 100:g}%, p < {alpha:g})"
        )
