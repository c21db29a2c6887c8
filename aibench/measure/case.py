"""The case types a workload hands to the runner: its parameters (Param), a backend's setup
result (Case, or CustomMeasurement for a workload that times itself), backends and workloads.

Registering them is the workloads layer's job (aibench/workloads/registry.py); the runner only
needs these types, so measurement never imports a workload module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from aibench.core.checks import Check
from aibench.core.errors import UsageError
from aibench.core.jsonutil import jsonable
from aibench.core.text import did_you_mean

_MISSING: Any = object()


@dataclass(frozen=True)
class Param:
    """A workload parameter: name, type, default, help and optional choices.

    `preview` is the default used on a CPU (preview mode: same workload, small size).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    preview: Any = _MISSING

    def default_for(self, preview: bool) -> Any:
        return self.preview if preview and self.preview is not _MISSING else self.default

    def parse(self, raw: Any) -> Any:
        """Coerce a CLI string (or a TOML value) to the declared type, validating choices."""
        try:
            if self.type is bool and isinstance(raw, str):
                lowered = raw.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                value: Any = lowered in ("1", "true", "yes", "on")
            elif self.type is float and isinstance(raw, str) and raw.strip().lower() in ("inf", "infinity"):
                value = float("inf")  # e.g. request_rate=inf: every request arrives at t=0
            elif (self.type is int and isinstance(raw, float) and not raw.is_integer()) or (self.type is int and isinstance(raw, bool)):
                raise ValueError(raw)
            elif (self.type is float and isinstance(raw, bool)) or (self.type is bool and not isinstance(raw, bool)):
                raise ValueError(raw)  # TOML's `rate = true` or `causal = 2`: a typo, not a value
            else:
                value = self.type(raw)
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(raw)  # no workload means anything by NaN (it would be recorded as null)
        except (TypeError, ValueError):
            raise UsageError(
                f"parameter {self.name!r} expects {self.type.__name__}, got {raw!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            options = ", ".join(str(c) for c in self.choices)
            raise UsageError(f"parameter {self.name!r} must be one of {options}; got {raw!r}")
        return value

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type.__name__, "default": jsonable(self.default)}
        if self.preview is not _MISSING:
            out["preview"] = jsonable(self.preview)
        if self.choices is not None:
            out["choices"] = [jsonable(c) for c in self.choices]
        out["help"] = self.help
        return out


@dataclass
class CustomMeasurement:
    """What a workload that measures itself (a serving loop) hands back to the runner.

    `samples_s` are the raw durations its statistics come from (for serving: per-request
    end-to-end latencies); `metrics` its derived numbers; `details` anything else to record.
    """

    samples_s: list[float]
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    # How its own loop stopped, as the timer would say it: a serving run is a fixed request set
    # (nothing to converge); a collective's ranks run a plan and its noise target may be missed.
    warmup_calls: int = 0
    converged: bool = True
    stop_reason: str = "self-timed workload (fixed request count)"
    # With Case.energy_of_run: the units of work done inside the energy window it opened
    # ({"tokens": output tokens of the measured requests}); energy per unit is per these.
    work: dict[str, float] = field(default_factory=dict)


# What a self-timed case with `energy_of_run` is handed: it calls it once with the stretch of its
# own run whose energy counts (the measured requests, not the warm-up or extra sweep points) and
# gets that call's result back; the runner samples telemetry around it when there is telemetry.
EnergyWindow = Callable[[Callable[[], Any]], Any]


def no_window(fn: Callable[[], Any]) -> Any:
    """The EnergyWindow of a measurement made without the runner (a test, a one-off): just runs it."""
    return fn()


