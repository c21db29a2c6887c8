"""Builds a Report from loaded runs: pairs measurements across systems, derives energy and cost.

Everything read here comes from a run directory or a (verified) bundle: manifests are trusted for
nothing, so every field is read defensively and shown as text, never interpreted.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aibench.bundle.suite_check import division
from aibench.bundle.system_check import system_findings
from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.core.text import printable
from aibench.report import tco
from aibench.report.acceptance import build_acceptance
from aibench.report.model import (
    LLM_SERVE,
    Cell,
    Cost,
    Energy,
    Family,
    Report,
    Row,
    ServingCurve,
    ServingPoint,
    System,
    SystemCost,
    Value,
    family_of,
    missing,
    params_text,
)
from aibench.results.runs import LoadedRun

if TYPE_CHECKING:
    from aibench.report.acceptance import Acceptance
    from aibench.results.commitments import Commitment

BACKEND_CHOICES = ("baseline", "all")
NO_POWER = "no measured power"
Key = tuple[str, str, str, str]  # a row: entry, workload, params as JSON, backend
# The serving chart's axes, as both llm.serve backends name them in a record's metrics
# (aibench.serving.metrics, aibench.models.serving_metrics).
SERVING_X, SERVING_Y = "interactivity_tok_s_user", "output_tokens_per_s_per_gpu"
# The load a concurrency sweep varies: the points of one curve differ only in these.
LOAD_PARAMS = ("max_concurrency", "request_rate")


def _d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _text(x: Any, default: str = "not stated") -> str:
    return default if x is None or x == "" else str(x)


def _number(x: Any) -> float | None:
    """A finite number, else None: a hand-edited run directory can hold NaN or Infinity (strict JSON
    and bundles cannot), and no table should show "nan" or build a cost on it."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return None
    return float(x)


def _positive(x: Any) -> float | None:
    """Energy per unit of work (or work per joule) is never 0 when it was measured."""
    value = _number(x)
    return value if value is not None and value > 0 else None


def _system(run: LoadedRun, label: str) -> System:
    m = run.manifest
    desc, env, suite = _d(m.get("system")), _d(m.get("environment")), _d(m.get("suite"))
    sw = _d(env.get("software"))
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)] if isinstance(env.get("gpus"), list) else []
    name, count = desc.get("accelerator_model_name"), desc.get("accelerators_per_node")
    if name:
        stated = _stated_count(count)
        if stated is not None or count in (None, "", 0, "0"):
            accelerators = f"{stated} x {name}" if stated else str(name)
        else:  # 1e308, 10**30, -1: a claim no node fits, shown as a claim, never as a count
            accelerators = f"{name} (accelerators_per_node {printable(json.dumps(count))[:40]}: not a count)"
    elif gpus:
        accelerators = f"{len(gpus)} x {_text(gpus[0].get('name'), 'unnamed GPU')}"
    else:
        accelerators = "none reported"
    mode = f" ({suite['mode']})" if suite.get("mode") else ""
    missing_fields = desc.get("missing")
    return System(
        label=label, source=run.source, is_dir=Path(run.source).is_dir(),
        run_id=_text(m.get("run_id"), "unknown"), device=_text(run.device_name, "unknown"),
        submitter=_text(desc.get("submitter")), accelerators=accelerators,
        driver=_text(sw.get("driver_version"), "not reported"), torch=_text(sw.get("torch"), "not reported"),
        triton=_text(sw.get("triton"), "not reported"),
        suite=f"{_text(suite.get('name'), 'no suite')} {_text(suite.get('version'), '?')}{mode}",
        suite_sha256=str(suite.get("sha256") or "")[:12], created_at=_text(m.get("created_at"), "unknown"),
        complete=m.get("complete") is True, preview=m.get("preview") is not False,
        comparable=m.get("comparable") is True,
        description_missing=len(missing_fields) if isinstance(missing_fields, list) else 0,
        signature=run.signature, accelerator_count=_accelerator_count(count, gpus),
        division=_division(run),
    )


def _division(run: LoadedRun) -> str:
    """A bundle only loads once verify found its shipped suite unchanged; a run directory was
    never checked, so its "closed" is a claim until it is packed and verified."""
    said = division(run.manifest)
    if said == "closed" and Path(run.source).is_dir():
        return "closed (unverified: a run directory; pack and verify it)"
    return said


