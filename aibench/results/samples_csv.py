"""Raw telemetry samples as CSV beside the records, so every summary can be re-derived."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path


def write_samples_csv(path: str | Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Write rows (dicts) to path; columns are the union of keys in order of first appearance.

    A missing or unreadable value is an empty cell, never 0. An empty list still writes a file
    (with no columns) so a run directory shows that telemetry had nothing to say.
    """
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(str(key), None)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", extrasaction="ignore")
        if columns:
            writer.writeheader()
        for row in rows:
            writer.writerow({str(k): ("" if v is None else v) for k, v in row.items()})
