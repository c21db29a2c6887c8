"""llm.prefill / llm.decode: exact FLOP and byte formulas, setup + check on CPU, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from aibench.core.errors import Unsupported, UsageError
from aibench.models import ModelArgs, param_count
from aibench.models.memory import matmul_params
from aibench.workloads import llm, registry

CPU = torch.device("cpu")
TINY = ModelArgs.from_name("tiny")  # 2 layers, 4 heads of 16, 2 kv heads, V 512, D 64, I 160
TINY_MOE = ModelArgs.from_name("tiny-moe")  # 4 experts, top 2, I 96


def _has_triton_kernels() -> bool:
    try:
        from aibench.kernels import attention, matmul  # noqa: F401
    except ImportError:
        return False
    return True


def _setup(name: str, backend: str, **overrides: Any) -> tuple[registry.Case, dict[str, Any]]:
    wl = registry.get(name)
    params = wl.resolve_params(overrides, preview=True)
    return wl.get_backend(backend).setup(params, CPU), params


# --- Formulas ---------------------------------------------------------------------------------------------


def test_attention_flops_count_attended_pairs() -> None:
    per_pair = 4 * 2 * 4 * 16  # 4 FLOPs x layers x q heads x head dim
    assert llm.attention_flops(TINY, 1, 1, 0) == per_pair  # first token sees itself
    assert llm.attention_flops(TINY, 3, 4, 0) == 3 * per_pair * (1 + 2 + 3 + 4)
    assert llm.attention_flops(TINY, 2, 2, 10) == 2 * per_pair * (11 + 12)


def test_prefill_and_decode_flops_exact() -> None:
    p = matmul_params(TINY)
    assert p == 118_784
    assert llm.prefill_flops(TINY, 2, 16) == 2 * p * 32 + 2 * 512 * 136
    # decode: steps at positions 16, 17, 18 see 17, 18, 19 keys
    assert llm.decode_flops(TINY, 2, 16, 3) == 2 * p * 2 * 3 + 2 * 512 * (17 + 18 + 19)
    steps = sum(2 * p * 2 + llm.attention_flops(TINY, 2, 1, 16 + i) for i in range(3))
    assert llm.decode_flops(TINY, 2, 16, 3) == steps
    moe = matmul_params(TINY_MOE)
    assert llm.prefill_flops(TINY_MOE, 1, 8) == 2 * moe * 8 + 512 * 36


def test_decode_bytes_exact() -> None:
    weights = (param_count(TINY) - 512 * 64) * 4  # everything but the (untied) embedding table
    assert llm.decode_weight_bytes(TINY, 1, torch.float32) == weights
    kv_per_position = 2 * 2 * 2 * 16 * 2  # K+V x layers x kv heads x head dim x bf16 bytes, per row
    assert llm.decode_bytes(TINY, 3, 10, 2, torch.bfloat16) == 2 * weights // 2 + 3 * kv_per_position * (11 + 12)
    tied = TINY.replace(tie_embeddings=True)
    assert llm.decode_weight_bytes(tied, 1, torch.float32) == param_count(tied) * 4
    # MoE: batch 1 touches top-2 of 4 experts per layer; batch >= 2 may touch all four
    expert = 3 * 64 * 96 * 4
    full = (param_count(TINY_MOE) - 512 * 64) * 4
    assert llm.decode_weight_bytes(TINY_MOE, 1, torch.float32) == full - 2 * 2 * expert
    assert llm.decode_weight_bytes(TINY_MOE, 2, torch.float32) == full


def test_check_positions_spread_and_include_ends() -> None:
    assert llm.check_positions(5) == [0, 1, 2, 3, 4]
    pos = llm.check_positions(1000)
    assert len(pos) == 32 and pos[0] == 0 and pos[-1] == 999
    assert llm.check_positions(1) == [0]


# --- Registration and cases ------------------------------------------------------------------------------


def test_workloads_registered_with_preview_defaults() -> None:
    for name in ("llm.prefill", "llm.decode"):
        wl = registry.get(name)
        assert [b.name for b in wl.ordered_backends()] == ["torch", "triton"]
        preview = wl.resolve_params({}, preview=True)
        assert preview["model"] == "tiny" and preview["dtype"] == "float32" and preview["weights"] == ""
        assert wl.resolve_params({})["model"] == "llama-3.1-8b"
    with pytest.raises(UsageError):
        registry.get("llm.prefill").resolve_params({"model": "gpt-2"})


@pytest.mark.parametrize("model", ["tiny", "tiny-moe"])
def test_prefill_case_checks_and_counts(model: str) -> None:
    case, p = _setup("llm.prefill", "torch", model=model, dtype="bfloat16")
    check = case.check()
    assert check.passed, check.detail
    assert case.fn().shape == (p["batch"], p["prompt_len"], 512)
    args = ModelArgs.from_name(model)
    assert case.flops == llm.prefill_flops(args, p["batch"], p["prompt_len"])
    assert case.work == {"tokens": p["batch"] * p["prompt_len"]}
    assert case.details["weights"] == "random(seed=0)" and case.details["model"] == model
    metrics = case.metrics(0.5)
    assert metrics == {"tokens_per_s": p["batch"] * p["prompt_len"] / 0.5}  # CPU: no peak, no MFU
    assert case.unavailable["mfu_pct"].startswith("no datasheet peak known for")  # and the record says why
    assert case.cuda_graph_ok is (model == "tiny")


@pytest.mark.parametrize("model", ["tiny", "tiny-moe"])
def test_decode_case_checks_and_counts(model: str) -> None:
    case, p = _setup("llm.decode", "torch", model=model, batch=3)
    check = case.check()
    assert check.passed and check.rel_error is not None and check.rel_error < 1e-5, check.detail
    tok = case.fn()
    assert tok.shape == (3, 1) and tok.dtype == torch.long
    args = ModelArgs.from_name(model)
    B, C, N = 3, p["context_len"], p["new_tokens"]
    assert case.flops == llm.decode_flops(args, B, C, N)
    assert case.bytes == llm.decode_bytes(args, B, C, N, torch.float32)
    m = case.metrics(0.2)
    assert m["tokens_per_s"] == pytest.approx(B * N / 0.2)
    assert m["tpot_s"] == pytest.approx(0.2 / N)
    assert m["effective_bandwidth_gbps"] == pytest.approx(case.bytes / 0.2 / 1e9)
    assert "mbu_pct" not in m  # no bandwidth peak for a CPU: left out, never 0
    assert case.unavailable["mbu_pct"].startswith("no datasheet peak known for")
    assert case.check().passed  # the timed calls did not disturb the prefilled context


def test_decode_check_catches_a_corrupted_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    original = llm.prefill_cache

    def broken_prefill(model: Any, prompt: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        original(model, prompt, *args, **kwargs)
        model.layers[0].attention.kv_cache.k_cache[:, :, 3].zero_()  # one lost position

    monkeypatch.setattr(llm, "prefill_cache", broken_prefill)
    case, _ = _setup("llm.decode", "torch")
    check = case.check()
    assert not check.passed and "exceeds tolerance" in (check.detail or "")


def tiny_llama_checkpoint(folder: Path, **config: Any) -> Path:
    """A one-layer Llama checkpoint in Hugging Face's layout (config.json + safetensors), random
    weights; `config` adds or replaces config.json keys (max_position_embeddings, ...)."""
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 40,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, **config}
    g = torch.Generator().manual_seed(0)
    shapes = {"model.embed_tokens.weight": (40, 32), "model.norm.weight": (32,),
              "model.layers.0.self_attn.q_proj.weight": (32, 32), "model.layers.0.self_attn.k_proj.weight": (16, 32),
              "model.layers.0.self_attn.v_proj.weight": (16, 32), "model.layers.0.self_attn.o_proj.weight": (32, 32),
              "model.layers.0.input_layernorm.weight": (32,), "model.layers.0.post_attention_layernorm.weight": (32,),
              "model.layers.0.mlp.gate_proj.weight": (64, 32), "model.layers.0.mlp.up_proj.weight": (64, 32),
              "model.layers.0.mlp.down_proj.weight": (32, 64)}
    save_file({k: torch.randn(*s, generator=g) for k, s in shapes.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_decode_with_checkpoint_weights(tmp_path: Path) -> None:
    tiny_llama_checkpoint(tmp_path)
    case, _ = _setup("llm.decode", "torch", weights=str(tmp_path))
    assert case.check().passed
    assert case.details["weights"] == str(tmp_path) and case.details["model"] == tmp_path.name
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _setup("llm.prefill", "torch", weights=str(tmp_path / "missing"))


def test_refusals_and_bad_params(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unsupported, match="compile=true needs a CUDA GPU"):
        _setup("llm.prefill", "torch", compile=True)
    with pytest.raises(Unsupported, match="compile=true decodes with the torch backend only"):
        _setup("llm.decode", "triton", compile=True)  # refused before any model is built
    monkeypatch.setattr("aibench.models.memory.free_bytes", lambda device: 2**30)
    with pytest.raises(Unsupported, match=r"llama-3\.1-405b .* needs ~.* GiB .* has 1\.0 GiB free"):
        _setup("llm.decode", "torch", model="llama-3.1-405b")
    with pytest.raises(UsageError, match="batch must be >= 1"):
        _setup("llm.prefill", "torch", batch=0)


@pytest.mark.skipif(not _has_triton_kernels(), reason="aibench.kernels.attention/matmul not importable yet")
@pytest.mark.parametrize("name", ["llm.prefill", "llm.decode"])
def test_triton_backend_checks_against_torch(name: str) -> None:
    ok, why = registry.get(name).get_backend("triton").available(CPU)
    if not ok:
        pytest.skip(why or "triton unavailable")
    case, _ = _setup(name, "triton")
    check = case.check()
    assert check.passed and check.rel_error is not None and check.rel_error < 1e-5, check.detail
    assert case.details["attn_backend"] == "triton"
    assert case.cuda_graph_ok is (name == "llm.prefill")  # cached triton attention syncs for lengths


def test_sequences_beyond_max_position_embeddings_are_refused(tmp_path: Path) -> None:
    # As llm.serve and vLLM's max_model_len: positions past the model's table are not the model.
    limit = TINY.block_size
    with pytest.raises(UsageError, match=rf"{limit + 1} positions .*tiny.* {limit}"):
        _setup("llm.prefill", "torch", prompt_len=limit + 1)
    with pytest.raises(UsageError, match=rf"{limit + 1} positions .*tiny.* {limit}"):
        _setup("llm.decode", "torch", context_len=limit - 1, new_tokens=2)
    case, _ = _setup("llm.decode", "torch", context_len=limit - 2, new_tokens=2)  # exactly the limit
    assert case.details["context_len"] == limit - 2
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 40,
           "max_position_embeddings": 8, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match=r"16 positions .* 8 \(max_position_embeddings\)"):
        _setup("llm.prefill", "torch", weights=str(tmp_path))  # refused from config.json, before any weight
