"""The workload registry: parameters, backends, errors."""

from __future__ import annotations

import pytest
import torch

from aibench.core.errors import UsageError
from aibench.measure.case import Case, Param, Workload
from aibench.workloads import registry


@pytest.fixture
def wl() -> Workload:
    w = Workload("test.wl", "a test workload", (
        Param("n", int, 1024, "size", preview=8),
        Param("dtype", str, "float32", "type", choices=("float32", "float16")),
        Param("causal", bool, True, "mask"),
        Param("rate", float, 1.0, "rate"),
    ))

    @w.backend("fast")
    def _fast(p: dict, device: torch.device) -> Case:
        return Case(fn=lambda: None)

    @w.backend("ref", baseline=True)
    def _ref(p: dict, device: torch.device) -> Case:
        return Case(fn=lambda: None)

    return w


def test_defaults_and_preview_defaults(wl: Workload) -> None:
    assert wl.resolve_params()["n"] == 1024
    assert wl.resolve_params(preview=True)["n"] == 8
    assert wl.resolve_params(preview=True)["dtype"] == "float32"  # no preview value: the default


def test_typed_overrides(wl: Workload) -> None:
    p = wl.resolve_params({"n": "7", "causal": "false", "rate": "inf", "dtype": "float16"})
    assert p == {"n": 7, "dtype": "float16", "causal": False, "rate": float("inf")}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"n": "seven"}, "expects int"),
    ({"n": 1.5}, "expects int"),
    ({"causal": "maybe"}, "expects bool"),
    ({"dtype": "int8"}, "must be one of"),
    ({"size": "1"}, "has no parameter 'size'"),
])
def test_bad_parameters(wl: Workload, overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        wl.resolve_params(overrides)


def test_baseline_first_and_unique(wl: Workload) -> None:
    assert [b.name for b in wl.ordered_backends()] == ["ref", "fast"]
    assert wl.baseline_name == "ref"
    with pytest.raises(ValueError, match="two baselines"):
        wl.backend("other", baseline=True)(lambda p, d: Case(fn=lambda: None))
    with pytest.raises(ValueError, match="registered twice"):
        wl.backend("fast")(lambda p, d: Case(fn=lambda: None))
    with pytest.raises(UsageError, match="no backend 'nope'"):
        wl.get_backend("nope")


def test_unknown_workload_suggests_a_close_name() -> None:
    with pytest.raises(UsageError, match=r"did you mean 'memory\.copy'"):
        registry.get("memory.cpy")


def test_builtin_workloads_load_without_errors() -> None:
    loaded = registry.load_builtin()
    assert {"memory.copy", "memory.triad"} <= set(loaded)
    assert registry.LOAD_ERRORS == {}
    for w in loaded.values():
        assert w.baseline_name is not None, f"{w.name} has no baseline backend"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rate": "nan"}, "expects float"),           # -p rate=nan: no workload means anything by NaN
    ({"rate": float("nan")}, "expects float"),    # TOML `rate = nan`
    ({"rate": True}, "expects float"),            # TOML `rate = true` read as 1.0
    ({"causal": 2}, "expects bool"),              # TOML `causal = 2` read as true
    ({"causal": 0.0}, "expects bool"),
])
def test_values_of_the_wrong_kind_are_refused(wl: Workload, overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        wl.resolve_params(overrides)


def test_bool_and_float_values_that_fit_are_kept(wl: Workload) -> None:
    p = wl.resolve_params({"causal": False, "rate": 2, "n": 4.0})
    assert p["causal"] is False and p["rate"] == 2.0 and p["n"] == 4
    assert wl.resolve_params({"rate": "inf"})["rate"] == float("inf")
