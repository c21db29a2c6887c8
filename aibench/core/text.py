"""Text that came from a run or a bundle, made safe to print: a verified bundle can still carry
control characters (ANSI sequences in a system name, a reason, a record id), and a terminal that
shows a report or a comparison must not let them clear the screen or recolour what follows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def printable(text: object, keep: str = "") -> str:
    """`text` with its control characters written as escapes (ESC as "\\x1b"). `keep`: the
    characters a format can hold as they are (a CSV cell keeps its newlines)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii") for ch in s)


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `options`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
