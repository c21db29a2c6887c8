"""The persistent TMA matmul (aibench/kernels/matmul_tma.py): results against a float64 reference on odd
shapes in both weight layouts, why a case cannot take TMA, and the tile bookkeeping.

On a CPU it runs in Triton's interpreter (tests/conftest.py), whose host-side tensor descriptors
zero-fill reads past the edges and clip stores as the TMA unit does; sm_90 compilation is
checked by scripts/compile_check.py (tests/test_kernels_compile.py)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from matmul_helpers import randn, rel_error

from aibench.core.errors import Unsupported
from aibench.kernels.matmul import matmul_reference

# The package re-exports the function `matmul_tma`, which shadows the module attribute of that name.
mt = importlib.import_module("aibench.kernels.matmul_tma")

pytestmark = pytest.mark.skipif(not mt.HAS_TMA, reason="this triton has no host-side tensor descriptors")


# (M, N, K): K and N multiples of 8 (16-byte rows in 2-byte types); M anything. The interpreter's
# tiles are 16: ragged M, N and K tails, a single row, more tiles than persistent programs.
SHAPES = [(1, 16, 8), (37, 56, 40), (129, 72, 24), (64, 48, 64)]


@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_both_weight_layouts_match_float64(m: int, n: int, k: int, dtype: torch.dtype) -> None:
    a, w = randn(m, k, dtype=dtype, seed=1), randn(n, k, dtype=dtype, seed=2)
    b = randn(k, n, dtype=dtype, seed=3)
    # One rounding to the output dtype after an fp32 sum (bf16 truncates in the interpreter: 2x).
    tol = 1e-3 if dtype == torch.float16 else 8e-3
    for rhs in (w.t(), b):  # w.t(): descriptor over w [N, K] (nn.Linear); b: row-major [K, N]
        out = mt.matmul_tma(a, rhs)
        assert out.dtype == dtype and out.shape == (m, n)
        assert rel_error(out, matmul_reference(a, rhs)) < tol


@pytest.mark.parametrize("epilogue", [{"EPILOGUE_SUBTILE": True, "FLATTEN": True},
                                      {"EPILOGUE_SUBTILE": False, "FLATTEN": True}])
def test_split_epilogue_and_flattened_loop_match_float64(epilogue: dict[str, bool],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hopper configs' two forms: C stored as two column halves (the right half starts inside
    N or past it: clipped), and the persistent loop flattened (the interpreter ignores the hint,
    the epilogue's own tile counter must still land on the tile just computed)."""
    monkeypatch.setattr(mt, "_INTERPRETER_EPILOGUE", epilogue)
    for m, n, k in [(37, 24, 40), (129, 72, 24), (16, 8, 16)]:  # N % 16 == 8: a half-tile edge
        a, w = randn(m, k, dtype=torch.float16, seed=4), randn(n, k, dtype=torch.float16, seed=5)
        out = mt.matmul_tma(a, w.t())
        assert rel_error(out, matmul_reference(a, w.t())) < 1e-3


@pytest.mark.parametrize(
    ("a", "b", "out_dtype", "message"),
    [
        (torch.randn(4, 16), torch.randn(16, 16), None, "float16/bfloat16, not float32"),
        (torch.randn(4, 29).half(), torch.randn(29, 16).half(), None, "A row-major with 16-byte aligned rows"),
        (torch.randn(16, 4).half().t(), torch.randn(16, 16).half(), None, "A row-major"),
        (torch.randn(4, 16).half(), torch.randn(24, 20).half()[:, :16].t(), None, "weight's rows 16-byte aligned"),
        (torch.randn(4, 16).half(), torch.randn(16, 12).half(), None, "B row-major"),
        (torch.randn(4, 16).half(), torch.randn(12, 16).half().t()[:, :4], None, "C's rows 16-byte aligned"),
        (torch.randn(4, 16).half(), torch.randn(16, 16).half(), torch.float32, "returns the input dtype"),
    ],
)
def test_cases_tma_cannot_take_say_why(a: torch.Tensor, b: torch.Tensor, out_dtype: Any, message: str) -> None:
    assert message in (mt.tma_unsupported_reason(a, b, out_dtype) or "")
    with pytest.raises(Unsupported, match=message.split(",")[0]):
        mt.matmul_tma(a, b, out_dtype=out_dtype)


def test_bad_inputs_raise_like_matmul() -> None:
    with pytest.raises(ValueError, match="inner dimensions differ"):
        mt.matmul_tma(torch.randn(4, 16).half(), torch.randn(8, 16).half())
    with pytest.raises(TypeError, match="cast both to one dtype"):
        mt.matmul_tma(torch.randn(4, 16).half(), torch.randn(16, 16).bfloat16())