# More accelerators than a whole AI gigafactory holds (~1e5) are no node's: the description's
# count is then no count (10**30 made every per-GPU score of its system 0.000).
MOST_ACCELERATORS = 100_000


def _stated_count(stated: Any) -> int | None:
    """The description's count (an integer or a string of digits) where it is one a node can have."""
    if isinstance(stated, str) and stated.strip().isdigit() and len(stated.strip()) <= 6:
        stated = int(stated)
    if isinstance(stated, int) and not isinstance(stated, bool) and 0 < stated <= MOST_ACCELERATORS:
        return stated
    return None


def _accelerator_count(stated: Any, gpus: list[dict[str, Any]]) -> int | None:
    """The description's count, else the GPUs the run saw."""
    return _stated_count(stated) or len(gpus) or None


def _key_ci(timing: dict[str, Any], family: Family, key: Value, derived: list[float] | None) -> tuple[float, float] | None:
    """The key metric's 95% interval from the median time's: the metric is work / time, so the
    interval's ends swap (the slow end of the time is the low end of the rate). `derived`: the
    interval from the raw samples of an older record that states none (_derived_intervals)."""
    ci, median = timing.get("ci95_median"), _positive(timing.get("median"))
    if not family.noise_of_key or key.value is None or median is None:
        return None
    if not _stated_ci(timing):
        ci = derived
    if not isinstance(ci, list) or len(ci) != 2:
        return None
    low_s, high_s = _positive(ci[0]), _positive(ci[1])
    if low_s is None or high_s is None or low_s > high_s:
        return None
    return key.value * median / high_s, key.value * median / low_s


def _stated_ci(timing: dict[str, Any]) -> bool:
    ci = timing.get("ci95_median")
    return isinstance(ci, list) and len(ci) == 2


def _derived_intervals(records: Sequence[dict[str, Any]]) -> dict[int, list[float]]:
    """By id(record): the median's bootstrap interval of each record that states none, derived from
    its raw samples as the timer does, where every sample is a positive finite number; all of them
    bootstrapped in one batch (stats.bootstrap_ci_median_many)."""
    at, rows = [], []
    for rec in records:
        timing = _d(rec.get("timing"))
        samples = timing.get("samples_s")
        if _stated_ci(timing) or not isinstance(samples, list) or not samples:
            continue
        try:  # min/max run in C: a per-sample check costs more than the bootstrap over 50,000 records
            if not (min(samples) > 0 and math.isfinite(max(samples))):
                continue
        except TypeError:  # a string among them (a NaN passes min and max: the bootstrap refuses it)
            continue
        at.append(id(rec))
        rows.append(samples)
    return {key: list(ci) for key, ci in zip(at, stats.bootstrap_ci_median_many(rows)) if ci is not None}


def _labels(runs: Sequence[LoadedRun]) -> list[str]:
    """Unique display names: a repeated label gets its position appended."""
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        out.append(run.label if seen[run.label] == 1 else f"{run.label} #{seen[run.label]}")
    return out


def _selected(rec: dict[str, Any], backend: str) -> bool:
    if backend == "all":
        return True
    if backend == "baseline":  # the vendor library measures the hardware; no baseline: the only backend
        return rec.get("baseline") in (None, rec.get("backend"))
    return rec.get("backend") == backend


def _key(rec: dict[str, Any]) -> Key:
    params = json.dumps(rec.get("params") or {}, sort_keys=True, default=str)
    return (str(rec.get("entry") or ""), str(rec["workload"]), params, str(rec["backend"]))


@functools.lru_cache(maxsize=1024)
def _unmeasured(reason: str, unit: str) -> Energy:
    """No energy window, and why; shared (Energy is frozen): most records of a run have one reason."""
    why = missing(f"not measured: {reason}")
    return Energy(why, why, why, unit, None)


