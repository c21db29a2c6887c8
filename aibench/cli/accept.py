"""`aibench commitments RUN -o FILE` and `aibench accept --commitments FILE RUN`: acceptance testing
of a delivered system against the vendor's committed figures; exit 1 on any FAIL."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from aibench.cli.common import CliUsageError, console, err_console, print_json
from aibench.core.text import printable

_STYLE = {"PASS": "green", "FAIL": "red", "UNSURE": "yellow"}
_PUBKEY = click.option("--pubkey", "pubkeys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       multiple=True, help="Public key that signed the bundle (bundles are verified before they "
                                           "are read); repeat it for several signers.")


def _fraction(text: str | None) -> float | None:
    """'5%' or '0.05' -> 0.05."""
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise CliUsageError(f"--tolerance {text!r}: expected a percentage (5%) or a fraction (0.05)") from None
    from aibench.results.commitments import check_tolerance

    return check_tolerance(value, "--tolerance")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliUsageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write ({exc.strerror or exc})") from None


@click.command("commitments")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The commitments file to write (TOML).")
@click.option("--tolerance", default=None, help="Write this tolerance with every figure (5% or 0.05).")
@_PUBKEY
def commitments_command(run: Path, output: Path, tolerance: str | None, pubkeys: tuple[Path, ...]) -> None:
    """Write the figures a vendor would commit from its run: each measured median.

    \b
    Examples:
      aibench commitments results/vendor-run -o bid.toml
      aibench commitments vendor.tar.gz --pubkey vendor.key.pub -o bid.toml --tolerance 3%
    """
    from aibench.bundle.load import load_run
    from aibench.results.commitments import commitments_from_run, render_toml

    loaded = load_run(run, pubkeys)
    items = commitments_from_run(loaded, _fraction(tolerance))
    if not items:
        raise click.ClickException(f"{run}: no successful measurement with raw samples to commit")
    header = {"source": loaded.source, "run_id": str(loaded.manifest.get("run_id", "")),
              "device": loaded.device_name or "", "system": loaded.label}
    _write(output, render_toml(items, header))
    err_console.print(f"{len(items)} commitment(s) written to {escape(str(output))}")


@click.command("accept")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--commitments", "commitments_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The vendor's committed figures (TOML, see `aibench commitments`).")
@click.option("--tolerance", default=None,
              help="How far below a committed figure still passes, unless the figure has its own "
                   "(5% or 0.05; default 5%).")
@click.option("--baseline", type=click.Path(exists=True, path_type=Path),
              help="Re-test against this installation run: each figure must reach 90% of its installation "
                   "value (EuroHPC); --commitments then only picks what is re-tested.")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Level of the one-sided confidence bound of the median.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the verdicts as JUnit XML for CI.")
@_PUBKEY
@click.option("--json", "json_", is_flag=True, help="Print the verdicts as JSON.")
def accept_command(run: Path, commitments_file: Path | None, tolerance: str | None, baseline: Path | None,
                   confidence: float, junit_file: Path | None, pubkeys: tuple[Path, ...], json_: bool) -> None:
    """Test a run (directory or bundle) against committed figures: PASS, FAIL or UNSURE each.

    A figure passes when the one-sided confidence bound of the median meets it less its tolerance,
    fails when even the optimistic bound misses it (or it was not measured, or failed), and is
    UNSURE in between. Exit 1 on any FAIL; exit 2: usage error.

    \b
    Examples:
      aibench accept --commitments bid.toml results/delivered --junit acceptance.xml
      aibench accept results/retest-2027 --baseline results/installation --json
    """
    from aibench.bundle.load import load_run
    from aibench.core.junit import junit_xml
    from aibench.results.accept import accept_run, junit_cases, retest_run
    from aibench.results.commitments import parse_commitments

    if commitments_file is None and baseline is None:
        raise CliUsageError("give --commitments FILE (the bid's figures) or --baseline RUN (a 90% re-test)")
    if baseline is not None and tolerance is not None:
        raise CliUsageError("--tolerance does not apply to a re-test: --baseline fixes it at 10% (the 90% rule)")
    items = parse_commitments(_read(commitments_file), str(commitments_file)) if commitments_file else None
    fraction = _fraction(tolerance if tolerance is not None else "5%")
    assert fraction is not None
    loaded = load_run(run, pubkeys)
    if baseline is not None:
        result = retest_run(loaded, load_run(baseline, pubkeys), items, confidence)
    else:
        assert items is not None
        result = accept_run(loaded, items, str(commitments_file), fraction, confidence)
    if junit_file is not None:
        _write(junit_file, junit_xml(f"aibench accept {run}", junit_cases(result)))
    if json_:
        print_json(result.as_dict())
    else:
        table = Table(title=escape(f"{run} against {result.reference}"))
        for column in ("measurement", "metric", "verdict", "committed", "limit", "median", "bound", "why"):
            table.add_column(column, justify="right" if column in ("committed", "limit", "median", "bound") else "left",
                             overflow="fold" if column in ("measurement", "why") else "ellipsis")
        for v in result.verdicts:
            style = _STYLE[v.verdict]
            table.add_row(escape(printable(v.key)), escape(printable(v.metric)), f"[{style}]{v.verdict}[/{style}]",
                          f"{v.committed:.4g}", f"{v.limit:.4g}" if v.limit is not None else "-",
                          f"{v.measured:.4g}" if v.measured is not None else "-",
                          f"{v.bound:.4g}" if v.bound is not None else "-", escape(printable(v.reason)) or "-")
        console.print(table)
        console.print(", ".join(f"{n} {name}" for name, n in result.counts().items()))
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(printable(warning))}")
    if result.failing:
        raise click.ClickException(f"{len(result.failing)} of {len(result.verdicts)} commitment(s) not met")