def test_pre_hook_sets_tile_shapes_for_each_layout() -> None:
    descs = {name: SimpleNamespace(block_shape=[16, 16]) for name in ("a_desc", "b_desc", "c_desc")}
    tile = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "EPILOGUE_SUBTILE": False}
    mt._set_block_shapes({**descs, **tile, "B_KMAJOR": True})
    assert [d.block_shape for d in descs.values()] == [[128, 64], [256, 64], [128, 256]]
    mt._set_block_shapes({**descs, **tile, "B_KMAJOR": False})
    assert descs["b_desc"].block_shape == [64, 256]  # [BLOCK_K, BLOCK_N] tiles of a row-major B
    mt._set_block_shapes({**descs, **tile, "B_KMAJOR": False, "EPILOGUE_SUBTILE": True})
    assert descs["c_desc"].block_shape == [128, 128]  # C stored in two column halves


def test_configs_are_pruned_by_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = mt._configs()
    args = {"a_desc": SimpleNamespace(base=torch.empty(1))}
    monkeypatch.setattr(mt, "_max_shared_memory", lambda index: 232448)  # H100/H200: 227 KB per block
    kept = mt._fits(configs, args)
    # 128x256x64 with 3 stages: 2 * (3 * 384 * 64 + 128 * 256) = 212992 bytes; with 4 stages and
    # C in halves: 2 * (4 * 384 * 64 + 128 * 128) = 229376 bytes. Both fit.
    assert len(kept) == len(configs)
    assert {mt._smem_bytes(c) for c in configs if c.kwargs["BLOCK_N"] == 256} == {212992, 229376}
    monkeypatch.setattr(mt, "_max_shared_memory", lambda index: 213_000)
    assert all(c.num_stages == 3 for c in mt._fits(configs, args) if c.kwargs["BLOCK_N"] == 256)
    monkeypatch.setattr(mt, "_max_shared_memory", lambda index: 200_000)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) for c in mt._fits(configs, args)} == {
        (128, 128, 64), (128, 64, 64), (64, 128, 64)}
    monkeypatch.setattr(mt, "_max_shared_memory", lambda index: 1000)  # nothing fits: the smallest, to fail loudly
    (smallest,) = mt._fits(configs, args)
    assert (smallest.kwargs["BLOCK_M"], smallest.kwargs["BLOCK_N"]) in {(128, 64), (64, 128)}


# --- matmul() races the TMA kernel on a key's first launch ----------------------------------------

mm = importlib.import_module("aibench.kernels.matmul")


class OneConfigTuner:
    """Stands in for triton's autotuner on the CPU: 'tunes' to one pointer config and launches it."""

    def __init__(self) -> None:
        import triton

        self.best_config = triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2, "SPLIT_K": 1},
                                         num_warps=4, num_stages=2)
        self.configs = [self.best_config]

    def __getitem__(self, grid: Any) -> Any:
        def run(*args: Any, **meta: Any) -> None:
            kwargs = self.best_config.all_kwargs()
            mm._kernel[grid(kwargs)](*args, **kwargs, **meta)

        return run


@pytest.fixture
def race_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Launch cache and choices emptied, every key a TMA candidate, do_bench replaced by fixed
    medians (`times`: pointer, then TMA) and launch_into counted."""
    import triton

    env: dict[str, Any] = {"times": [2.0, 1.0], "tma_launches": 0}
    monkeypatch.setattr(mm, "_LAUNCH_CACHE", {})
    monkeypatch.setattr(mm, "_KERNEL_CHOICE", {})
    monkeypatch.setattr(mm, "_tma_candidate", lambda args, meta: True)
    real = mt.launch_into

    def counted(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
        env["tma_launches"] += 1
        real(a, b, c)

    monkeypatch.setattr(mt, "launch_into", counted)

    def do_bench(fn: Any) -> float:
        fn()
        return env["times"].pop(0)

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    return env


def _launch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
    # upcast: the interpreter's bf16 dot is broken (on a GPU, _tma_candidate excludes UPCAST).
    args, meta = mm._launch_args(a, b, c, None, None, allow_tf32=False, upcast=True)
    mm._launch_tuned(OneConfigTuner(), args, meta)
    return c


def test_faster_agreeing_tma_kernel_takes_over_the_key(race_env: dict[str, Any]) -> None:
    a, w = randn(80, 32, dtype=torch.float16, seed=4), randn(48, 32, dtype=torch.float16, seed=5)
    ref = matmul_reference(a, w.t())
    assert rel_error(_launch(a, w.t()), ref) < 1e-3  # the pointer kernel's result, raced once
    assert race_env["tma_launches"] == 2  # the agreement check and do_bench's call
    config = mm.tuned_config()
    assert config is not None and config["kernel"] == "tma"
    assert config["kernel_choice"] == "do_bench medians: TMA 1000.0 us, pointer 2000.0 us"
    assert rel_error(_launch(a, w.t()), ref) < 1e-3 and race_env["tma_launches"] == 3  # cached: TMA


def test_a_later_launch_tma_cannot_take_runs_the_pointer_kernel(race_env: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch key holds neither the row stride nor the base address: after TMA won a key, a
    view of the same bucket and K that is not 16-byte aligned must still get a right answer."""
    monkeypatch.setattr(mm, "_tma_candidate", lambda args, meta: args[0].data_ptr() % 16 == 0)
    w = randn(48, 32, dtype=torch.float16, seed=5)
    _launch(randn(80, 32, dtype=torch.float16, seed=4), w.t())
    assert mm.tuned_config()["kernel"] == "tma"
    launches = race_env["tma_launches"]
    shifted = randn(80 * 32 + 1, 1, dtype=torch.float16, seed=11).view(-1)[1:].view(80, 32)  # 2 bytes off
    assert shifted.data_ptr() % 16 != 0
    assert rel_error(_launch(shifted, w.t()), matmul_reference(shifted, w.t())) < 1e-3
    assert race_env["tma_launches"] == launches  # the pointer kernel ran it