def _energy(rec: dict[str, Any], family: Family) -> Energy:
    tel = _d(rec.get("telemetry"))
    if not tel.get("available"):
        return _unmeasured(_text(tel.get("reason"), "no telemetry"), family.energy_unit)
    power = _number(tel.get("avg_power_w"))
    no_power = missing(NO_POWER)
    if power is not None and power <= 0:
        # An energy counter that did not advance over the window: no reading, not a free
        # accelerator (and a cost per provisioned MW would divide by it).
        no_power, power = missing(f"{NO_POWER} (the record's energy window reads {power:g} W)"), None
    per_unit = _d(tel.get("per_unit"))
    unit = family.energy_unit
    if f"j_per_{unit}" not in per_unit:  # a workload that declared other work: its first unit
        unit = next((k.removeprefix("j_per_") for k in per_unit if k.startswith("j_per_")), unit)
    plural = unit if unit in ("tflop", "gb") else f"{unit}s"
    j, per_j = _positive(per_unit.get(f"j_per_{unit}")), _positive(per_unit.get(f"{plural}_per_j"))
    no_j = missing(f"no energy per {unit or 'unit of work'} in the record")
    throttle = _d(tel.get("throttle"))
    # No readable clock-event reasons (AMD, RAPL, an API that says NotSupported) is not "no".
    reasons: tuple[str, ...] | None = () if isinstance(throttle.get("throttled"), bool) else None
    if throttle.get("throttled"):
        seen = throttle.get("reasons_seen") if isinstance(throttle.get("reasons_seen"), list) else []
        reasons = tuple(str(r) for r in seen if r != "GpuIdle") or ("throttled",)
    method = tel.get("method") if isinstance(tel.get("method"), str) else None
    return Energy(Value(power) if power is not None else no_power,
                  Value(j) if j is not None else no_j, Value(per_j) if per_j is not None else no_j,
                  unit, method, reasons)


_BASIS = {"tokens": ("EUR / 1M tokens", "tokens/s per MW"), "images": ("EUR / 1M images", "images/s per MW"),
          "pflop": ("EUR / PFLOP", "")}


def _cost(rec: dict[str, Any], family: Family, key_value: Value, energy: Energy, sc: SystemCost) -> Cost:
    work_label, mw_label = _BASIS.get(family.cost_basis or "", ("", ""))
    if sc.prices is None:
        why = missing(sc.note)
        return Cost(why, why, work_label, why, mw_label)
    p, watts = sc.prices, energy.avg_power_w.value
    hourly = Value(tco.hourly_eur(watts, p)) if watts is not None else missing(NO_POWER)
    rate = key_value.value if rec["status"] == "ok" else None
    no_rate = missing(f"status {rec['status']}") if rec["status"] != "ok" else key_value
    if rate is not None and rate <= 0:
        rate, no_rate = None, missing("no work measured (rate is 0)")
    if not family.cost_basis:
        per_work = missing("no cost basis for this workload")
    elif rate is None:
        per_work = no_rate
    elif hourly.value is None:
        per_work = hourly
    elif family.cost_basis == "pflop":
        per_work = Value(tco.cost_per_pflop(hourly.value, rate))
    else:
        per_work = Value(tco.cost_per_million(hourly.value, rate))
    if family.cost_basis not in ("tokens", "images"):
        per_mw = missing("only for token and image throughput")
    elif rate is None:
        per_mw = no_rate
    elif watts is None:
        per_mw = missing(NO_POWER)
    else:
        per_mw = Value(tco.units_per_provisioned_mw(rate, watts, p.pue))
    return Cost(hourly, per_work, work_label, per_mw, mw_label)


def _cell(rec: dict[str, Any], family: Family, ref: float | None, sc: SystemCost | None,
          derived_ci: list[float] | None = None, label: str = "") -> Cell:
    ok = rec["status"] == "ok"
    metrics, unavailable = _d(rec.get("metrics")), _d(rec.get("unavailable"))
    values: list[Value] = []
    for metric in family.metrics if ok else ():
        value = _number(metrics.get(metric.key))
        reason = unavailable.get(metric.key)
        values.append(Value(value) if value is not None else missing(_text(reason, "not reported by the record")))
    key = values[0] if values else missing(f"status {rec['status']}" if not ok else "no headline metric")
    if key.value is None:
        ratio = missing(key.reason or "")
    elif ref is None or ref <= 0:
        ratio = missing("the first system has no figure to compare with")
    else:
        ratio = Value(key.value / ref)
    timing = _d(rec.get("timing"))
    energy = _energy(rec, family)
    samples = _d(rec.get("telemetry")).get("samples_file")
    return Cell(
        record_id=str(rec["id"]), status=str(rec["status"]), reason=rec.get("reason"), values=tuple(values),
        rel_noise=_number(timing.get("rel_noise")) if family.noise_of_key else None,
        median_s=_number(timing.get("median")), ratio=ratio,
        energy=energy, cost=_cost(rec, family, key, energy, sc) if sc is not None else None,
        samples_file=samples if isinstance(samples, str) else None, ci=_key_ci(timing, family, key, derived_ci),
        ref=label,
    )


