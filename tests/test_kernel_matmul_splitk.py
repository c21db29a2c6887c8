"""Split-K in the Triton matmul: results, the reduce's fixed order, the pruning rule, the launch
paths (autotuner first launch, launch cache), and the autotuner's post_hook.

On a CPU the kernels run in Triton's interpreter (tests/conftest.py), so shapes stay small and
split configs are launched directly through `_launch_config`; the `gpu` tests compile them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from matmul_helpers import randn, rel_error

from aibench.kernels.matmul import matmul_reference
from aibench.kernels.splitk import splitk_reduce, splitk_workspace

mm = importlib.import_module("aibench.kernels.matmul")

pytestmark = pytest.mark.skipif(not mm.HAS_TRITON, reason="triton is not installed")

H200_SMS = 132
H100_SMEM = 232448  # bytes of shared memory one block may opt in to on an H100/H200


def tile(block_m: int, block_n: int, block_k: int, split: int, **options: int) -> dict[str, Any]:
    return {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_K": block_k,
        "GROUP_M": 2,
        "SPLIT_K": split,
        **options,
    }


def launch(
    a: torch.Tensor,
    b: torch.Tensor,
    config: dict[str, Any],
    out_dtype: torch.dtype | None = None,
    c: torch.Tensor | None = None,
    **scales: torch.Tensor,
) -> torch.Tensor:
    """C = a @ b through `_launch_config` with `config` (the one launch path for a given config)."""
    if c is None:
        c_dtype = out_dtype or (torch.bfloat16 if a.dtype in mm.FP8_DTYPES else a.dtype)
        c = torch.empty(a.shape[0], b.shape[1], dtype=c_dtype, device=a.device)
    upcast = a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16)
    args, meta = mm._launch_args(
        a, b, c, scales.get("a_scale"), scales.get("b_scale"), allow_tf32=False, upcast=upcast
    )
    mm._launch_config(args, meta, config)
    return c


# --- results (CPU interpreter) ----------------------------------------------------------------

# (M, N, K, BLOCK_K, SPLIT_K): K tiles = cdiv(K, BLOCK_K)
SPLIT_CASES = [
    (1, 40, 100, 16, 2),  # 7 K tiles, the last one partial (K % BLOCK_K != 0): ranges 4 + 3
    (37, 53, 100, 16, 3),  # 7 tiles in 3 ranges of 3, 3, 1
    (5, 33, 20, 16, 4),  # 2 tiles for 4 splits: the last two ranges are empty
    (1, 70, 64, 16, 2),  # EVEN_K: no masks
    (3, 40, 48, 16, 2),  # EVEN_K, 3 tiles in ranges of 2 + 1: the last range is clipped at K
    (37, 45, 29, 8, 8),  # 4 tiles, 8 splits; M over two tile rows, N over two tile columns
]


@pytest.mark.parametrize(("m", "n", "k", "block_k", "split"), SPLIT_CASES)
def test_fp32_split_matches_float64_reference(m: int, n: int, k: int, block_k: int, split: int) -> None:
    a, b = randn(m, k, seed=1), randn(k, n, seed=2)
    out = launch(a, b, tile(16, 32, block_k, split))
    assert out.dtype == torch.float32
    assert rel_error(out, matmul_reference(a, b)) < 2e-6


def test_fp32_split_with_transposed_weight() -> None:
    a, w = randn(37, 100, seed=3), randn(53, 100, seed=4)
    b = w.t()  # [K, N] view with strides (1, K), as nn.Linear computes x @ w.t()
    assert rel_error(launch(a, b, tile(16, 32, 16, 3)), a.double() @ w.double().t()) < 2e-6


@pytest.mark.parametrize(("m", "split"), [(1, 2), (37, 3)])
def test_fp16_split_rounds_once(m: int, split: int) -> None:
    a, b = randn(m, 100, dtype=torch.float16, seed=5), randn(100, 40, dtype=torch.float16, seed=6)
    out = launch(a, b, tile(16, 32, 16, split))
    assert out.dtype == torch.float16
    # fp32 partials, fp32 sum, one rounding to fp16 (unit roundoff 2^-11).
    assert rel_error(out, matmul_reference(a, b)) < 1e-3


def test_bf16_split_through_the_upcast_path() -> None:
    a = randn(37, 100, dtype=torch.bfloat16, seed=7)
    w = randn(53, 100, dtype=torch.bfloat16, seed=8)
    out = launch(a, w.t(), tile(16, 32, 16, 4))
    assert out.dtype == torch.bfloat16
    assert rel_error(out, matmul_reference(a, w.t())) < 8e-3  # one bf16 rounding (truncated)
    # With an fp32 output nothing is rounded: bf16 products are exact, the sums are fp32.
    out32 = launch(a, w.t(), tile(16, 32, 16, 4), out_dtype=torch.float32)
    assert out32.dtype == torch.float32
    assert rel_error(out32, matmul_reference(a, w.t())) < 1e-6


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e4m3fnuz], ids=["e4m3fn", "e4m3fnuz"])
def test_fp8_split_applies_the_scales_once(fp8: torch.dtype) -> None:
    # The interpreter's dot handles 8-bit floats (both e4m3 encodings: NVIDIA's and MI300's);
    # the partials are scaled, then summed.
    a = randn(5, 100, seed=9).to(fp8)
    b = randn(40, 100, seed=10).to(fp8).t()
    sa, sb = torch.tensor(0.5), torch.tensor(3.0)
    ref = matmul_reference(a, b, a_scale=sa, b_scale=sb)
    out = launch(a, b, tile(16, 32, 32, 3), a_scale=sa, b_scale=sb)
    assert out.dtype == torch.bfloat16
    assert rel_error(out, ref) < 8e-3


def test_split_into_a_strided_output() -> None:
    a, b = randn(9, 70, seed=11), randn(70, 40, seed=12)
    c = torch.empty(40, 9).t()  # column-major C: the reduce stores with C's strides
    launch(a, b, tile(16, 32, 16, 2), c=c)
    assert rel_error(c, matmul_reference(a, b)) < 2e-6


def test_split_int64_indexing_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real 2**31-element tensors do not fit a test: lower the threshold to take the same branch.
    monkeypatch.setattr(mm, "_INT32_LIMIT", 1)
    a, b = randn(19, 45, seed=13), randn(45, 23, seed=14)
    assert rel_error(launch(a, b, tile(16, 32, 8, 3)), matmul_reference(a, b)) < 2e-6


def test_unsplit_launches_pass_an_fp32_stand_in_workspace() -> None:
    # Same pointer dtype as a real workspace: no second compile of an unsplit config after tuning.
    a, b = randn(4, 8).half(), randn(8, 4).half()
    args, _ = mm._launch_args(a, b, torch.empty(4, 4).half(), None, None, allow_tf32=False, upcast=False)
    ws = args[mm._WS_ARG]
    assert ws.dtype == torch.float32 and ws is mm._no_workspace(torch.device("cpu"))
    assert args[mm._WS_ARG + 1 : mm._WS_ARG + 4] == (4, 4, 8)  # M, N, K follow it


# --- the reduce: fixed order, bit-identical ----------------------------------------------------


def test_split_results_are_bit_identical_across_launches() -> None:
    a, b = randn(37, 100, seed=15), randn(100, 53, seed=16)
    first = launch(a, b, tile(16, 32, 16, 4))
    second = launch(a, b, tile(16, 32, 16, 4))
    assert torch.equal(first, second)


def test_reduce_sums_the_slices_in_order() -> None:
    # In fp32, (1 + 1e8) - 1e8 == 0 but 1 + (1e8 - 1e8) == 1: only slice order 0, 1, 2 gives 0.
    ws = torch.tensor([1.0, 1e8, -1e8]).reshape(3, 1, 1)
    c = torch.full((1, 1), float("nan"))
    splitk_reduce(ws, c, 1, 1, 3)
    assert c.item() == 0.0


def test_reduce_reads_only_the_first_split_slices() -> None:
    # The autotuner's workspace is sized for its largest split; a smaller winner uses a prefix.
    ws = splitk_workspace(4, 3, 5, torch.device("cpu"))
    ws.copy_(torch.arange(4.0).reshape(4, 1, 1).expand(4, 3, 5))
    c = torch.empty(3, 5, dtype=torch.float16)
    splitk_reduce(ws, c, 3, 5, 2)
    assert torch.equal(c, torch.full((3, 5), 1.0, dtype=torch.float16))  # 0 + 1


# --- the pruning rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "n", "k", "block_m", "block_n", "block_k", "split", "sms", "ok"),
    [
        # Llama-3.1-8B o (N = K = 4096) at M = 1, bf16 (BLOCK_K 128 = 32 K tiles), 132 SMs
        (1, 4096, 4096, 16, 32, 128, 2, 132, True),  # 128 tiles -> 256 programs
        (1, 4096, 4096, 16, 32, 128, 4, 132, True),  # 512 <= 4 * 132
        (1, 4096, 4096, 16, 32, 128, 8, 132, False),  # 1024 programs: over four waves
        (1, 4096, 4096, 16, 64, 128, 8, 132, True),  # 64 tiles -> 512
        (1, 4096, 4096, 16, 128, 128, 8, 132, True),  # 32 tiles -> 256
        # 8B gate_up (N = 28672): 896 tiles of 32 columns already fill the GPU
        (1, 28672, 4096, 16, 32, 128, 2, 132, False),
        (1, 28672, 4096, 16, 128, 128, 2, 132, True),  # 224 tiles < 264
        (1, 28672, 4096, 16, 128, 128, 4, 132, False),  # 896 > 528
        # two waves of unsplit tiles: no split
        (1, 264 * 32, 4096, 16, 32, 128, 2, 132, False),
        (1, 263 * 32, 4096, 16, 32, 128, 2, 132, True),
        # M: decode sizes only
        (64, 4096, 4096, 64, 64, 128, 2, 132, True),
        (65, 4096, 4096, 64, 64, 128, 2, 132, False),
        # every split walks >= 2 K tiles
        (1, 4096, 512, 16, 128, 128, 2, 132, True),  # 4 tiles
        (1, 4096, 512, 16, 128, 128, 4, 132, False),
        (1, 4096, 1024, 16, 128, 128, 4, 132, True),  # 8 tiles
        (1, 4096, 1025, 16, 128, 128, 8, 132, False),  # 9 tiles // 2 = 4
        # unknown SM count: no split; unsplit configs are always fine
        (1, 4096, 4096, 16, 64, 128, 2, None, False),
        (100000, 1, 1, 16, 64, 128, 1, None, True),
    ],
)
def test_split_ok(
    m: int, n: int, k: int, block_m: int, block_n: int, block_k: int, split: int, sms: int | None, ok: bool
) -> None:
    assert mm._split_ok(m, n, k, block_m, block_n, block_k, split, sms) is ok


def kept_tiles(
    monkeypatch: pytest.MonkeyPatch,
    m: int,
    n: int,
    k: int,
    sms: int | None,
    dtype: torch.dtype = torch.bfloat16,
) -> set[tuple[int, int, int, int, int]]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_stages, SPLIT_K) of the real configs `_keep` keeps."""
    monkeypatch.setattr(mm, "_num_sms", lambda _index: sms)
    monkeypatch.setattr(mm, "_max_shared_memory", lambda _index: H100_SMEM)
    a = torch.empty(1, 1, dtype=dtype)
    kept = mm._keep(mm._configs(a.element_size()), {"M": m, "N": n, "K": k, "a_ptr": a})
    return {(*mm._tile(c)[:3], c.num_stages, mm._tile(c)[3]) for c in kept}


