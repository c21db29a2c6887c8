"""A vendor's committed figures (the bid's benchmark numbers) as a small TOML file, and the metrics
that can be committed: only those that the raw samples of a record give, so acceptance can put a
confidence bound on them.

    [commitments]
    source = "results/20260101-vendor-run"
    device = "NVIDIA H100"

    [[commitment]]
    key = "gemm-small::gemm[m=64]/torch"   # a record's key (compare.record_key)
    metric = "tflops"
    value = 12.5
    tolerance = 0.05                        # optional, overrides --tolerance

A sample-backed metric is the median time per call (`median_s`, lower is better) or a rate that
the record's work gives per call (`tflops`, `gbps`, `<unit>_per_s`, higher is better: work / time,
as runner.derive_metrics and recompute.expected_metrics derive them). A rate is a decreasing
function of the time, so its median and confidence bounds are those of the time, transformed.
Torch-free: the buyer's side writes and reads these files.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.results.compare import first_of_each
from aibench.results.runs import LoadedRun

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TIME_METRIC = "median_s"
MAX_FILE_BYTES = 4 << 20  # a bid lists hundreds of figures, not millions: refuse before parsing
_RATE_SCALE = {"flops": ("tflops", 1e12), "bytes": ("gbps", 1e9)}


@dataclass(frozen=True)
class Commitment:
    key: str
    metric: str
    value: float
    tolerance: float | None = None  # None: the command's --tolerance

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_tolerance(tolerance: float, what: str = "tolerance") -> float:
    if not (isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool)
            and math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise UsageError(f"{what} must be a number in [0, 1) (0.05 = 5%), got {tolerance!r}")
    return float(tolerance)


def higher_is_better(metric: str) -> bool:
    """Rates are better high, times low (only sample-backed metrics are ever judged)."""
    return metric != TIME_METRIC


def rate_work(rec: dict[str, Any], metric: str) -> float | None:
    """The work per call over the metric's scale, so that metric = rate_work / time; None when the
    record has no such work or times itself (a serving loop's own rates are not per sample)."""
    timing = rec.get("timing") if isinstance(rec.get("timing"), dict) else {}
    work = rec.get("work") if isinstance(rec.get("work"), dict) else {}
    if timing.get("method") == "custom":
        return None
    for unit, amount in work.items():
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not amount > 0:
            continue
        name, scale = _RATE_SCALE.get(unit, (f"{unit}_per_s", 1.0))
        if name == metric and math.isfinite(amount):
            return amount / scale
    return None


def sample_metrics(rec: dict[str, Any]) -> list[str]:
    """The metrics of an ok record that its raw samples give, rates first (what a bid quotes)."""
    timing = rec.get("timing") if isinstance(rec.get("timing"), dict) else {}
    if rec.get("status") != "ok" or not timing.get("samples_s"):
        return []
    work = rec.get("work") if isinstance(rec.get("work"), dict) else {}
    rates = [_RATE_SCALE.get(unit, (f"{unit}_per_s", 1.0))[0] for unit in work]
    return [m for m in rates if rate_work(rec, m) is not None] + [TIME_METRIC]


def measured_value(median_s: float, rec: dict[str, Any], metric: str) -> float | None:
    """The metric at a given time per call; None when the record cannot give this metric."""
    if metric == TIME_METRIC:
        return median_s
    work = rate_work(rec, metric)
    return None if work is None else work / median_s


def commitments_from_run(run: LoadedRun, tolerance: float | None = None) -> list[Commitment]:
    """What a vendor would commit from its own run: each sample-backed metric at its measured median."""
    out: list[Commitment] = []
    for key, rec in first_of_each(run.records).items():
        metrics = sample_metrics(rec)
        if not metrics:
            continue
        median = stats.median(rec["timing"]["samples_s"])
        for metric in metrics:
            value = measured_value(median, rec, metric)
            if value is not None and math.isfinite(value) and value > 0:
                out.append(Commitment(key, metric, value, tolerance))
    return out


# --- the file -------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """A TOML basic string. Keys come from records (a bundle's, possibly hostile): escape quotes,
    backslashes and control characters; a lone surrogate has no UTF-8 form and no TOML escape."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise UsageError(f"{text[:80]!r} holds a lone surrogate, which a TOML file cannot hold")
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_toml(commitments: list[Commitment], header: dict[str, str]) -> str:
    """The commitments file: a [commitments] table of strings (where they came from), then one
    [[commitment]] table each. Floats as repr(): the shortest text that reads back the same float."""
    lines = ["# aibench commitments: the committed figure of each measurement and metric.",
             "# `aibench accept --commitments THIS_FILE RUN` tests a delivered system against it.",
             "[commitments]"]
    lines += [f"{name} = {_toml_string(value)}" for name, value in header.items()]
    for c in commitments:
        lines += ["", "[[commitment]]", f"key = {_toml_string(c.key)}", f"metric = {_toml_string(c.metric)}",
                  f"value = {c.value!r}"]
        if c.tolerance is not None:
            lines.append(f"tolerance = {c.tolerance!r}")
    return "\n".join(lines) + "\n"


_FIELDS = {"key", "metric", "value", "tolerance"}


def _commitment(i: int, item: Any, where: str) -> Commitment:
    at = f"{where}: commitment {i + 1}"
    if not isinstance(item, dict):
        raise UsageError(f"{at} must be a table")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise UsageError(f"{at}: unknown field(s) {', '.join(map(repr, unknown))} (expected key, metric, value, "
                         "tolerance)")
    for name in ("key", "metric"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise UsageError(f"{at}: {name} must be a non-empty string")
    value = item.get("value")
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise UsageError(f"{at} ({item['key'][:80]!r}): value must be a finite number > 0, got {value!r}")
    tolerance = item.get("tolerance")
    if tolerance is not None:
        tolerance = check_tolerance(tolerance, f"{at}: tolerance")
    return Commitment(item["key"], item["metric"], float(value), tolerance)


def parse_commitments(data: bytes, where: str) -> list[Commitment]:
    """The commitments of a file's bytes; UsageError naming the file and item for anything wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{where}: {len(data)} bytes, more than a commitments file holds ({MAX_FILE_BYTES})")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not a valid TOML file ({exc})") from None
    except RecursionError:  # tomllib recurses per nested array
        raise UsageError(f"{where}: not a valid TOML file (nested too deeply)") from None
    items = doc.get("commitment")
    if not isinstance(items, list) or not items:
        raise UsageError(f"{where}: no [[commitment]] tables (write one with `aibench commitments RUN -o FILE`)")
    out = [_commitment(i, item, where) for i, item in enumerate(items)]
    seen: set[tuple[str, str]] = set()
    for c in out:
        if (c.key, c.metric) in seen:  # two figures for one measurement: which one is the contract?
            raise UsageError(f"{where}: {c.key[:80]!r} {c.metric} is committed twice")
        seen.add((c.key, c.metric))
    return out
