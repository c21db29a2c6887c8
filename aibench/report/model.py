"""What a report holds, independent of its format: systems, paired measurements, energy, cost.

Every figure is a `Value`: a number, or None with the reason it is unavailable (never a 0 that
stands for "unknown"). Every cell keeps the id of the record it came from, so each number in
every format can be traced to the raw samples.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aibench.report.tco import Prices

if TYPE_CHECKING:  # the commitments section: built only when a report is given --commitments
    from aibench.report.acceptance import Acceptance


@dataclass(frozen=True)
class Value:
    value: float | None
    reason: str | None = None  # why value is None

    @property
    def ok(self) -> bool:
        return self.value is not None


@functools.lru_cache(maxsize=4096)
def missing(reason: str) -> Value:
    """A value that is not there and why. Shared (Value is frozen): a 50-system report has 100,000
    of them with a few dozen reasons, and building each one cost 0.3 s."""
    return Value(None, reason)


@dataclass(frozen=True)
class Metric:
    key: str  # in a record's `metrics`
    title: str
    unit: str
    scale: float = 1.0  # shown value = metric x scale (seconds -> ms)


@dataclass(frozen=True)
class Family:
    """A group of workloads with the same headline metrics; the first metric is the key one."""

    name: str
    metrics: tuple[Metric, ...]
    energy_unit: str  # the per_unit name: tflop, gb, token, image
    cost_basis: str | None = None  # tokens | images | pflop: what the TCO prices
    # Whether the timing's noise (spread of the median of its samples) is the key metric's: true
    # where the metric is the median's inverse; a serving run's samples are request latencies,
    # and its throughput is tokens over the whole run, which that spread says nothing about.
    noise_of_key: bool = True


_TFLOPS = Metric("tflops", "TFLOP/s", "TFLOP/s")
_GBPS = Metric("gbps", "GB/s", "GB/s")
_TOKENS = Metric("tokens_per_s", "tokens/s", "tok/s")
_IMAGES = Metric("images_per_s", "images/s", "img/s")

COMPUTE = Family("Compute: GEMM and attention prefill",
                 (_TFLOPS, Metric("pct_peak_tflops", "% of peak", "%")), "tflop", "pflop")
MEMORY = Family("Memory bandwidth: memory.* and attention decode",
                (_GBPS, Metric("pct_peak_bandwidth", "% of bandwidth", "%")), "gb")
LLM_PREFILL = Family("LLM prefill", (_TOKENS, Metric("mfu_pct", "MFU", "%")), "token", "tokens")
LLM_DECODE = Family("LLM decode", (_TOKENS, Metric("mbu_pct", "MBU", "%"), Metric("tpot_s", "TPOT", "ms", 1e3)),
                    "token", "tokens")
LLM_SERVE = Family("LLM serving", (
    Metric("output_tokens_per_s", "output tokens/s", "tok/s"),
    Metric("ttft_p99_s", "TTFT p99", "ms", 1e3),
    Metric("tpot_p99_s", "TPOT p99", "ms", 1e3),
    Metric("goodput_rps", "goodput", "req/s"),
), "token", "tokens", noise_of_key=False)
VISION = Family("Vision", (_IMAGES,), "image", "images")
# nccl-tests' busbw first: it is comparable across GPU counts and collectives (algbw is not).
COLLECTIVES = Family("Collectives: across the node's GPUs", (
    Metric("busbw_gbps", "bus bandwidth", "GB/s"),
    Metric("algbw_gbps", "algorithm bandwidth", "GB/s"),
), "collective")
_OTHER_CANDIDATES = ((_TFLOPS, "tflop", "pflop"), (_TOKENS, "token", "tokens"), (_IMAGES, "image", "images"),
                     (_GBPS, "gb", None))


def family_of(workload: str, metric_keys: set[str]) -> Family:
    """The family of a workload; an unknown one gets the first rate its records report."""
    if workload in ("gemm", "attention.prefill"):
        return COMPUTE
    if workload.startswith("memory.") or workload == "attention.decode":
        return MEMORY
    known = {"llm.prefill": LLM_PREFILL, "llm.decode": LLM_DECODE, "llm.serve": LLM_SERVE}
    if workload in known:
        return known[workload]
    if workload.startswith("vision."):
        return VISION
    if workload.startswith("collective."):
        return COLLECTIVES
    for metric, unit, basis in _OTHER_CANDIDATES:
        if metric.key in metric_keys:
            return Family(f"Other: {workload}", (metric,), unit, basis)
    return Family(f"Other: {workload}", (), "")


@dataclass(frozen=True)
class Energy:
    avg_power_w: Value
    j_per_unit: Value
    units_per_j: Value
    unit: str  # tflop, gb, token, image
    method: str | None  # counter, integrated_power, mixed
    throttle: tuple[str, ...] | None = ()  # clock-event reasons seen while throttled; None: unknown

    @property
    def measured(self) -> bool:
        return self.avg_power_w.ok


@dataclass(frozen=True)
class Cost:
    """TCO figures of one record (None when the run has no prices)."""

    hourly_eur: Value
    per_work_eur: Value  # per 1M tokens / 1M images / 1 PFLOP
    per_work_label: str
    per_mw: Value  # units/s per provisioned MW (tokens and images only)
    per_mw_label: str


@dataclass(frozen=True)
class Cell:
    """One system's record of one measurement."""

    record_id: str
    status: str
    reason: str | None
    values: tuple[Value, ...]  # one per family metric (empty unless status is ok)
    rel_noise: float | None
    median_s: float | None
    ratio: Value  # key metric / the first system's
    energy: Energy
    cost: Cost | None
    samples_file: str | None = None
    ref: str = ""  # short reference ("r3") into the record index
    # 95% confidence interval of the key metric (from the median's bootstrap interval); None where
    # the timing's spread is not the key metric's (noise_of_key false) or the record has none.
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Row:
    entry: str | None
    workload: str
    backend: str
    params: dict[str, Any]
    family: Family
    cells: tuple[Cell | None, ...]  # one per system; None: not measured there

    @property
    def label(self) -> str:
        return self.entry or f"{self.workload} {params_text(self.params)}".strip()

    @property
    def params_json(self) -> str:
        return params_text(self.params)