def test_keep_offers_splits_for_8b_o_at_m1(monkeypatch: pytest.MonkeyPatch) -> None:
    unsplit = {(16, bn, bk, stages, 1) for bn in (32, 64, 128) for bk, stages in ((128, 4), (256, 3))}
    split = {(16, bn, 128, 4, s) for bn, s in ((32, 2), (32, 4), (64, 2), (64, 4), (64, 8))}
    split |= {(16, 128, 128, 4, s) for s in (2, 4, 8)}
    assert kept_tiles(monkeypatch, 1, 4096, 4096, H200_SMS) == unsplit | split
    # down (K = 14336): more K tiles, the same grid, the same splits
    assert kept_tiles(monkeypatch, 1, 4096, 14336, H200_SMS) == unsplit | split
    # M = 64 (BLOCK_M 64): one tile row as at M = 1, so the same splits
    at_64 = kept_tiles(monkeypatch, 64, 4096, 4096, H200_SMS)
    assert {t[1:] for t in at_64 if t[4] > 1} == {t[1:] for t in split}
    assert {t[0] for t in at_64} == {64}


def test_keep_splits_8b_gate_up_only_with_wide_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = kept_tiles(monkeypatch, 1, 28672, 4096, H200_SMS)
    assert {t for t in kept if t[4] > 1} == {(16, 128, 128, 4, 2)}


