"""Loading Hugging Face checkpoints: both config.json styles, single and sharded safetensors,
tied and untied heads, Qwen2 biases, Mixtral experts; logits against an independent fp64
implementation of HF's Llama/Mixtral forward; every error path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from aibench.models import from_pretrained
from aibench.models.llama import Transformer
from aibench.models.loader import args_from_hf_config

V, D, LAYERS, HEADS, KV_HEADS, INTER = 96, 32, 2, 4, 2, 48
HD = D // HEADS


def _config(style: str = "hub", arch: str = "LlamaForCausalLM", **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": [arch], "hidden_size": D, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "intermediate_size": INTER, "vocab_size": V, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128, "hidden_act": "silu", "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    scaling = {"factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    if style == "hub":  # Llama 3.x files on the Hub
        cfg.update(rope_theta=10000.0, rope_scaling={**scaling, "rope_type": "llama3"})
    elif style == "hub-type":  # older key name
        cfg.update(rope_theta=10000.0, rope_scaling={**scaling, "type": "llama3"})
    elif style == "parameters":  # transformers >= 5
        cfg.update(rope_parameters={**scaling, "rope_type": "llama3", "rope_theta": 10000.0})
    elif style == "plain":
        cfg.update(rope_theta=50000.0)
    return {**cfg, **extra}


def _tensors(cfg: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random HF-named tensors for `cfg` (written independently of the loader's own table)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    qwen, moe = cfg["architectures"][0] == "Qwen2ForCausalLM", "num_local_experts" in cfg
    out = {"model.embed_tokens.weight": r(V, D, std=1.0), "model.norm.weight": 1 + r(D)}
    if not cfg["tie_word_embeddings"]:
        out["lm_head.weight"] = r(V, D)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out |= {p + "self_attn.q_proj.weight": r(HEADS * HD, D), p + "self_attn.k_proj.weight": r(KV_HEADS * HD, D),
                p + "self_attn.v_proj.weight": r(KV_HEADS * HD, D), p + "self_attn.o_proj.weight": r(D, HEADS * HD),
                p + "input_layernorm.weight": 1 + r(D), p + "post_attention_layernorm.weight": 1 + r(D)}
        if qwen:
            out |= {p + "self_attn.q_proj.bias": r(HEADS * HD), p + "self_attn.k_proj.bias": r(KV_HEADS * HD),
                    p + "self_attn.v_proj.bias": r(KV_HEADS * HD)}
        if moe:
            out[p + "block_sparse_moe.gate.weight"] = r(cfg["num_local_experts"], D, std=0.5)
            for e in range(cfg["num_local_experts"]):
                q = f"{p}block_sparse_moe.experts.{e}."
                out |= {q + "w1.weight": r(INTER, D), q + "w3.weight": r(INTER, D), q + "w2.weight": r(D, INTER)}
        else:
            out |= {p + "mlp.gate_proj.weight": r(INTER, D), p + "mlp.up_proj.weight": r(INTER, D),
                    p + "mlp.down_proj.weight": r(D, INTER)}
    return out


def _write(folder: Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor], shards: int = 1,
           dtype: torch.dtype = torch.float32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
        return folder
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(folder / shard))
        weight_map |= dict.fromkeys(part, shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def _hf_reference(cfg: dict[str, Any], w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """HF modeling_llama / modeling_mixtral forward, straightforwardly, in fp64."""
    w = {k: v.double() for k, v in w.items()}
    eps = cfg["rms_norm_eps"]
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    inv_freq = 1.0 / theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD)
    if rope.get("rope_type", rope.get("type")) == "llama3":  # _compute_llama3_parameters
        factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        new = []
        for f in inv_freq.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < old / high:
                new.append(f)
            elif wavelen > old / low:
                new.append(f / factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                new.append((1 - smooth) * f / factor + smooth * f)
        inv_freq = torch.tensor(new, dtype=torch.float64)
    B, S = tokens.shape
    angles = torch.arange(S, dtype=torch.float64)[:, None] * inv_freq[None]
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [S, HD]

    def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        return torch.cat((-x[..., HD // 2 :], x[..., : HD // 2]), dim=-1)

    def proj(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ w[name + ".weight"].T + w.get(name + ".bias", 0)

    x = w["model.embed_tokens.weight"][tokens]
    mask = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = proj(h, p + "self_attn.q_proj").view(B, S, HEADS, HD).transpose(1, 2)
        k = proj(h, p + "self_attn.k_proj").view(B, S, KV_HEADS, HD).transpose(1, 2)
        v = proj(h, p + "self_attn.v_proj").view(B, S, KV_HEADS, HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)  # repeat_kv
        v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        attn = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(HD) + mask, dim=-1) @ v
        x = x + proj(attn.transpose(1, 2).reshape(B, S, D), p + "self_attn.o_proj")
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        if "num_local_experts" in cfg:
            flat = h.reshape(-1, D)
            probs = torch.softmax(flat @ w[p + "block_sparse_moe.gate.weight"].T, dim=-1)
            top, idx = probs.topk(cfg["num_experts_per_tok"], dim=-1)
            top = top / top.sum(-1, keepdim=True)
            out = torch.zeros_like(flat)
            for t in range(flat.shape[0]):
                for weight, e in zip(top[t].tolist(), idx[t].tolist()):
                    q_ = f"{p}block_sparse_moe.experts.{e}."
                    y = (F.silu(flat[t] @ w[q_ + "w1.weight"].T) * (flat[t] @ w[q_ + "w3.weight"].T)) @ w[q_ + "w2.weight"].T
                    out[t] += weight * y
            x = x + out.view_as(h)
        else:
            gate, up = proj(h, p + "mlp.gate_proj"), proj(h, p + "mlp.up_proj")
            x = x + proj(F.silu(gate) * up, p + "mlp.down_proj")
    x = norm(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


@pytest.mark.parametrize(
    ("style", "arch", "extra", "shards"),
    [
        ("hub", "LlamaForCausalLM", {}, 1),
        ("parameters", "LlamaForCausalLM", {}, 3),
        ("hub-type", "LlamaForCausalLM", {"tie_word_embeddings": True}, 2),
        ("plain", "MistralForCausalLM", {"sliding_window": None}, 1),
        ("plain", "Qwen2ForCausalLM", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6}, 1),
        ("plain", "MixtralForCausalLM", {"num_local_experts": 4, "num_experts_per_tok": 2}, 2),
    ],
    ids=["llama3-hub-single", "llama3-parameters-sharded", "tied-sharded", "mistral", "qwen2-bias-tied", "mixtral"],
)
def test_checkpoint_logits_match_hf_reference(tmp_path: Path, style: str, arch: str, extra: dict[str, Any],
                                              shards: int) -> None:
    cfg = _config(style, arch, **extra)
    weights = _tensors(cfg, seed=len(style) + shards)
    model = from_pretrained(_write(tmp_path / "ckpt", cfg, weights, shards=shards))
    tokens = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(1))
    logits = model(tokens)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits.double(), _hf_reference(cfg, weights, tokens), atol=1e-5, rtol=1e-5)
    if cfg["tie_word_embeddings"]:
        assert model.output.weight is model.tok_embeddings.weight


def test_llama3_rope_reaches_the_scaled_band(tmp_path: Path) -> None:
    cfg = _config("hub")
    args = args_from_hf_config(cfg)
    assert args.rope_scaling is not None and args.rope_scaling.original_max_position_embeddings == 16
    assert args_from_hf_config(_config("parameters")).rope_scaling == args.rope_scaling
    assert args_from_hf_config(_config("plain")).rope_scaling is None


def test_load_dtype_device_and_state_dict_hook(tmp_path: Path) -> None:
    cfg = _config("hub")
    weights = _tensors(cfg)
    folder = _write(tmp_path / "bf16", cfg, weights, dtype=torch.bfloat16)
    model = from_pretrained(folder, device="cpu", dtype=torch.float16)
    assert model.layers[0].attention.wqkv.weight.dtype == torch.float16
    assert model.layers[0].attention.wqkv.weight.shape == ((HEADS + 2 * KV_HEADS) * HD, D)
    assert not any(p.requires_grad for p in model.parameters())
    # The load hook also takes HF names through load_state_dict (q/k/v fused on the way).
    other = Transformer(args_from_hf_config(cfg))
    other.load_state_dict(weights)
    q = weights["model.layers.1.self_attn.q_proj.weight"]
    torch.testing.assert_close(other.layers[1].attention.wqkv.weight[: q.shape[0]], q)


# --- Errors ------------------------------------------------------------------------------------------


def test_missing_paths_raise_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json in .*empty"):
        from_pretrained(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(_config()))
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors weights in .*noweights"):
        from_pretrained(tmp_path / "noweights")
    cfg = _config()
    folder = _write(tmp_path / "sharded", cfg, _tensors(cfg), shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00002\.safetensors"):
        from_pretrained(folder)


def test_missing_and_misshapen_tensors_raise_value_error(tmp_path: Path) -> None:
    cfg = _config()
    weights = _tensors(cfg)
    del weights["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        from_pretrained(_write(tmp_path / "missing", cfg, weights))
    weights = _tensors(cfg)
    weights["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(HEADS * HD, D)
    with pytest.raises(ValueError, match=r"k_proj\.weight.*expected shape \[16, 32\], got \[32, 32\]"):
        from_pretrained(_write(tmp_path / "shape", cfg, weights))
    weights = _tensors(cfg) | {"model.layers.0.mlp.extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"unexpected tensor 'model\.layers\.0\.mlp\.extra\.weight'"):
        from_pretrained(_write(tmp_path / "extra", cfg, weights))
    untied = _tensors(cfg)
    del untied["lm_head.weight"]
    with pytest.raises(ValueError, match=r"lm_head\.weight"):
        from_pretrained(_write(tmp_path / "nohead", cfg, untied))


QWEN2 = {"architectures": ["Qwen2ForCausalLM"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "unsupported architecture 'GPT2LMHeadModel'"),
        ({"architectures": [], "model_type": "gemma"}, "unsupported architecture 'gemma'"),
        ({"architectures": []}, "names no architecture"),
        ({"architectures": [None]}, "names no architecture"),
        ({"architectures": [None], "model_type": "gpt2"}, "unsupported architecture 'gpt2'"),
        ({"hidden_size": None}, "missing required key 'hidden_size'"),
        ({"num_attention_heads": "four"}, "'num_attention_heads' must be int"),
        ({"num_key_value_heads": 3}, "multiple of n_kv_head"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope_type 'yarn'"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}},
         "high_freq_factor > low_freq_factor"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}},
         "quantized checkpoint [(]quant_method 'fp8'[)] is unsupported"),
        ({**QWEN2, "layer_types": ["full_attention", "chunked_attention"]}, "unsupported layer_types"),
        ({**QWEN2, "layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8},
         r"layers \[1\] use a sliding window and the others full attention"),
        ({**QWEN2, "layer_types": ["sliding_attention"] * 2}, "no sliding_window size"),
        ({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True, "sliding_window": 8,
          "max_window_layers": 1}, r"layers \[1\] use a sliding window"),
        ({"architectures": ["MistralForCausalLM"], "sliding_window": True}, "'sliding_window' must be int"),
    ],
)
def test_bad_configs_raise_value_error(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    cfg = {**_config(), **change}
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        from_pretrained(folder)


@pytest.mark.parametrize(
    ("change", "window"),
    [
        ({}, None),
        ({"sliding_window": 8}, None),  # Llama has no sliding window whatever the file says
        ({"architectures": ["MistralForCausalLM"], "sliding_window": 8}, 8),
        ({"architectures": ["MistralForCausalLM"], "sliding_window": None}, None),
        ({"architectures": ["Qwen2ForCausalLM"], "sliding_window": 8}, None),  # use_sliding_window false
        ({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True, "sliding_window": 8,
          "max_window_layers": 0}, 8),  # every layer from 0 on slides
        ({"architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True, "sliding_window": 8,
          "max_window_layers": 2}, None),  # no layer reaches index 2
        ({**QWEN2, "layer_types": ["sliding_attention"] * 2, "sliding_window": 8}, 8),  # transformers >= 5
        ({**QWEN2, "layer_types": ["full_attention"] * 2, "sliding_window": 8}, None),
    ],
)
def test_sliding_window_from_each_config_style(change: dict[str, Any], window: int | None) -> None:
    assert args_from_hf_config({**_config(), **change}).sliding_window == window


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        from_pretrained(tmp_path)


def test_malformed_index_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    cfg = _config()
    folder = _write(tmp_path / "listmap", cfg, _tensors(cfg))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["model.safetensors"]}))
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json .*weight_map"):
        from_pretrained(folder)


def test_unreadable_safetensors_file_is_named(tmp_path: Path) -> None:
    cfg = _config()
    folder = _write(tmp_path / "garbage", cfg, _tensors(cfg))
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match=r"garbage/model\.safetensors is not a readable safetensors file"):
        from_pretrained(folder)


def test_config_errors_name_the_file_once(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**_config(), "vocab_size": "96"}))
    with pytest.raises(ValueError) as info:
        from_pretrained(tmp_path)
    assert str(info.value).count("config.json") == 1, str(info.value)


def test_non_floating_tensor_is_refused(tmp_path: Path) -> None:
    # An integer tensor where a weight belongs is a broken or foreign checkpoint: casting it to
    # floats would load numbers that were never weights.
    cfg = _config()
    weights = _tensors(cfg) | {"model.norm.weight": torch.ones(D, dtype=torch.int64)}
    folder = tmp_path / "ints"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"'model\.norm\.weight' .*int64.*floating"):
        from_pretrained(folder)