@dataclass(frozen=True)
class SystemCost:
    prices: Prices | None
    note: str  # the prices key used, or why there is no TCO
    fixed_hourly_eur: Value


@dataclass(frozen=True)
class System:
    label: str
    source: str
    is_dir: bool
    run_id: str
    device: str
    submitter: str
    accelerators: str
    driver: str
    torch: str
    triton: str
    suite: str  # "name version (mode)"
    suite_sha256: str  # prefix
    created_at: str
    complete: bool
    preview: bool
    comparable: bool
    description_missing: int  # required system-description fields nobody gave
    cost: SystemCost | None = None
    signature: str = "not stated"  # LoadedRun.signature: verified signer, unchecked or unsigned
    accelerator_count: int | None = None  # for per-GPU figures; None where no one says
    # MLPerf's divisions: "closed" is a suite this aibench ships, run as shipped (verify checks the
    # hash, rules and plan of a bundle); "open" any other suite, comparable only with care.
    division: str = "open"


@dataclass(frozen=True)
class ServingPoint:
    """One record of a serving sweep as a point of the throughput-vs-interactivity chart."""

    ref: str  # the cell's record reference ("r3")
    record_id: str
    label: str  # the measurement (the case id: entry and its sweep point)
    interactivity: Value  # x: interactivity_tok_s_user, 1000 / TPOT in ms (tok/s per user)
    per_gpu: Value  # y: output_tokens_per_s_per_gpu

    @property
    def ok(self) -> bool:
        return self.interactivity.ok and self.per_gpu.ok


def point_xy(p: ServingPoint) -> tuple[float, float]:
    """(interactivity, per-GPU output rate) of a point that has both (`p.ok`)."""
    if p.interactivity.value is None or p.per_gpu.value is None:
        raise ValueError(f"{p.ref} lacks a coordinate")
    return p.interactivity.value, p.per_gpu.value


@dataclass(frozen=True)
class ServingCurve:
    """The points of one serving set-up (a suite entry's sweep, one backend), per system."""

    title: str
    backend: str
    points: tuple[tuple[ServingPoint, ...], ...]  # one tuple per system, in Report.systems order


@dataclass(frozen=True)
class Report:
    systems: tuple[System, ...]
    rows: tuple[Row, ...]
    warnings: tuple[str, ...]
    backend: str
    prices_source: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    serving_curves: tuple[ServingCurve, ...] = ()  # serving records as sweep points (the Pareto chart)
    acceptance: Acceptance | None = None  # the commitments section; None without --commitments

    def families(self) -> list[tuple[Family, list[Row]]]:
        """Rows grouped by family, families in order of first appearance."""
        groups: dict[str, tuple[Family, list[Row]]] = {}
        for row in self.rows:
            groups.setdefault(row.family.name, (row.family, []))[1].append(row)
        return list(groups.values())

    def cells(self) -> list[tuple[Row, System, Cell]]:
        return [(row, self.systems[i], c) for row in self.rows for i, c in enumerate(row.cells) if c is not None]


def params_text(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str, ensure_ascii=False)


# --- formatting shared by every renderer ---------------------------------------------------------


def num(x: float) -> str:
    """A readable number: thousands separated, three or four significant digits below."""
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:#.3g}"