@pytest.mark.parametrize(("m", "sms"), [(65, H200_SMS), (4096, H200_SMS), (1, None)])
def test_keep_offers_no_split(monkeypatch: pytest.MonkeyPatch, m: int, sms: int | None) -> None:
    kept = kept_tiles(monkeypatch, m, 4096, 4096, sms)
    assert kept and all(t[4] == 1 for t in kept)


def test_keep_never_brings_back_a_disallowed_split(monkeypatch: pytest.MonkeyPatch) -> None:
    # Configs that match no M rule fall back to "all of them": never to the split ones dropped.
    import triton

    configs = [
        triton.Config(tile(16, 32, 16, 1)),
        triton.Config(tile(16, 32, 16, 4)),
    ]
    monkeypatch.setattr(mm, "_num_sms", lambda _index: None)
    kept = mm._keep(configs, {"M": 5, "N": 40, "K": 100, "a_ptr": torch.empty(1, 1)})
    assert [mm._tile(c)[3] for c in kept] == [1]


# --- launch paths: autotuner first launch, launch cache, post_hook --------------------------------


class SplitFakeTuner:
    """Stands in for triton's autotuner on the CPU: 'tunes' to one (split) config and launches it
    as the real tuner's final launch does, without the post_hook (so without the reduce)."""

    def __init__(self, config: dict[str, Any]) -> None:
        import triton

        self.best_config = triton.Config(config, num_warps=4, num_stages=4)
        self.configs = [self.best_config]
        self.calls: list[tuple[tuple[int, int], torch.Tensor]] = []

    def __getitem__(self, grid: Callable[[dict[str, Any]], tuple[int, int]]) -> Callable[..., None]:
        def run(*args: Any, **meta: Any) -> None:
            kwargs = self.best_config.all_kwargs()
            self.calls.append((grid(kwargs), args[mm._WS_ARG]))
            mm._kernel[grid(kwargs)](*args, **kwargs, **meta)

        return run