def _whole_entry_skips(runs: Sequence[LoadedRun], index: dict[Key, list[dict[str, Any] | None]]
                       ) -> tuple[dict[tuple[Key, int], dict[str, Any]], set[Key]]:
    """An entry skipped as a whole (one record, backend "*", the entry's id without the shape) stands
    for every case of that entry on its system. Where another system measured the entry's cases,
    the skip fills that system's empty cells there (its reason, not "not measured"), and the skip's
    own row goes: it would say the measuring systems did not measure the entry.

    Returns ((row key, system index) -> skip record, the keys of the rows to leave out)."""
    whole: dict[tuple[int, str, str], dict[str, Any]] = {}
    for i, run in enumerate(runs):  # every record, whatever --backend shows: "*" covers all backends
        for rec in run.records:
            if rec.get("backend") == "*" and rec.get("status") == "skipped" and rec.get("entry"):
                whole.setdefault((i, str(rec["workload"]), str(rec["entry"])), rec)
    fills: dict[tuple[Key, int], dict[str, Any]] = {}
    spread: set[int] = set()
    for key, recs in index.items():
        entry, workload, _, backend = key
        if backend == "*" or not entry or not whole:
            continue
        # A case id is "<entry id>/k=v,...": the entry id is a prefix ending before a "/".
        ids = [entry[:n] for n, ch in enumerate(entry) if ch == "/"] + [entry]
        for i, rec in enumerate(recs):
            skip = None if rec is not None else next(
                (s for e in ids if (s := whole.get((i, workload, e))) is not None), None)
            if skip is not None:
                fills[(key, i)] = skip
                spread.add(id(skip))
    dropped = {key for key, recs in index.items()
               if key[3] == "*" and all(r is None or id(r) in spread for r in recs)}
    return fills, dropped


def _system_cost(run: LoadedRun, prices: dict[str, tco.Prices]) -> SystemCost:
    kind = _d(run.manifest.get("device")).get("kind")
    p, note = tco.prices_for(prices, run.label, run.device_name, kind if isinstance(kind, str) else None)
    if p is None:
        return SystemCost(None, f"TCO unavailable: {note}", missing(note))
    return SystemCost(p, note, Value(tco.hourly_fixed_eur(p)))


