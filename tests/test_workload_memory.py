"""The memory.copy and memory.triad workloads: their byte and FLOP counts, the peak row their
% of peak is taken against, and their parameter errors."""

from __future__ import annotations

import pytest
import torch

from aibench.core.errors import UsageError
from aibench.device import devices
from aibench.device.specs import match_spec
from aibench.measure import runner
from aibench.workloads import memory
from aibench.workloads.memory import copy_wl, triad_wl

CPU = torch.device("cpu")
H100 = match_spec("NVIDIA H100 80GB HBM3")


def _setup(wl: object, backend: str, **overrides: object):  # -> Case
    params = wl.resolve_params(overrides, preview=True)  # type: ignore[attr-defined]
    return wl.get_backend(backend).setup(params, CPU)  # type: ignore[attr-defined]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_copy_and_triad_count_what_they_move(dtype: str) -> None:
    mib = 1
    itemsize = getattr(torch, dtype).itemsize
    elements = mib * 2**20 // itemsize
    copy = _setup(copy_wl, "torch", mib=mib, dtype=dtype)
    assert copy.bytes == 2 * mib * 2**20 and copy.flops is None  # one read, one write
    triad = _setup(triad_wl, "torch", mib=mib, dtype=dtype)
    assert triad.bytes == 3 * mib * 2**20  # b and c read, a written
    assert triad.flops == 2 * elements  # one multiply and one add per element
    assert copy.check().passed and triad.check().passed


@pytest.mark.parametrize(("dtype", "peak"), [("float32", 67.0), ("float16", None), ("bfloat16", None)])
def test_triad_percent_of_peak_is_against_the_vector_peak(monkeypatch: pytest.MonkeyPatch, dtype: str,
                                                          peak: float | None) -> None:
    # A triad is element-wise: it never runs on the tensor cores, so its TFLOP/s must not be
    # taken against the dense matmul peak of bf16/fp16 (989.4 on an H100). fp32's row is the
    # non-tensor one (67), the right ceiling; no datasheet row gives a non-tensor fp16/bf16 peak.
    assert H100 is not None
    monkeypatch.setattr(devices, "spec_for", lambda device: H100)
    case = _setup(triad_wl, "torch", mib=1, dtype=dtype)
    metrics, unavailable = runner.derive_metrics(case, 1e-3, CPU)
    if peak is None:
        assert "pct_peak_tflops" not in metrics
        assert "non-tensor" in unavailable["pct_peak_tflops"]
    else:
        assert metrics["pct_peak_tflops"] == pytest.approx(100 * metrics["tflops"] / peak)
    assert metrics["pct_peak_bandwidth"] == pytest.approx(100 * metrics["gbps"] / 3350)


@pytest.mark.parametrize("mib", [0, -3])
@pytest.mark.parametrize("wl", [copy_wl, triad_wl], ids=["copy", "triad"])
def test_a_buffer_of_no_bytes_is_a_usage_error(wl: object, mib: int) -> None:
    with pytest.raises(UsageError, match="mib must be >= 1"):
        _setup(wl, "torch", mib=mib)
    with pytest.raises(UsageError, match="mib must be >= 1"):
        memory.validate_params({"mib": mib, "dtype": "float32"})
