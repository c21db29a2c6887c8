"""A comparison as a pull-request comment (GitHub-flavoured Markdown): the changes first, then a
summary table of every measurement. Pure: builds a string, the caller writes or posts it."""

from __future__ import annotations

from aibench.results.compare import FAILING, CompareResult, Comparison, geomean_phrase

# What a reviewer must see before the fold: failures, then the changes that did not fail.
_CHANGES = ("slower", "broken", "lost", "faster")
_MARK = {"slower": "🔴", "broken": "🔴", "lost": "🔴", "faster": "🟢"}


def _cell(text: str) -> str:
    """Table cell text: a `|` or a newline in a key or an error message would break the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:.4g} ms" if seconds is not None else "-"


def _row(c: Comparison) -> str:
    ratio = f"{c.ratio:.3f}" if c.ratio is not None else "-"
    p = f"{c.p_value:.1e}" if c.p_value is not None else "-"
    return (f"| {_MARK.get(c.verdict, '')} {c.verdict} | `{_cell(c.key)}` | {_cell(c.backend)} | "
            f"{_ms(c.base_median_s)} | {_ms(c.new_median_s)} | {ratio} | {p} | {_cell(c.reason)} |")


_HEAD = ("| verdict | measurement | backend | base | new | new/base time | p | note |\n"
         "|---|---|---|---:|---:|---:|---:|---|")


def compare_markdown(result: CompareResult) -> str:
    """The comment text: a headline, the changes, warnings, then the whole table folded away."""
    opts = result.options
    counts = ", ".join(f"{n} {v}" for v, n in result.counts().items() if n) or "nothing compared"
    headline = ("❌ **Regression**: " if result.failing else "✅ **No regression**: ") + counts
    geo = result.geomean_ratio
    lines = ["## aibench compare", "", headline, ""]
    if geo is not None:
        lines += [geomean_phrase(geo), ""]
    lines += [f"Rule: the medians differ by at least {opts.threshold * 100:g}% (the smallest change that "
              f"counts) and a Mann-Whitney U test gives p < {opts.alpha:g}.", ""]
    changes = [c for c in result.comparisons if c.verdict in _CHANGES]
    changes.sort(key=lambda c: (c.verdict not in FAILING, _CHANGES.index(c.verdict)))
    lines += ["### Changes", ""]
    lines += [_HEAD, *(_row(c) for c in changes)] if changes else ["No measurement changed."]
    lines.append("")
    if result.warnings:
        lines += ["### Warnings", "", *(f"- {_cell(w)}" for w in result.warnings), ""]
    lines += [f"<details><summary>All {len(result.comparisons)} measurements</summary>", "", _HEAD,
              *(_row(c) for c in result.comparisons), "", "</details>", "",
              f"Base: `{_cell(result.base)}`, new: `{_cell(result.new)}`", ""]
    return "\n".join(lines)