def test_slower_tma_kernel_leaves_the_pointer_kernel(race_env: dict[str, Any]) -> None:
    race_env["times"] = [1.0, 3.0]
    a, b = randn(80, 32, dtype=torch.bfloat16, seed=6), randn(32, 48, dtype=torch.bfloat16, seed=7)
    _launch(a, b)
    launches = race_env["tma_launches"]
    assert rel_error(_launch(a, b), matmul_reference(a, b)) < 8e-3
    assert race_env["tma_launches"] == launches and mm.tuned_config()["kernel"] == "pointer"


def test_a_disagreeing_or_failing_tma_kernel_is_never_used(
    race_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, w = randn(80, 32, dtype=torch.float16, seed=8), randn(48, 32, dtype=torch.float16, seed=9)
    ref = matmul_reference(a, w.t())
    monkeypatch.setattr(mt, "launch_into", lambda a, b, c: c.copy_((a.float() @ b.float() * 1.05).half()))
    assert rel_error(_launch(a, w.t()), ref) < 1e-3  # C is the pointer kernel's, untouched
    kernel, why = mm.tuned_config()["kernel"], mm.tuned_config()["kernel_choice"]
    assert kernel == "pointer" and "differs from the pointer kernel's" in why and race_env["times"] == [2.0, 1.0]

    def broken(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
        raise RuntimeError("out of resource: shared memory")

    monkeypatch.setattr(mt, "launch_into", broken)
    a2 = randn(200, 32, dtype=torch.float16, seed=10)  # another M bucket: another key, raced anew
    assert rel_error(_launch(a2, w.t()), matmul_reference(a2, w.t())) < 1e-3
    assert mm.tuned_config()["kernel_choice"] == "TMA kernel failed: RuntimeError: out of resource: shared memory"


def test_only_aligned_prefill_sized_half_precision_gpu_launches_race(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mt, "tma_unsupported_reason", lambda a, b: None)
    gpu = SimpleNamespace(type="cuda")

    def args(m: int, dtype: torch.dtype = torch.bfloat16, out: torch.dtype = torch.bfloat16) -> tuple[Any, ...]:
        a = SimpleNamespace(device=gpu, dtype=dtype)
        return (a, a, SimpleNamespace(dtype=out), None, None, None, m)

    meta = {"FP8": False, "UPCAST": False}
    assert mm._tma_candidate(args(65), meta)
    assert not mm._tma_candidate(args(64), meta)  # decode rows: the skinny tiles
    assert not mm._tma_candidate(args(4096, out=torch.float32), meta)
    assert not mm._tma_candidate(args(4096), {**meta, "FP8": True})
    cpu = (SimpleNamespace(device=SimpleNamespace(type="cpu"), dtype=torch.bfloat16),) * 2
    assert not mm._tma_candidate((*cpu, *args(4096)[2:]), meta)
    monkeypatch.setattr(mt, "tma_unsupported_reason", lambda a, b: "unaligned")
    assert not mm._tma_candidate(args(4096), meta)


# --- GPU tier (AIBENCH_TEST_GPU=1 on a Hopper GPU) -------------------------------------------------


def _hopper() -> bool:
    return torch.cuda.is_available() and not torch.version.hip and torch.cuda.get_device_capability()[0] >= 9


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("m", "n", "k"), [(512, 768, 1024), (1000, 1024, 1104), (4096, 4096, 4096)])
@pytest.mark.parametrize("transpose_b", [True, False])
def test_gpu_tma_kernel_and_the_race(dtype: torch.dtype, m: int, n: int, k: int, transpose_b: bool) -> None:
    if not _hopper():
        pytest.skip("TMA needs an NVIDIA GPU of compute capability >= 9.0")
    g = torch.Generator(device="cuda").manual_seed(m + n + k)
    a = torch.randn(m, k, device="cuda", generator=g).to(dtype)
    w = (torch.randn(n, k, device="cuda", generator=g) * k**-0.5).to(dtype)
    b = w.t() if transpose_b else w.t().contiguous()
    ref = matmul_reference(a, b, dtype=torch.float32)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    assert rel_error(mt.matmul_tma(a, b), ref.double()) < tol
    out = mm.matmul(a, b)  # the first launch of this shape races the two kernels
    assert rel_error(out, ref.double()) < tol
    config = mm.tuned_config()
    assert config is not None and config["kernel"] in ("tma", "pointer") and "do_bench medians" in config["kernel_choice"]
    assert rel_error(mm.matmul(a, b), ref.double()) < tol  # the cached choice
