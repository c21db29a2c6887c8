"""The HTML report's charts, drawn in a forked process while this one writes the tables.

matplotlib (its import, the layout, the PNG encoding) takes ~0.5 s of a 50-system report and the
tables about as long; on two cores the two overlap. Fork only (Linux): the child starts with the
report in its memory, and only the finished charts (base64 PNG text) come back through a pipe.
A small report, or a child that fails, draws the charts here as before (an error then surfaces
where the user sees it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from multiprocessing import get_context
from typing import Any

from aibench.report.model import Report

# Below this many cells, forking costs more than the overlap saves.
PARALLEL_MIN_CELLS = 5000

Charts = tuple[list[Any], list[Any], list[Any], list[str]]  # headline, serving, power, notes


def all_charts(report: Report) -> Charts:
    from aibench.report.charts import headline_charts, power_charts, serving_charts

    headline, notes = headline_charts(report)
    serving, serving_notes = serving_charts(report)
    power, more = power_charts(report)
    return headline, serving, power, notes + serving_notes + more


def start_charts(report: Report) -> Callable[[], Charts]:
    """Begin drawing `report`'s charts; the returned function gives them when they are done."""
    cells = sum(len(row.cells) for row in report.rows)
    if sys.platform != "linux" or cells < PARALLEL_MIN_CELLS or len(os.sched_getaffinity(0)) < 2:
        drawn = all_charts(report)
        return lambda: drawn
    ctx = get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_draw, args=(report, send), daemon=True)  # fork: nothing pickled
    child.start()
    send.close()  # the child holds its end: EOF here once it exits

    def finish() -> Charts:
        try:
            kind, value = receive.recv()
        except (EOFError, OSError):  # the child died before it sent anything
            kind, value = "lost", None
        finally:
            receive.close()
            child.join()
        return value if kind == "ok" else all_charts(report)

    return finish


def _draw(report: Report, send: Any) -> None:
    try:
        result: tuple[str, Any] = ("ok", all_charts(report))
    except Exception as exc:  # drawn again in the parent, which raises it where the user sees it
        result = ("error", repr(exc))
    send.send(result)
    send.close()
