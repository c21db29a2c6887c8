"""The rows of the HTML report's long tables, written here rather than in the template.

A report of 50 systems x 1,000 measurements has 50,000 rows in each of its long tables; jinja's
per-value overhead (a finalize call, a Markup object, a generator step) cost ~2.5 s of its 4.5 s.
Here each row is one f-string, and every value in it goes through esc(): the template's own two
steps, control characters written as escapes (core.text.printable, as the template's finalize
does) and markup escaped to the very bytes markupsafe writes (&amp; &lt; &gt; &#39; &#34;). Only
the assembled rows are marked safe; tests hold that each value of each table is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from aibench.core.text import printable

_MARKUP = re.compile(r"[&<>'\"]")  # the characters markupsafe escapes


def esc(value: Any) -> str:
    """`value` as the autoescaping template prints it (finalize, then markupsafe.escape)."""
    text = value if type(value) is str else str(value)
    if not text.isprintable():
        text = printable(text, keep="\n\t")
    if _MARKUP.search(text) is None:  # nearly every value (numbers, ids): nothing to replace
        return text
    # markupsafe's replacements, in its order ("&" first: the others' "&" must not be escaped again)
    return (text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
            .replace("'", "&#39;").replace('"', "&#34;"))


def results_rows(rows: Iterable[Mapping[str, Any]]) -> Markup:
    """One family's rows of the Results table: cls, title, label, backend, system, texts, ratio, ref."""
    same: dict[Any, str] = {}  # the columns that repeat down the table (50 systems x 1,000 rows)

    def once(value: Any) -> str:
        if value not in same:
            same[value] = esc(value)
        return same[value]

    return Markup("".join(
        f'<tr class="{once(r["cls"])}" title="{esc(r["title"])}"><td>{once(r["label"])}</td>'
        f'<td>{once(r["backend"])}</td><td>{once(r["system"])}</td>\n'
        + "".join(f'<td class="num">{esc(t)}</td>' for t in r["texts"])
        + f'<td class="num">{esc(r["ratio"])}</td><td class="ref">{esc(r["ref"])}</td></tr>\n'
        for r in rows))


def titled_rows(rows: Iterable[Mapping[str, Any]]) -> Markup:
    """The energy and TCO tables' rows: label, system, texts (each titled with the record), ref."""
    out = []
    for r in rows:
        title = esc(r["title"])
        cells = "".join(f'<td class="num" title="{title}">{esc(t)}</td>' for t in r["texts"])
        out.append(f'<tr><td>{esc(r["label"])}</td><td>{esc(r["system"])}</td>{cells}'
                   f'<td class="ref" title="{title}">{esc(r["ref"])}</td></tr>\n')
    return Markup("".join(out))


def records_rows(records: Sequence[Mapping[str, Any]]) -> Markup:
    """The Records table: each figure's ref (the anchor its cells point to), system, record id, run."""
    return Markup("".join(
        f'<tr><td class="ref" id="{esc(r["ref"])}">{esc(r["ref"])}</td><td>{esc(r["system"])}</td>'
        f'<td>{esc(r["id"])}</td><td>{esc(r["source"])}</td></tr>\n' for r in records))
