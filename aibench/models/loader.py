"""Where a model's weights come from: random with a fixed seed, or a Hugging Face checkpoint folder.

A checkpoint folder holds config.json and safetensors weights (one `model.safetensors`, or shards
listed by `model.safetensors.index.json`). Both config.json styles are read: Llama 3.x Hub files
(`rope_theta`, `rope_scaling`) and recent transformers (`rope_parameters`). HF q/k/v projections
are fused into `wqkv` by `hf_layout.hf_to_native` (Transformer's load hook); q/k need no permutation
because the model's RoPE uses HF's rotate_half layout.

Errors: a missing folder, config.json or weight file -> FileNotFoundError naming the path;
anything wrong inside them (architecture, config value, tensor name or shape) -> ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aibench.models.config import ModelArgs, RopeScaling
from aibench.models.hf_layout import hf_tensor_shapes, hf_to_native
from aibench.models.llama import Transformer

ARCHITECTURES: dict[str, str] = {  # architecture -> family
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "MixtralForCausalLM": "mixtral",
}
_MODEL_TYPES = {family: arch for arch, family in ARCHITECTURES.items()}
# Tensors a checkpoint may carry that the model recomputes or does not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# --- Random weights ---------------------------------------------------------------------------


@torch.no_grad()
def random_model(args: ModelArgs, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> Transformer:
    """A model with N(0, 0.02) weights (norms 1), generated directly on `device` in `dtype`."""
    device = torch.device(device)
    with torch.device("meta"):
        model = Transformer(args)
    model = model.to(dtype=dtype).to_empty(device=device)  # allocate once, in the target dtype
    model.tie_weights()
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():  # a tied table is listed (and drawn) once
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


# --- Config -----------------------------------------------------------------------------------


def _get(cfg: Mapping[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    if key not in cfg or cfg[key] is None:
        if default is ...:
            raise ValueError(f"config.json: missing required key {key!r}")
        return default
    value = cfg[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
    if not ok or (kind is int and isinstance(value, bool)):
        raise ValueError(f"config.json: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _rope(cfg: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ValueError(f"config.json: rope_parameters/rope_scaling must be an object, got {params!r}")
    theta = float(_get(params, "rope_theta", float, _get(cfg, "rope_theta", float, 10000.0)))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise ValueError(f"config.json: unsupported rope_type {rope_type!r} (supported: default, llama3)")
    try:
        scaling = RopeScaling(
            factor=float(_get(params, "factor", float)),
            low_freq_factor=float(_get(params, "low_freq_factor", float)),
            high_freq_factor=float(_get(params, "high_freq_factor", float)),
            original_max_position_embeddings=int(_get(params, "original_max_position_embeddings", int,
                                                      _get(cfg, "max_position_embeddings", int, 8192))),
        )
    except ValueError as exc:
        raise ValueError(_in_config(exc)) from None
    return theta, scaling


def _sliding_window(cfg: Mapping[str, Any], family: str) -> int | None:
    """The window every layer uses, or None for full attention. The model has one window for all
    layers, so a checkpoint that mixes full and sliding layers is refused (its logits would differ).

    Which layers slide: transformers >= 5 writes `layer_types`; older Qwen2 files say it with
    use_sliding_window and max_window_layers (layers from that index on slide); Mistral and
    Mixtral slide everywhere when sliding_window is set; Llama never does."""
    if family == "llama":
        return None
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or not set(types) <= {"full_attention", "sliding_attention"}:
            raise ValueError(f"config.json: unsupported layer_types {types!r} "
                             f"(supported: full_attention, sliding_attention)")
        sliding = [t == "sliding_attention" for t in types]
    elif family == "qwen2":
        if not cfg.get("use_sliding_window", False):
            return None
        first = _get(cfg, "max_window_layers", int, 28)  # transformers' Qwen2Config default
        sliding = [i >= first for i in range(_get(cfg, "num_hidden_layers", int))]
    else:
        sliding = [True]
    if not any(sliding):
        return None
    if not all(sliding):
        raise ValueError(f"config.json: layers {[i for i, s in enumerate(sliding) if s]} use a sliding window and "
                         f"the others full attention; only one kind for all layers is supported")
    window = _get(cfg, "sliding_window", int, None)
    if window is None and (types is not None or family == "qwen2"):
        raise ValueError("config.json: sliding-window layers but no sliding_window size")
    return window


def args_from_hf_config(cfg: Mapping[str, Any], name: str = "") -> ModelArgs:
    """ModelArgs from a Hugging Face config.json dict (Llama, Mistral, Qwen2, Mixtral)."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"config.json must hold a JSON object, got {type(cfg).__name__}")
    archs = cfg.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if not arch:  # no (or an empty) architectures list: the model_type names the family
        arch = _MODEL_TYPES.get(str(cfg.get("model_type")), "")
    arch = str(arch) if arch else ""
    if not arch and not cfg.get("model_type"):
        raise ValueError(f"config.json names no architecture (neither 'architectures' nor 'model_type'); "
                         f"supported: {', '.join(ARCHITECTURES)}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"config.json: unsupported architecture {arch or cfg.get('model_type')!r} "
                         f"(supported: {', '.join(ARCHITECTURES)})")
    family = ARCHITECTURES[arch]
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {cfg.get('hidden_act')!r} unsupported (only silu)")
    for flag in ("mlp_bias", "attention_bias"):
        if family in ("llama", "mistral") and cfg.get(flag):
            raise ValueError(f"config.json: {flag}=true is unsupported")
    if cfg.get("quantization_config") is not None:  # fp8 / GPTQ / AWQ weights: other tensors, other math
        quant = cfg["quantization_config"]
        method = quant.get("quant_method", "?") if isinstance(quant, Mapping) else "?"
        raise ValueError(f"config.json: quantized checkpoint (quant_method {method!r}) is unsupported; "
                         f"aibench loads unquantized bf16/fp16/fp32 weights")
    if cfg.get("partial_rotary_factor", 1.0) not in (1, 1.0, None):
        raise ValueError("config.json: partial_rotary_factor != 1 is unsupported")
    theta, scaling = _rope(cfg)
    window = _sliding_window(cfg, family)
    try:
        return ModelArgs(
            vocab_size=_get(cfg, "vocab_size", int),
            dim=_get(cfg, "hidden_size", int),
            n_layer=_get(cfg, "num_hidden_layers", int),
            n_head=_get(cfg, "num_attention_heads", int),
            n_kv_head=_get(cfg, "num_key_value_heads", int, 0),
            head_dim=_get(cfg, "head_dim", int, 0),
            intermediate_size=_get(cfg, "intermediate_size", int),
            norm_eps=float(_get(cfg, "rms_norm_eps", float, 1e-6)),
            rope_base=theta,
            rope_scaling=scaling,
            block_size=_get(cfg, "max_position_embeddings", int, 2048),
            qkv_bias=family == "qwen2",  # Qwen2 always has q/k/v biases (and none on o_proj)
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            n_expert=_get(cfg, "num_local_experts", int, 0) if family == "mixtral" else 0,
            n_expert_per_tok=_get(cfg, "num_experts_per_tok", int, 2),
            sliding_window=window,
            name=name or arch,
        )
    except ValueError as exc:
        raise ValueError(_in_config(exc)) from None


