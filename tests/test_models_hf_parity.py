"""Logits against Hugging Face transformers itself: tiny checkpoints that transformers builds and
writes with `save_pretrained` (its own config.json and safetensors names, sharded or not), loaded
by `aibench.models.from_pretrained`, must give the logits of transformers' own forward to fp32
rounding, for a whole prompt and token by token through the static KV cache.

test_models_loader.py checks the same against a hand-written fp64 transcription of HF's forward
(both config.json styles, every error path); this file checks the transcription's premise against
the installed transformers release, so a change in how transformers writes or computes a model
shows up here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from aibench.models import from_pretrained

transformers = pytest.importorskip("transformers")

V, D, LAYERS, HEADS, KV_HEADS, INTER = 97, 64, 2, 4, 2, 96
COMMON: dict[str, Any] = dict(vocab_size=V, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                              num_key_value_heads=KV_HEADS, intermediate_size=INTER, max_position_embeddings=256,
                              rms_norm_eps=1e-5)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          # 16 original positions, so that a 40-token prompt reaches the scaled wavelengths
          "original_max_position_embeddings": 16, "rope_theta": 500000.0}

CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # id: (transformers class, config fields, shard size for save_pretrained)
    "llama3": ("Llama", {"rope_parameters": LLAMA3}, "50GB"),
    "llama3-tied-sharded": ("Llama", {"rope_parameters": LLAMA3, "tie_word_embeddings": True}, "40KB"),
    "mistral": ("Mistral", {"sliding_window": None}, "50GB"),
    "mistral-window": ("Mistral", {"sliding_window": 16}, "50GB"),  # prompts of 40 reach past it
    # head_dim set apart from hidden_size / heads (as Mistral NeMo's 128 for 5120 / 32)
    "mistral-head-dim": ("Mistral", {"sliding_window": None, "head_dim": 32}, "50GB"),
    "qwen2-bias-tied": ("Qwen2", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6}, "50GB"),
    "qwen2-window": ("Qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 0}, "50GB"),
    "mixtral-sharded": ("Mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}, "60KB"),
}


def _hf_model(kind: str, fields: dict[str, Any], seed: int) -> Any:
    config = getattr(transformers, f"{kind}Config")(**{**COMMON, **fields})
    config._attn_implementation = "eager"  # the plain softmax(QK^T)V path, not a fused kernel
    torch.manual_seed(seed)
    model = getattr(transformers, f"{kind}ForCausalLM")(config).eval()
    # transformers initialises with std 0.02, unit norms and zero biases: logits near zero and
    # biases that test nothing. Redraw every tensor so each one moves the logits.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * noise)
            elif "embed_tokens" in name:
                p.copy_(noise)
            elif name.endswith("gate.weight"):  # Mixtral's router: clear top-k choices, no near-ties
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.1 * noise)
    return model


def _saved(tmp_path: Path, case: str) -> tuple[Any, Path]:
    kind, fields, shard = CASES[case]
    hf = _hf_model(kind, fields, seed=len(case))
    hf.save_pretrained(tmp_path / case, max_shard_size=shard)
    return hf, tmp_path / case


def _assert_fp32_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # fp32 rounding of two different (but equivalent) orders of the same sums over a 2-layer model
    # with logits of magnitude ~10: a few ulps of the largest logit, not a loose tolerance.
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(tmp_path: Path, case: str) -> None:
    hf, folder = _saved(tmp_path, case)
    if "sharded" in case:  # the index and several shard files, as the Hub serves large models
        assert (folder / "model.safetensors.index.json").is_file()
        assert len(list(folder.glob("model-*.safetensors"))) > 1
    model = from_pretrained(folder)
    tokens = torch.randint(0, V, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    assert ours.shape == (2, 40, V)
    assert float(theirs.abs().max()) > 1.0  # the redrawn weights give logits far from zero
    _assert_fp32_close(ours, theirs)


@pytest.mark.parametrize("case", ["llama3", "mistral-window", "mixtral-sharded"])
def test_cached_decode_matches_transformers(tmp_path: Path, case: str) -> None:
    """Prefill 30 tokens into the static cache, then decode 10 one at a time: each step's logits
    are transformers' logits for that position of the whole sequence."""
    hf, folder = _saved(tmp_path, case)
    model = from_pretrained(folder)
    B, prompt, steps = 2, 30, 10
    tokens = torch.randint(0, V, (B, prompt + steps), generator=torch.Generator().manual_seed(2))
    model.setup_cache(max_batch=B, max_seq=prompt + steps)
    with torch.no_grad():
        theirs = hf(tokens).logits  # [B, S, V]
        pos = torch.arange(prompt).expand(B, prompt)
        got = [model(tokens[:, :prompt], input_pos=pos)]
        for t in range(prompt, prompt + steps):
            got.append(model(tokens[:, t : t + 1], input_pos=torch.full((B, 1), t)))
    _assert_fp32_close(torch.cat(got, dim=1), theirs)


def test_mixed_full_and_sliding_layers_are_refused(tmp_path: Path) -> None:
    """Qwen2 with max_window_layers=1: layer 0 attends fully, layer 1 through a window. The model
    has one window for all layers, so loading says so instead of computing other logits."""
    hf = _hf_model("Qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}, seed=3)
    hf.save_pretrained(tmp_path / "mixed")
    with pytest.raises(ValueError, match=r"layers \[1\] use a sliding window and the others full attention"):
        from_pretrained(tmp_path / "mixed")
