"""`aibench bundle keygen|pack|verify`: signed result bundles a buyer checks offline.

Exit codes: 0 valid (or done), 1 invalid bundle or a domain error, 2 usage (missing file,
unreadable key).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from aibench.cli.common import AibenchGroup, console, print_json
from aibench.core.errors import BundleError

if TYPE_CHECKING:
    from aibench.bundle.findings import Finding
    from aibench.bundle.layout import Limits


@click.group("bundle", cls=AibenchGroup)
def bundle_group() -> None:
    """Pack, sign and verify result bundles."""


@bundle_group.command("keygen")
@click.argument("key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite KEY and KEY.pub if they exist.")
def keygen_command(key: Path, force: bool) -> None:
    """Make an Ed25519 signing key: KEY (private, mode 0600) and KEY.pub (give it to buyers).

    \b
    Example:
      aibench bundle keygen ~/.aibench/vendor.key
    """
    from aibench.bundle import fingerprint, keygen, load_public_key

    priv, pub = keygen(key, force=force)
    # plain echo, not rich: paths and the fingerprint must stay on one line to be copied
    click.echo(f"private key: {priv}\npublic key:  {pub}\nfingerprint: {fingerprint(load_public_key(pub))}")


@bundle_group.command("pack")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The bundle to write (FILE.tar.gz).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sign with this private key (from `aibench bundle keygen`).")
def pack_command(run_dir: Path, out: Path, key: Path | None) -> None:
    """Pack a run directory into one bundle, signed when --key is given.

    \b
    Example:
      aibench bundle pack results/20250101-gigafactory-ab12cd -o h100-run.tar.gz --key vendor.key
    """
    from aibench.bundle import load_private_key, pack

    private = None
    if key is not None:
        try:
            private = load_private_key(key)
        except BundleError as e:
            raise click.BadParameter(str(e), param_hint="--key") from None
    path = pack(run_dir, out, key=private)
    click.echo(f"wrote {path} ({'signed' if private else 'unsigned'}, {path.stat().st_size} bytes)")
    manifest = _manifest(run_dir)
    if manifest.get("complete") is False:
        again = (f"finish the run with `aibench suite ... --resume {run_dir}`" if manifest.get("suite")
                 else "run it again (an `aibench run` directory cannot be resumed)")
        click.echo(f"warning: {run_dir} is an incomplete run (interrupted): this bundle will not verify "
                   f"(run_incomplete) and report/compare refuse it; {again} and pack it again", err=True)


def _manifest(run_dir: Path) -> dict:
    """The run's manifest; {} when unreadable (verify's to report, not pack's)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _findings_table(title: str, style: str, findings: tuple[Finding, ...]) -> Table:
    table = Table(title=title, title_style=style, show_lines=False, expand=False)
    for column in ("code", "where", "message"):
        table.add_column(column, overflow="fold")
    for f in findings:
        where = " ".join(x for x in (f.member, f.record and f"[{f.record}]") if x)
        table.add_row(escape(f.code), escape(where), escape(f.message))
    return table


def _print_summary(kind: str, style: str, findings: tuple[Finding, ...]) -> None:
    """One line per finding code (its count and first example), the quiet default of verify."""
    from aibench.cli.format import finding_summary

    pairs = []
    for f in findings:
        where = " ".join(x for x in (f.member, f.record and f"[{f.record}]") if x)
        pairs.append((f.code, f"{where}: {f.message}" if where else f.message))
    for line in finding_summary(pairs):
        console.print(f"[{style}]{kind}[/] {escape(line)}", soft_wrap=True, highlight=False)


def _parse_limits(pairs: tuple[str, ...]) -> Limits:
    from aibench.bundle import Limits

    known = {f.name: f.type for f in fields(Limits)}
    values: dict[str, float | int] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in known:
            raise click.BadParameter(f"{pair!r}: known limits are {', '.join(known)}", param_hint="--limit")
        try:
            value = float(text) if known[name] == "float" else int(text)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: {text!r} is not a number", param_hint="--limit") from None
        if not value > 0:  # NaN fails every comparison: `<= 0` would let it through
            raise click.BadParameter(f"{pair!r}: limits are positive", param_hint="--limit")
        values[name] = value
    return replace(Limits(), **values)


@bundle_group.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pubkey", "pubkeys", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="The signer's public key (KEY.pub): without it the signature proves nothing. Repeat it "
                   "to accept any of several signers.")
@click.option("--limit", "limits", multiple=True, metavar="NAME=VALUE",
              help="Change a reader limit, e.g. max_total_bytes=4294967296 (see aibench.bundle.Limits).")
@click.option("--json", "json_", is_flag=True, help="Print {valid, errors, warnings, summary} as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show every finding (default: one line per finding code).")
@click.pass_context
def verify_command(ctx: click.Context, bundle: Path, pubkeys: tuple[Path, ...], limits: tuple[str, ...],
                   json_: bool, verbose: bool) -> None:
    """Check a bundle offline: integrity, signature, schemas and run rules (exit 1 when invalid).

    \b
    Example:
      aibench bundle verify h100-run.tar.gz --pubkey vendor.key.pub
    """
    from aibench.bundle import verify
    from aibench.bundle.verify import keyring

    reader_limits = _parse_limits(limits)
    try:
        trusted = keyring(pubkeys)
    except BundleError as e:
        raise click.BadParameter(str(e), param_hint="--pubkey") from None
    report = verify(bundle, trusted, reader_limits)
    if json_:
        print_json(report.to_dict())
    elif verbose:
        if report.errors:
            console.print(_findings_table(f"{len(report.errors)} error(s)", "bold red", report.errors))
        if report.warnings:
            console.print(_findings_table(f"{len(report.warnings)} warning(s)", "bold yellow", report.warnings))
    else:
        _print_summary("error", "red", report.errors)
        _print_summary("warning", "yellow", report.warnings)
    if not json_:
        s = report.summary
        facts = ", ".join(f"{k}={escape(str(s[k]))}" for k in ("run_id", "suite", "division", "records", "signer")
                          if s.get(k) is not None)
        verdict = "[bold green]VALID[/]" if report.valid else "[bold red]INVALID[/]"
        console.print(f"{verdict} {escape(str(bundle))}: {len(report.errors)} error(s), "
                      f"{len(report.warnings)} warning(s)" + (f" ({facts})" if facts else ""), soft_wrap=True)
    if not report.valid:
        ctx.exit(1)