@dataclass
class Case:
    """One prepared measurement. Mutable on purpose: it holds the allocated tensors."""

    fn: Callable[[], Any]
    check: Callable[[], Check] | None = None
    flops: float | None = None  # floating-point operations per call of fn
    bytes: float | None = None  # fewest bytes one call must move through device memory
    work: dict[str, float] = field(default_factory=dict)  # units per call: {"tokens": 4096}
    dtype: str | None = None  # picks the peak TFLOP/s row for "% of peak"
    metrics: Callable[[float], dict[str, float]] | None = None  # extra metrics of the median (s)
    # Metrics this case cannot give, with the reason (MFU without a datasheet peak): the record
    # says why, never a 0 and never a silent gap.
    unavailable: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # recorded as-is (JSON-safe values)
    measure: Callable[[Any], CustomMeasurement] | None = None  # replaces the timer when set
    cuda_graph_ok: bool = True  # False when fn synchronises or allocates (cannot be captured)
    devices: int = 1  # devices fn runs on at once (a collective: every rank's GPU)
    # Energy over the run itself rather than over repeated calls of fn: `measure` is called as
    # measure(timer_config, window) and runs its measured part through `window` (EnergyWindow);
    # fn is then never called. For serving, where J/token is the run's energy over its tokens.
    energy_of_run: bool = False


SetupFn = Callable[[dict[str, Any], torch.device], Case]
AvailabilityFn = Callable[[torch.device], "tuple[bool, str | None]"]


def _always(_device: torch.device) -> tuple[bool, str | None]:
    return True, None


@dataclass(frozen=True)
class Backend:
    name: str
    setup: SetupFn
    baseline: bool = False
    available: AvailabilityFn = _always
    description: str = ""


@dataclass
class Workload:
    name: str
    description: str
    params: tuple[Param, ...]
    backends: dict[str, Backend] = field(default_factory=dict)
    # Checks across parameters (heads a multiple of kv_heads) and of values no backend can take
    # (m = 0): a UsageError before anything is measured, not a failed record. Device-free.
    validate: Callable[[dict[str, Any]], None] | None = None
    # One set of overrides -> the cases it stands for (a collective's `sizes` sweep: one case,
    # hence one record, per message size). None: one case. Pure, device-free, raises UsageError.
    expand: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None

    def backend(
        self,
        name: str,
        *,
        baseline: bool = False,
        available: AvailabilityFn | None = None,
        description: str = "",
    ) -> Callable[[SetupFn], SetupFn]:
        """Decorator registering a setup function as one backend of this workload."""

        def register(setup: SetupFn) -> SetupFn:
            if name in self.backends:
                raise ValueError(f"{self.name}: backend {name!r} registered twice")
            if baseline and self.baseline_name is not None:
                raise ValueError(f"{self.name}: two baselines ({self.baseline_name!r}, {name!r})")
            self.backends[name] = Backend(name, setup, baseline, available or _always, description)
            return setup

        return register

    @property
    def baseline_name(self) -> str | None:
        return next((b.name for b in self.backends.values() if b.baseline), None)

    def ordered_backends(self) -> list[Backend]:
        """Baseline first, so that the others can carry their speedup against it."""
        return sorted(self.backends.values(), key=lambda b: not b.baseline)

    def get_backend(self, name: str) -> Backend:
        if name not in self.backends:
            raise UsageError(
                f"workload {self.name!r} has no backend {name!r} (has: {', '.join(self.backends)})"
            )
        return self.backends[name]

    def resolve_params(self, overrides: Mapping[str, Any] | None = None, *, preview: bool = False,
                       check: bool = True) -> dict[str, Any]:
        """Defaults (preview defaults on CPU) overlaid with typed, validated overrides; with `check`,
        the whole set also passes the workload's `validate` (a suite file's keys, checked one at a
        time against defaults, leave it for the planned cases)."""
        overrides = dict(overrides or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            hint = did_you_mean(unknown[0], known)
            raise UsageError(
                f"workload {self.name!r} has no parameter {unknown[0]!r}{hint} "
                f"(parameters: {', '.join(known) or 'none'})"
            )
        params = {
            name: (p.parse(overrides[name]) if name in overrides else p.default_for(preview))
            for name, p in known.items()
        }
        if check and self.validate is not None:
            self.validate(params)
        return params

    def expand_overrides(self, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The overrides of each case that `overrides` stands for (itself, unless the workload sweeps)."""
        given = dict(overrides or {})
        return self.expand(given) if self.expand is not None else [given]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.as_dict() for p in self.params],
            "backends": [
                {"name": b.name, "baseline": b.baseline, "description": b.description}
                for b in self.ordered_backends()
            ],
        }
