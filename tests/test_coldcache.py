"""Operand rotation (aibench.workloads.coldcache): the copy count, the cycle, and its use by the
gemm and attention workloads, which must read a different copy on each call."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aibench.workloads import coldcache
from aibench.workloads.coldcache import MAX_COPIES, Rotation, copies_for_cold_l2, evicted, rotation
from aibench.workloads.registry import get, load_builtin

MB = 1 << 20


@pytest.mark.parametrize(
    ("nbytes", "l2", "free", "expected"),
    [
        (32 * MB, 50 * MB, None, 1 + 4),  # Llama-8B o weight on an H100: ceil(100 / 32) = 4 more copies
        (100 * MB, 50 * MB, None, 1),  # twice the L2 on its own: evicts itself
        (99 * MB, 50 * MB, None, 4),  # just under: 1 + ceil(100 / 99) = 3, up to a divisor of 20
        (16 * MB, 60 * MB, None, 10),  # H200, 1x4096 decode KV cache: 1 + ceil(120 / 16) = 9 -> 10
        (1 * MB, 60 * MB, None, MAX_COPIES),  # tiny operands: capped
        (32 * MB, 50 * MB, 400 * MB, 3),  # a quarter of 400 MB holds 3 copies of 32 MB
        (32 * MB, 50 * MB, 10 * MB, 1),  # not even one more fits: never fewer than the original
        (32 * MB, None, None, 1),  # CPU: no L2 to defeat
        (32 * MB, 0, None, 1),
    ],
)
def test_copies_for_cold_l2(nbytes: int, l2: int | None, free: int | None, expected: int) -> None:
    assert copies_for_cold_l2(nbytes, l2, free) == expected


def test_copies_rejects_empty_operands() -> None:
    with pytest.raises(ValueError, match="positive"):
        copies_for_cold_l2(0, 50 * MB)


def test_evicted_says_whether_every_call_is_cold() -> None:
    assert evicted(5, 32 * MB, 50 * MB)  # 4 * 32 = 128 >= 100
    assert not evicted(3, 32 * MB, 50 * MB)  # capped by memory: 64 < 100
    assert not evicted(MAX_COPIES, 1 * MB, 60 * MB)  # capped by count: 19 < 120
    assert evicted(1, 100 * MB, 50 * MB)
    assert evicted(1, 1 * MB, None) is None  # a CPU: nothing known, nothing claimed


def test_copies_keep_their_cycle_inside_a_graph_replay() -> None:
    """Every copy count a rotation picks when memory allows divides the calls of a graph replay,
    and `evicted` judges the shortest gap, the replay boundary included (9 copies in 20 calls:
    2 calls apart)."""
    for nbytes in range(1 * MB, 100 * MB, MB // 4):
        copies = copies_for_cold_l2(nbytes, 50 * MB)
        assert coldcache.GRAPH_CALLS % copies == 0
    assert coldcache.reuse_distance(9) == 2 and coldcache.reuse_distance(10) == 10
    assert coldcache.reuse_distance(3) == 2 and coldcache.reuse_distance(1) == 1
    assert not evicted(9, 16 * MB, 60 * MB)  # 8 * 16 >= 120, but only 16 MB between two uses
    assert evicted(10, 16 * MB, 60 * MB)


def test_rotation_hands_out_items_in_turn() -> None:
    rot = Rotation(["a", "b", "c"])
    assert len(rot) == 3
    assert [rot() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    with pytest.raises(ValueError, match="at least one"):
        Rotation([])


def test_rotation_on_cpu_uses_the_operands_themselves() -> None:
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    rot, details = rotation((a, b), torch.device("cpu"))
    assert len(rot) == 1 and rot()[0] is a
    assert details == {"operand_copies": 1, "operand_bytes": (12 + 20) * 4, "cache_bytes": None,
                       "cold_l2_every_call": None,  # unknown: never claimed
                       "cold_l2_unknown": "no cache size known for cpu: one copy, not claimed cold"}


def test_rotation_clones_keep_values_and_strides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coldcache.devices, "cache_bytes", lambda _d: 1000)
    a, w = torch.randn(2, 8), torch.randn(6, 8)
    b = w.t()  # a transposed weight view: its copies must stay transposed (same autotune key)
    rot, details = rotation((a, b), torch.device("cpu"))
    nbytes = (16 + 48) * 4
    need = 1 + -(-2000 // nbytes)
    assert details["operand_copies"] == len(rot) == min(c for c in range(need, 21) if 20 % c == 0)
    seen = set()
    for _ in range(len(rot)):
        ca, cb = rot()
        assert torch.equal(ca, a) and torch.equal(cb, b) and cb.stride() == b.stride()
        seen.add((ca.data_ptr(), cb.data_ptr()))
    assert len(seen) == len(rot)  # distinct memory for every copy


def _data_ptrs_seen(monkeypatch: pytest.MonkeyPatch, workload: str, params: dict[str, Any]) -> tuple[set, dict]:
    """Set up the torch backend of `workload` with a fake 1 MiB L2, call its fn a few times and
    return the first operand's data pointers seen by the op, and the case details."""
    monkeypatch.setattr(coldcache.devices, "cache_bytes", lambda _d: 1 << 20)
    load_builtin()
    wl = get(workload)
    seen: set[int] = set()
    real = torch.matmul if workload == "gemm" else torch.nn.functional.scaled_dot_product_attention

    def spy(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.add(x.data_ptr())
        return real(x, *args, **kwargs)

    target = (torch, "matmul") if workload == "gemm" else (torch.nn.functional, "scaled_dot_product_attention")
    monkeypatch.setattr(*target, spy)
    case = wl.get_backend("torch").setup(wl.resolve_params(params, preview=True), torch.device("cpu"))
    seen.clear()  # the warm-up call
    for _ in range(2 * case.details["operand_copies"]):
        case.fn()
    assert case.check().passed
    return seen, case.details


def test_gemm_reads_a_new_copy_on_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen, details = _data_ptrs_seen(monkeypatch, "gemm", {"m": 4, "n": 16, "k": 8, "dtype": "float32"})
    assert details["operand_copies"] > 1
    assert len(seen) == details["operand_copies"]


def test_attention_decode_reads_a_new_copy_on_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen, details = _data_ptrs_seen(monkeypatch, "attention.decode", {"context": 16, "dtype": "float32"})
    assert details["operand_copies"] > 1
    assert len(seen) == details["operand_copies"]