def build_report(runs: Sequence[LoadedRun], prices: dict[str, tco.Prices] | None = None,
                 backend: str = "baseline", prices_source: str | None = None,
                 commitments: Sequence[Commitment] | None = None, commitments_source: str | None = None) -> Report:
    """Pair the records of `runs` (the first is the reference of every ratio) into a Report; with
    `commitments`, each run is also judged against them (the commitments section)."""
    if not runs:
        raise UsageError("give at least one run directory or bundle")
    if backend not in BACKEND_CHOICES and not any(r.get("backend") == backend for run in runs for r in run.records):
        seen = sorted({printable(r.get("backend")) for run in runs for r in run.records})  # quoted from runs
        raise UsageError(f"no record has backend {backend!r}; these runs have: {', '.join(seen) or 'none'} "
                         f"(or use baseline / all)")
    labels = _labels(runs)
    costs = [_system_cost(run, prices) for run in runs] if prices is not None else [None] * len(runs)
    systems = [_system(run, label) for run, label in zip(runs, labels)]
    systems = [replace(s, cost=c) for s, c in zip(systems, costs)]
    index: dict[Key, list[dict[str, Any] | None]] = {}
    for i, run in enumerate(runs):
        for rec in run.records:
            if _selected(rec, backend):
                slot = index.setdefault(_key(rec), [None] * len(runs))
                if slot[i] is None:  # a repeated measurement: the first one counts
                    slot[i] = rec
    fills, dropped = _whole_entry_skips(runs, index)
    order: dict[str, int] = {}  # rows grouped by family (first appearance), refs numbered in that order
    planned = []
    for key, recs in index.items():
        if key in dropped:
            continue
        metric_keys = {k for r in recs if r is not None for k in _d(r.get("metrics"))}
        family = family_of(key[1], metric_keys)
        planned.append((order.setdefault(family.name, len(order)), key, recs, family))
    planned.sort(key=lambda item: item[0])
    derived = _derived_intervals([r for _, _, recs, _ in planned for r in recs if r is not None] + list(fills.values()))
    rows, refs = [], 0
    curves: dict[Key, list[list[ServingPoint]]] = {}
    for _, key, recs, family in planned:
        first = recs[0]
        ref = None
        if first is not None and first["status"] == "ok" and family.metrics:
            ref = _number(_d(first.get("metrics")).get(family.metrics[0].key))
        cells: list[Cell | None] = []
        for i, rec in enumerate(recs):
            rec = rec if rec is not None else fills.get((key, i))
            if rec is None:
                cells.append(None)
                continue
            refs += 1
            cells.append(cell := _cell(rec, family, ref, costs[i], derived.get(id(rec)), f"r{refs}"))
            if family == LLM_SERVE:
                curves.setdefault(_curve_key(key, rec), [[] for _ in runs])[i].append(_serving_point(rec, cell, key))
        sample = next(r for r in recs if r is not None)
        rows.append(Row(sample.get("entry"), key[1], key[3], _d(sample.get("params")), family, tuple(cells)))
    shown = [[r for r in run.records if _selected(r, backend)] for run in runs]
    warnings = _warnings(runs, systems, shown) + _unused_prices(prices, costs, prices_source)
    serving = tuple(ServingCurve(_curve_title(k), k[3], tuple(tuple(p) for p in pts)) for k, pts in curves.items())
    return Report(tuple(systems), tuple(rows), tuple(warnings), backend, prices_source, serving_curves=serving,
                  acceptance=_acceptance(runs, labels, commitments, commitments_source))


def _curve_key(row: Key, rec: dict[str, Any]) -> Key:
    """The serving set-up a record is a point of: its suite entry (a case id is "<entry id>/<sweep
    point>", and entry ids hold no "/"), workload, backend and every parameter but the load."""
    params = {k: v for k, v in _d(rec.get("params")).items() if k not in LOAD_PARAMS}
    return (row[0].split("/", 1)[0], row[1], json.dumps(params, sort_keys=True, default=str), row[3])


def _curve_title(key: Key) -> str:
    entry, workload, params, _ = key
    return entry or f"{workload} {params_text(json.loads(params))}"


def _serving_point(rec: dict[str, Any], cell: Cell, row: Key) -> ServingPoint:
    """Its two coordinates as the record states them: a missing one is missing with the record's
    reason (an older in-process record has no per-GPU output rate), never derived or 0."""
    metrics, unavailable = _d(rec.get("metrics")), _d(rec.get("unavailable"))

    def coordinate(key: str) -> Value:
        if rec["status"] != "ok":
            return missing(f"status {rec['status']}")
        value = _number(metrics.get(key))
        return Value(value) if value is not None else missing(f"{key}: {_text(unavailable.get(key), 'not in the record')}")

    return ServingPoint(cell.ref, str(rec["id"]), row[0] or str(rec["id"]), coordinate(SERVING_X), coordinate(SERVING_Y))


def _acceptance(runs: Sequence[LoadedRun], labels: Sequence[str], commitments: Sequence[Commitment] | None,
                source: str | None) -> Acceptance | None:
    """The commitments section (None without commitments): aibench accept's verdicts per system."""
    if commitments is None:
        return None
    return build_acceptance(runs, labels, commitments, source or "the commitments file")


