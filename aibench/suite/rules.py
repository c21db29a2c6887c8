"""A suite's run rules: how long and how often each measurement runs.

Torch-free on purpose: `bundle verify` and `report` compare a vendor's recorded rules with the
shipped suite's (aibench.suite.shipped) on a buyer's machine that may have no GPU stack; only the
methods that build the timer's configuration import the timer (and torch with it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, get_type_hints

if TYPE_CHECKING:
    from aibench.measure.timer import TimerConfig

@dataclass(frozen=True)
class RunRules:
    """How long and how often each measurement runs (the `[rules]` table of aibench.suite.model's format)."""

    min_time_s: float = 0.5
    min_samples: int = 10
    target_rel_se: float = 0.01
    warmup_s: float = 0.25
    max_time_s: float = 10.0
    seed: int = 0
    energy_min_s: float = 2.0
    flush_l2: bool = True
    cuda_graph: bool = False
    case_timeout_s: float = 900.0  # one case (setup, check, timing, energy) past this: failed, suite goes on

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for each value out of range; the timer's own limits included."""
        out: list[tuple[str, str]] = []
        # NaN compares False with everything and JSON cannot hold it or infinity: the rules must
        # be finite numbers before any range check can mean anything (and the manifest records them).
        finite = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
                  and not math.isfinite(getattr(self, f.name))]
        if finite:
            return [(name, "must be a finite number") for name in finite]
        if self.min_samples < 2:
            out.append(("min_samples", "must be at least 2 (one sample has no spread)"))
        if not 0 < self.target_rel_se < 1:
            out.append(("target_rel_se", "must be in (0, 1)"))
        if self.case_timeout_s <= 0:
            out.append(("case_timeout_s", "must be positive"))
        for name in ("min_time_s", "warmup_s", "energy_min_s", "seed"):
            if getattr(self, name) < 0:
                out.append((name, "must not be negative"))
        if self.max_time_s <= 0 or self.max_time_s < self.min_time_s:
            out.append(("max_time_s", f"must be positive and >= min_time_s ({self.min_time_s})"))
        from aibench.measure.timer import TimerConfig  # here: the timer imports torch, and verify reads rules

        if self.min_samples > TimerConfig.max_samples:
            out.append(("min_samples", f"must be at most {TimerConfig.max_samples} (the samples a record keeps)"))
        if not out:  # anything else the timer refuses: said when the file loads, not mid-run
            try:
                self.to_timer_config()
            except ValueError as exc:
                named = [f.name for f in fields(self) if re.search(rf"\b{f.name}\b", str(exc))]
                out.append(((named or ["min_samples"])[0], f"is refused by the timer: {exc}"))
        return out

    def to_timer_config(self) -> TimerConfig:
        """The timer configuration of these rules."""
        from aibench.measure.timer import TimerConfig  # here: the timer imports torch, and verify reads rules

        return TimerConfig(warmup_s=self.warmup_s, min_samples=self.min_samples, min_time_s=self.min_time_s,
                           max_time_s=self.max_time_s, target_rel_se=self.target_rel_se,
                           flush_l2=self.flush_l2, cuda_graph=self.cuda_graph)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# The TOML type of each rule, from the fields themselves; an integer where a float is expected is
# taken as that float (overlaid).
RULE_TYPES: dict[str, type] = get_type_hints(RunRules)


def overlaid(base: RunRules, raw: dict[str, Any]) -> RunRules:
    """`base` with a [rules] table's values over it, unchecked (aibench.suite.check says what is wrong)."""
    return replace(base, **{k: float(v) if RULE_TYPES[k] is float else v for k, v in raw.items()})
