"""`aibench report RUN_OR_BUNDLE...`: systems side by side for a buyer (Markdown, HTML or CSV)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aibench.cli.common import err_console
from aibench.core.errors import AibenchError, UsageError

if TYPE_CHECKING:
    from aibench.report import Report
    from aibench.results.commitments import Commitment

_EXTENSIONS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".csv": "csv"}


def output_format(fmt: str | None, out: Path | None) -> str:
    """--format wins; else -o's extension; else Markdown on stdout."""
    if fmt:
        return fmt
    if out is None:
        return "md"
    try:
        return _EXTENSIONS[out.suffix.lower()]
    except KeyError:
        raise UsageError(f"cannot tell the format from {out.name!r}: use .md, .html or .csv, or --format") from None


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--tco", "tco_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Prices per system (TOML) for total cost of ownership: see examples/prices.toml.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report here (format from the extension: .md, .html, .csv); default stdout.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv"]), default=None,
              help="Output format (default: from -o's extension, else md).")
@click.option("--backend", default="baseline", show_default=True,
              help="baseline (the vendor library: measures the hardware), all, or one backend's name.")
@click.option("--pubkey", "pubkeys", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Public key that signed the bundles (bundles are verified before they are read); repeat it "
                   "for bundles of several signers: each must be signed by one of the keys.")
@click.option("--commitments", "commitments_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The vendor's committed figures (TOML, see `aibench commitments`): adds a "
                                 "commitments section, each figure PASS, FAIL or UNSURE as `aibench accept` judges it.")
@click.option("-v", "--verbose", is_flag=True, help="Print every warning (default: one line per kind of warning).")
def report_command(runs: tuple[Path, ...], tco_file: Path | None, out: Path | None, fmt: str | None,
                   backend: str, pubkeys: tuple[Path, ...], commitments_file: Path | None, verbose: bool) -> None:
    """Compare systems for procurement: headline metrics, energy and cost, every number traceable.

    The first run is the reference of every ratio.

    \b
    Examples:
      aibench report acme-h100.tar.gz beta-h200.tar.gz --pubkey acme.pub --pubkey beta.pub
      aibench report results/<run-a> results/<run-b> --tco examples/prices.toml -o report.html
      aibench report results/<run-id> --backend all --format csv > results.csv
    """
    from aibench.bundle.load import load_runs
    from aibench.core.gcpause import collector_paused
    from aibench.core.text import printable
    from aibench.report import build_report, load_prices, render

    fmt = output_format(fmt, out)
    prices = load_prices(tco_file) if tco_file is not None else None  # a bad file fails before any bundle is read
    commitments = _commitments(commitments_file) if commitments_file is not None else None  # also before any bundle
    with collector_paused():  # millions of long-lived record objects: core/gcpause.py
        loaded = load_runs(runs, pubkeys)
        report = build_report(loaded, prices, backend=backend, prices_source=str(tco_file) if tco_file else None,
                              commitments=commitments,
                              commitments_source=str(commitments_file) if commitments_file else None)
        text = render(report, fmt)
        lines = _summary_lines(report, fmt, verbose)
        del loaded, report  # freed now, by their counts: no collector pass walks them after the block
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AibenchError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
        err_console.print(f"report written to {out}", markup=False, highlight=False, emoji=False)
    for line in lines:
        # A warning quotes the bundle (system name, skip reasons): no control sequence reaches the terminal.
        err_console.print(printable(line), markup=False, highlight=False, emoji=False, soft_wrap=True)


def _summary_lines(report: Report, fmt: str, verbose: bool) -> list[str]:
    """The warnings (one line per kind unless verbose), the commitments and the verdict, for stderr."""
    from aibench.cli.format import finding_summary
    from aibench.report.verdict import build_verdict

    labels = [s.label for s in report.systems]
    lines = ([f"warning: {w}" for w in report.warnings] if verbose else
             [f"warning {line}" for line in finding_summary([(warning_code(w, labels), w) for w in report.warnings])])
    lines += _commitments_lines(report, fmt)
    lines.append(f"verdict: {build_verdict(report).summary()}")
    return lines


def warning_code(warning: str, labels: list[str]) -> str:
    """The kind of a report warning, for the quiet summary: its text up to the first colon, without
    the system it concerns and with counts as N ("THROTTLED during N measurement(s) (SwPowerCap)")."""
    text = warning
    for label in sorted(labels, key=len, reverse=True):  # "H100 #2" before "H100"
        if text.startswith(f"{label}: "):
            text = text[len(label) + 2:]
            break
    head = re.sub(r"\d+", "N", text.split(": ", 1)[0])
    return head if len(head) <= 60 else head[:57] + "..."


def _commitments(path: Path) -> list[Commitment]:
    """The commitments file, read and checked as `aibench accept` reads it (exit 2 when bad)."""
    from aibench.results.commitments import parse_commitments

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_commitments(data, str(path))


def _commitments_lines(report: Report, fmt: str) -> list[str]:
    """Each system's count of PASS / FAIL / UNSURE on stderr (the report is no gate: exit 0 either way;
    `aibench accept` is the gate). The CSV, one row per record, has no place for the section."""
    if report.acceptance is None:
        return []
    lines = [f"commitments: {s.summary}" for s in report.acceptance.systems]
    if fmt == "csv":
        lines.append("note: the CSV has no commitments section (one row per record); "
                     "aibench accept --json or --junit writes the verdicts")
    return lines