def _unused_prices(prices: dict[str, tco.Prices] | None, costs: Sequence[SystemCost | None],
                   source: str | None) -> list[str]:
    """A prices entry no system took is most often a typo of a system's name: said, not ignored."""
    used = {c.note for c in costs if c is not None and c.prices is not None}
    return [f"prices entry {printable(key)!r} in {source or 'the prices file'} matches no system of this report"
            for key in (prices or {}) if key not in used]


_SAID_BY_THE_REPORT = ("preview: ", "not_comparable: ", "interpreted: ", "throttled: ")


def _node_load_note(label: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """Under a launcher every GPU ran each case at once and a record is the slowest GPU's
    (results/node_spread.py): say so, with the widest spread across the GPUs and who was slowest."""
    loads = [(spread, rec) for rec in records
             if (spread := _number(_d(_d(_d(rec.get("details")).get("node_load"))).get("spread"))) is not None]
    if not loads:
        return []
    spread, rec = max(loads, key=lambda item: item[0])
    block = _d(_d(rec.get("details")).get("node_load"))
    return [f"{label}: {len(loads)} measurement(s) ran on every GPU of the node at once; each figure is the "
            f"slowest GPU's. Widest spread across GPUs: {100 * spread:.1f}% ({_text(rec.get('id'))}: slowest "
            f"rank {_text(block.get('slowest_rank'))} on {_text(block.get('slowest_host'))})"]


def _warnings(runs: Sequence[LoadedRun], systems: Sequence[System],
              shown: Sequence[list[dict[str, Any]]]) -> list[str]:
    """Loud notes a buyer must read first; record-level ones count the records in the report."""
    out: list[str] = []
    for run, s, records in zip(runs, systems, shown):
        if s.preview:
            out.append(f"{s.label}: PREVIEW run (CPU or shrunk sizes): its numbers are not comparable "
                       "and say nothing about the hardware")
        elif not s.comparable:
            out.append(f"{s.label}: the run is marked not comparable")
        if not s.complete and not any("incomplete" in w for w in run.warnings):
            out.append(f"{s.label}: the run is INCOMPLETE: some measurements are missing")
        # Verification repeats a warning per record: say each once, with how many records it concerns.
        # Its preview / not-comparable findings are what the line above already says, louder; its
        # interpreted / throttled ones are what the lines below say, counting the records shown.
        counts = Counter(w for w in run.warnings if not w.startswith(_SAID_BY_THE_REPORT))
        out += [f"{s.label}: {w}" + (f" ({n} records)" if n > 1 else "") for w, n in counts.items()]
        interpreted = sum(1 for r in records if r.get("interpreted"))
        if interpreted:
            out.append(f"{s.label}: {interpreted} measurement(s) ran in Triton's CPU interpreter: "
                       "their timings are meaningless")
        throttled = [r for r in records if _d(_d(r.get("telemetry")).get("throttle")).get("throttled")]
        if throttled:
            reasons = sorted({str(x) for r in throttled
                              for x in _d(r["telemetry"]["throttle"]).get("reasons_seen") or [] if x != "GpuIdle"})
            out.append(f"{s.label}: THROTTLED during {len(throttled)} measurement(s) "
                       f"({', '.join(reasons) or 'reason not reported'}): clocks were held below full speed")
        out += _node_load_note(s.label, records)
        if not run.source.endswith(".tar.gz"):  # a bundle with this error was refused already (bundle/load.py)
            out += [f"{s.label}: {f.code.upper()}: {f.message}" for f in system_findings(run.manifest)]
        if s.description_missing:
            out.append(f"{s.label}: the system description lacks {s.description_missing} required field(s)")
    seen_ids: dict[str, str] = {}
    for s in systems:  # one run packed twice, or a bundle beside its own directory: one system, not two
        if s.run_id != "unknown" and s.run_id in seen_ids:
            out.append(f"{seen_ids[s.run_id]} and {s.label} are the same run ({s.run_id}): one system, shown twice")
        seen_ids.setdefault(s.run_id, s.label)
    suites = {(s.suite, s.suite_sha256) for s in systems}
    if len(suites) > 1:
        listed = "; ".join(f"{s.label}: {s.suite} sha256 {s.suite_sha256 or '?'}" for s in systems)
        out.append(f"the systems ran different suites or suite versions ({listed}): "
                   "numbers may not be comparable")
    return out
