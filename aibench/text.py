"""Text that came from a run or a bundle, made safe to print: a verified bundle can still carry
control characters (ANSI sequences in a system name, a reason, a record id), and a terminal that
shows a report or a comparison must not let them clear the screen or recolour what follows."""

from __future__ import annotations


def printable(text: object, keep: str = "") -> str:
    """`text` with its control characters written as escapes (ESC as "\\x1b"). `keep`: the
    characters a format can hold as they are (a CSV cell keeps its newlines)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii") for ch in s)