def test_tuned_split_launch_reduces_then_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mm, "_LAUNCH_CACHE", {})
    monkeypatch.setattr(mm, "_num_sms", lambda _index: H200_SMS)
    tuner = SplitFakeTuner(tile(16, 32, 16, 3))
    m, n, k = 5, 40, 100  # 2 tiles, 7 K tiles: a split of 3 is allowed
    for seed in (0, 1):
        a, b = randn(m, k, seed=seed), randn(k, n, seed=seed + 10)
        c = torch.full((m, n), float("nan"))
        args, meta = mm._launch_args(a, b, c, None, None, allow_tf32=False, upcast=False)
        mm._launch_tuned(tuner, args, meta)
        assert rel_error(c, matmul_reference(a, b)) < 2e-6  # the reduce ran after the first launch too
        config = mm.tuned_config()
        assert config is not None and config["SPLIT_K"] == 3 and config["EVEN_K"] is False
    assert len(tuner.calls) == 1  # the second launch came from the cache
    grid, ws = tuner.calls[0]
    assert grid == (2, 3)
    assert ws.dtype == torch.float32 and ws.shape == (3, m, n)  # sized for the tuner's largest split
    assert len(mm._LAUNCH_CACHE) == 1


def test_real_autotuner_times_kernel_and_reduce_together(monkeypatch: pytest.MonkeyPatch) -> None:
    # triton's own Autotuner, with the matmul's post_hook and pruning, and a do_bench stand-in
    # (the real one needs a GPU) that checks C after each timed call.
    import triton

    monkeypatch.setattr(mm, "_LAUNCH_CACHE", {})
    monkeypatch.setattr(mm, "_num_sms", lambda _index: H200_SMS)
    m, n, k = 5, 40, 300  # fp32, BLOCK_K 64: 5 K tiles, so SPLIT_K 4 is pruned (< 2 tiles each)
    a, b = randn(m, k, seed=20), randn(k, n, seed=21)
    ref = matmul_reference(a, b)
    c = torch.full((m, n), float("nan"))
    timed: list[bool] = []

    def do_bench(kernel_call: Callable[[], None], quantiles: Any = None) -> list[float]:
        c.fill_(float("nan"))
        kernel_call()
        timed.append(rel_error(c, ref) < 2e-6)  # complete C: the reduce ran inside the timed call
        return [10.0 - len(timed)] * 3  # each config "faster" than the last: the last one wins

    tuner = triton.autotune(
        configs=[triton.Config(tile(16, 32, 64, split), num_stages=4) for split in (1, 2, 4)],
        key=["M_BUCKET", "N", "K"],
        prune_configs_by={"early_config_prune": mm._keep},
        post_hook=mm._reduce_after_bench,
        do_bench=do_bench,
    )(mm._kernel)
    args, meta = mm._launch_args(a, b, c, None, None, allow_tf32=False, upcast=False)
    mm._launch_tuned(tuner, args, meta)
    assert timed == [True, True]  # SPLIT_K 1 and 2 timed, each complete
    assert tuner.best_config.kwargs["SPLIT_K"] == 2
    # The tuner's final launch wrote only partials (no post_hook): _launch_tuned reduced them.
    assert rel_error(c, ref) < 2e-6
    c.fill_(float("nan"))
    mm._launch_tuned(tuner, args, meta)  # cached: _launch_config with SPLIT_K 2
    assert rel_error(c, ref) < 2e-6 and len(timed) == 2


