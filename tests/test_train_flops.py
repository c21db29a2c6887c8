"""Training FLOP formulas against values computed by hand from the published config.json files.

Llama 3.1 8B: hidden 4096, 32 layers, 32 heads (head_dim 128), 8 KV heads, MLP 14336, vocab 128256.
Llama 3.1 70B: hidden 8192, 80 layers, 64 heads (head_dim 128), 8 KV heads, MLP 28672, vocab 128256.
"""

from __future__ import annotations

import pytest

from aibench.models.config import ModelArgs
from aibench.models.memory import param_count
from aibench.models.train_flops import (
    TrainFlops,
    attention_flops_per_token,
    checkpointed_layers,
    hardware_flops_per_token,
    model_flops_per_token,
    non_embedding_params,
    utilization_pct,
)

L8 = ModelArgs.from_name("llama-3.1-8b")
L70 = ModelArgs.from_name("llama-3.1-70b")

# 8B, one block: wqkv 4096 x (32 + 2*8) * 128 = 25,165,824; wo 4096 * 4096 = 16,777,216;
# MLP 3 * 4096 * 14336 = 176,160,768; two norms 8,192 -> 218,112,000. 32 blocks = 6,979,584,000;
# lm_head 128256 * 4096 = 525,336,576; final norm 4,096.
N8 = 6_979_584_000 + 525_336_576 + 4_096  # = 7,504,924,672
# 70B, one block: wqkv 8192 * 10240 = 83,886,080; wo 8192 * 8192 = 67,108,864;
# MLP 3 * 8192 * 28672 = 704,643,072; norms 16,384 -> 855,654,400. 80 blocks = 68,452,352,000;
# lm_head 128256 * 8192 = 1,050,673,152; final norm 8,192.
N70 = 68_452_352_000 + 1_050_673_152 + 8_192  # = 69,503,033,344


def test_parameter_counts_match_the_published_models() -> None:
    assert param_count(L8) == 8_030_261_248  # Hugging Face's count for Llama-3.1-8B
    assert non_embedding_params(L8) == N8 == param_count(L8) - 128_256 * 4096
    assert non_embedding_params(L70) == N70 == param_count(L70) - 128_256 * 8192


def test_llama_8b_flops_per_token_at_8192() -> None:
    attn = 12 * 32 * 32 * 128 * 8192  # 12 * L * H * Q * T = 12,884,901,888
    assert attention_flops_per_token(L8, 8192) == attn == 12_884_901_888
    assert model_flops_per_token(L8, 8192) == 6 * N8 + attn == 57_914_449_920
    assert model_flops_per_token(L8, 8192, causal=True) == 6 * N8 + attn // 2 == 51_471_998_976


def test_llama_70b_flops_per_token_at_8192() -> None:
    attn = 12 * 80 * 64 * 128 * 8192  # = 64,424,509,440
    assert model_flops_per_token(L70, 8192) == 6 * N70 + attn == 481_442_709_504
    assert model_flops_per_token(L70, 8192, causal=True) == 6 * N70 + attn // 2 == 449_230_454_784


def test_hfu_adds_one_forward_per_checkpointed_layer() -> None:
    # per layer forward: 2 * 218,112,000 + 4 * 32 * 128 * 8192 = 570,441,728
    layer_fwd = 2 * 218_112_000 + 4 * 32 * 128 * 8192
    assert hardware_flops_per_token(L8, 8192, ac_every=0) == 57_914_449_920
    assert hardware_flops_per_token(L8, 8192, ac_every=1) == 57_914_449_920 + 32 * layer_fwd == 76_168_585_216
    assert hardware_flops_per_token(L8, 8192, ac_every=2) == 57_914_449_920 + 16 * layer_fwd
    causal_fwd = 2 * 218_112_000 + 2 * 32 * 128 * 8192
    assert hardware_flops_per_token(L8, 8192, 1, causal=True) == 51_471_998_976 + 32 * causal_fwd


def test_checkpointed_layers() -> None:
    assert [checkpointed_layers(32, k) for k in (0, 1, 2, 3, 32, 40)] == [0, 32, 16, 11, 1, 1]
    with pytest.raises(ValueError):
        checkpointed_layers(32, -1)


def test_mfu_reproduces_torchtitans_published_range() -> None:
    # TorchTitan (benchmarks/llama3_h100_202412_torchtitan.md): Llama 3.1 8B on 8 H100, FSDP,
    # 5,762 tokens/s/GPU eager and 6,667 compiled, "33% to 39% MFU" against the SXM peak 989 TFLOP/s.
    per_token = model_flops_per_token(L8, 8192)
    assert utilization_pct(per_token, 5762, 989.4) == pytest.approx(33.73, abs=0.01)
    assert utilization_pct(per_token, 6667, 989.4) == pytest.approx(39.03, abs=0.01)
    assert utilization_pct(1e12, 1.0, 100.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        utilization_pct(1.0, 1.0, 0.0)


def test_moe_counts_top_k_of_the_experts() -> None:
    mix = ModelArgs.from_name("mixtral-8x7b")
    assert param_count(mix) == 46_702_792_704  # Mixtral 8x7B's published 46.7B
    # one block: attention 25,165,824 + 16,777,216; router 4096 * 8 = 32,768; expert 3 * 4096 * 14336
    # = 176,160,768 (2 of 8 active); norms 8,192. lm_head 32000 * 4096 = 131,072,000.
    block = 25_165_824 + 16_777_216 + 32_768 + 2 * 176_160_768 + 8_192
    assert non_embedding_params(mix) == 32 * block + 131_072_000 + 4_096 == 12_748_853_248
    assert non_embedding_params(mix, active=False) == 32 * (block + 6 * 176_160_768) + 131_072_000 + 4_096


def test_record_fields_carry_the_formula() -> None:
    f = TrainFlops.of(L8, 8192, 1).as_dict()
    assert f["model_flops_per_token"] == 57_914_449_920
    assert f["hardware_flops_per_token"] == 76_168_585_216
    assert "6*N + 12*L*H*Q*T" in str(f["formula"]) and "causal" in str(f["formula"])