def _in_config(exc: ValueError) -> str:
    # `_get` already names config.json; ModelArgs' own checks do not: prefix those only once.
    text = str(exc)
    return text if text.startswith("config.json:") else f"config.json: {text}"


# --- Checkpoint folder ------------------------------------------------------------------------


def read_config(path: str | Path) -> ModelArgs:
    folder = _folder(path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in checkpoint folder {folder}")
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    return args_from_hf_config(cfg, name=folder.name)


def weight_files(path: str | Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (index.json, model.safetensors, or *.safetensors)."""
    folder = _folder(path)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{index} is not a valid safetensors index (needs a weight_map): {exc}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{index} is not a valid safetensors index: its weight_map must map tensor names "
                             f"to shard file names, got {type(weight_map).__name__}")
        files = {name: folder / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise FileNotFoundError(f"shard {shard} listed in {index} does not exist")
        return files
    shards = [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else sorted(
        folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors weights in {folder} (pytorch_model.bin is not supported)")
    files = {}
    for shard in shards:
        with _open_shard(shard) as f:
            files.update(dict.fromkeys(f.keys(), shard))
    return files


def _open_shard(shard: Path) -> Any:
    """safe_open, with a broken file (truncated, not safetensors) reported by its path: the
    library's own message ("header too large") names no file."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(shard), framework="pt")
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{shard} is not a readable safetensors file: {exc}") from None


def from_pretrained(path: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> Transformer:
    """Load a Hugging Face checkpoint folder into a Transformer on `device` in `dtype`."""
    args = read_config(path)
    files = weight_files(path)
    expected = hf_tensor_shapes(args)
    device = torch.device(device)
    missing = sorted(set(expected) - set(files))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ValueError(f"checkpoint {path} is missing tensor {missing[0]!r}{more}")
    allowed = set(expected) | ({"lm_head.weight"} if args.tie_embeddings else set())
    unexpected = sorted(n for n in files if n not in allowed and not n.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise ValueError(f"checkpoint {path} has unexpected tensor {unexpected[0]!r} "
                         f"({len(unexpected)} in all) for architecture {args.name}")
    hf: dict[str, Tensor] = {}
    for shard in sorted({files[n] for n in expected}):
        # One tensor at a time through host memory, cast and moved as it arrives: the host never
        # holds more than one tensor, the device never more than the model (plus one layer's q/k/v).
        with _open_shard(shard) as f:
            for name in (n for n in expected if files[n] == shard):
                shape = tuple(f.get_slice(name).get_shape())
                if shape != expected[name]:
                    raise ValueError(f"tensor {name!r} in {shard.name}: expected shape "
                                     f"{list(expected[name])}, got {list(shape)}")
                tensor = f.get_tensor(name)
                if not tensor.is_floating_point():
                    # Integers are no weights (quantized or foreign data): casting them to floats
                    # would load numbers the model was never trained with.
                    raise ValueError(f"tensor {name!r} in {shard.name} is {str(tensor.dtype).replace('torch.', '')}, "
                                     f"not floating point: aibench loads unquantized bf16/fp16/fp32 weights")
                hf[name] = tensor.to(device=device, dtype=dtype)
    native = hf_to_native(hf, args, consume=True)  # frees the unfused tensors as it goes
    with torch.device("meta"):
        model = Transformer(args)
    model.load_state_dict(native, strict=True, assign=True)  # the tensors become the parameters
    model.tie_weights()
    return model.eval().requires_grad_(False)


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist (or is not a folder)")
    return folder