def test_post_hook_reduces_only_split_launches_without_error() -> None:
    ws = torch.ones(2, 3, 4)
    c = torch.zeros(3, 4)
    nargs = {"ws_ptr": ws, "c_ptr": c, "M": 3, "N": 4, "SPLIT_K": 2}
    mm._reduce_after_bench(nargs, exception=RuntimeError("launch failed"))
    assert torch.equal(c, torch.zeros(3, 4))
    mm._reduce_after_bench({**nargs, "SPLIT_K": 1}, exception=None)
    assert torch.equal(c, torch.zeros(3, 4))
    mm._reduce_after_bench(nargs, exception=None)
    assert torch.equal(c, torch.full((3, 4), 2.0))


def test_tuners_carry_the_post_hook() -> None:
    for tuner in mm._tuned.values():
        assert tuner.post_hook is mm._reduce_after_bench
        assert all("SPLIT_K" in config.kwargs for config in tuner.configs)


# --- real GPU (compiled kernels) ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("m", "n", "k", "split"), [(1, 4096, 4096, 4), (33, 1000, 777, 2), (64, 4096, 14336, 8)]
)
def test_gpu_split_matches_reference_and_repeats(
    m: int, n: int, k: int, split: int, dtype: torch.dtype
) -> None:
    a = randn(m, k, dtype=dtype, device="cuda")
    b = (randn(n, k, dtype=dtype, device="cuda") * k**-0.5).t()
    config = tile(16 if m <= 16 else 64, 64, 128, split, num_warps=4, num_stages=4)
    out = launch(a, b, config)
    assert rel_error(out, matmul_reference(a, b, dtype=torch.float32)) < (
        1e-2 if dtype == torch.bfloat16 else 2e-3
    )
    assert torch.equal(out, launch(a, b, config))  # no atomics: bit-identical


@pytest.mark.gpu
def test_gpu_split_fp8() -> None:
    fp8 = mm.native_fp8_dtype(torch.device("cuda"))  # e4m3fnuz on an MI300
    if fp8 is None:
        pytest.skip("this GPU has no fp8")
    a = randn(1, 4096, device="cuda").to(fp8)
    b = randn(4096, 4096, device="cuda").to(fp8).t()
    sa, sb = torch.tensor(0.25, device="cuda"), torch.tensor(0.5, device="cuda")
    out = launch(a, b, tile(16, 64, 256, 4, num_warps=4, num_stages=4), a_scale=sa, b_scale=sb)
    ref = matmul_reference(a, b, a_scale=sa, b_scale=sb, dtype=torch.float32)
    assert rel_error(out, ref) < 1e-2


@pytest.mark.gpu
def test_gpu_cached_split_launch_in_a_cuda_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gemm workload captures matmul calls in CUDA graphs: the cached split path (workspace
    # allocation, kernel, reduce) must capture and replay.
    monkeypatch.setattr(mm, "_LAUNCH_CACHE", {})
    a = randn(1, 4096, dtype=torch.bfloat16, device="cuda")
    b = (randn(4096, 4096, dtype=torch.bfloat16, device="cuda") * 4096**-0.5).t()
    c = torch.empty(1, 4096, dtype=torch.bfloat16, device="cuda")
    args, meta = mm._launch_args(a, b, c, None, None, allow_tf32=False, upcast=False)
    mm._LAUNCH_CACHE[mm._launch_key(args, meta)] = {
        **tile(16, 64, 128, 4, num_warps=4, num_stages=4),
        "EVEN_K": True,
    }
    mm._launch_tuned(mm._tuned[2], args, meta)  # cached path, outside the graph: compiles
    expected = c.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        mm._launch_tuned(mm._tuned[2], args, meta)
    c.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(c, expected)