def show(v: Value, unit: str = "", scale: float = 1.0) -> str:
    if v.value is None:
        return f"unavailable: {v.reason or 'not reported'}"
    x = v.value * scale + 0.0  # + 0.0: -0.0 (schema-valid, >= 0) is shown as 0, never "-0.0"
    if unit == "%":
        # A measured share below 0.05% is not 0.0%: two significant digits (a preview's 2.5e-05%).
        return f"{x:.2g}%" if 0 < x < 0.05 else f"{x:.1f}%"
    return f"{num(x)} {unit}".rstrip()


def noise_text(rel_noise: float | None) -> str:
    return f"±{rel_noise * 100:.1f}%" if rel_noise is not None else ""


def ratio(x: float) -> str:
    """A speedup: two decimals, or two significant digits below 0.01 (a preview run's 0.0003x is
    not 0.00x)."""
    return f"{x:.2f}x" if abs(x) >= 0.01 else f"{x:.2g}x"


def ratio_text(v: Value) -> str:
    return ratio(v.value) if v.value is not None else "-"


ENERGY_UNITS = {"tflop": "TFLOP", "gb": "GB", "token": "token", "image": "image"}


def energy_unit_name(unit: str) -> str:
    return ENERGY_UNITS.get(unit, unit or "unit")


def metric_texts(family: Family, cell: Cell) -> list[str]:
    """One text per family metric; a record that is not ok shows its status and reason, no number."""
    if cell.status != "ok":
        return [f"{cell.status}: {cell.reason or 'no reason given'}"] + ["-"] * (len(family.metrics) - 1)
    out = [show(v, m.unit, m.scale) for m, v in zip(family.metrics, cell.values)]
    if out and cell.values[0].ok and cell.rel_noise is not None:
        out[0] += f" {noise_text(cell.rel_noise)}"
    return out


def energy_texts(e: Energy) -> list[str]:
    """avg power, J per unit, units per J, method, throttle."""
    unit = energy_unit_name(e.unit)
    if not e.avg_power_w.ok and e.j_per_unit.reason == e.avg_power_w.reason:  # one reason, said once
        return [show(e.avg_power_w), "unavailable", "unavailable", "-", "-"]
    plural = unit if e.unit in ("tflop", "gb") else f"{unit}s"  # TFLOP/J, GB/J; tokens/J, collectives/J
    return [show(e.avg_power_w, "W"), show(e.j_per_unit, f"J/{unit}"), show(e.units_per_j, f"{plural}/J"),
            (e.method or "-").replace("integrated_power", "integrated power"),
            "unknown" if e.throttle is None else (", ".join(e.throttle) or "no")]


def cost_texts(c: Cost) -> list[str]:
    """EUR per hour, cost per unit of work, throughput per provisioned MW."""
    per_work = show(c.per_work_eur, c.per_work_label) if c.per_work_label else "-"
    per_mw = show(c.per_mw, c.per_mw_label) if c.per_mw_label else "-"
    return [show(c.hourly_eur, "EUR/h"), per_work, per_mw]


def energy_view(report: Report) -> tuple[list[tuple[Row, System, Cell]], list[tuple[System, str]]]:
    """Energy rows (measured records) of the systems that measured any energy, and (system, why not)
    for those that measured none. A skipped or failed record has no energy window: its row would
    only repeat, as an energy reason, what the results table already says."""
    measured, unmeasured = set(), []
    for i, system in enumerate(report.systems):
        cells = [c for row in report.rows if (c := row.cells[i]) is not None and c.status == "ok"]
        if any(c.energy.measured for c in cells):
            measured.add(i)
        else:
            reasons = sorted({c.energy.avg_power_w.reason or "" for c in cells})
            unmeasured.append((system, "; ".join(reasons) or "no measured records"))
    rows = [(row, report.systems[i], c) for row in report.rows for i, c in enumerate(row.cells)
            if c is not None and c.status == "ok" and i in measured]
    return rows, unmeasured


def cost_view(report: Report) -> list[tuple[Row, System, Cell]]:
    """The cells that carry a TCO figure: measured records (a skipped one has no rate to cost) of
    workloads with a cost basis, on systems with prices (the prices table already says why a
    system has none; repeating it on each of its rows buries the figures that exist)."""
    return [(row, s, c) for row, s, c in report.cells()
            if row.family.cost_basis and c.cost is not None and c.status == "ok"
            and s.cost is not None and s.cost.prices is not None]


def prices_texts(c: SystemCost | None) -> list[str]:
    """capex, lifetime, opex per year, price per kWh, PUE, fixed hourly cost ("-" without prices)."""
    p = c.prices if c is not None else None
    if c is None or p is None:
        return ["-"] * 6
    return [f"{num(p.capex_eur)} EUR", f"{p.lifetime_years:g} years", f"{num(p.opex_eur_per_year)} EUR",
            f"{p.power_eur_per_kwh:g} EUR", f"{p.pue:g}", show(c.fixed_hourly_eur, "EUR/h")]
