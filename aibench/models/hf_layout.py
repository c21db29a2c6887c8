"""The Hugging Face checkpoint layout of a Llama-family model: which tensors a checkpoint holds,
and how they map onto this model's state dict (q/k/v fused, experts stacked).

Its own module because both sides need it: the model's load hook (llama.py) converts a HF state
dict, and the loader (loader.py) checks a checkpoint's tensors against the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from aibench.models.config import ModelArgs


def hf_tensor_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Every tensor a HF checkpoint of `args` must hold, with its shape."""
    D, hd, inter = args.dim, args.head_dim, args.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (args.vocab_size, D),
                                          "model.norm.weight": (D,)}
    if not args.tie_embeddings:
        shapes["lm_head.weight"] = (args.vocab_size, D)
    for i in range(args.n_layer):
        p = f"model.layers.{i}."
        for proj, heads in (("q", args.n_head), ("k", args.n_kv_head), ("v", args.n_kv_head)):
            shapes[f"{p}self_attn.{proj}_proj.weight"] = (heads * hd, D)
            if args.qkv_bias:
                shapes[f"{p}self_attn.{proj}_proj.bias"] = (heads * hd,)
        shapes[f"{p}self_attn.o_proj.weight"] = (D, args.n_head * hd)
        shapes[f"{p}input_layernorm.weight"] = (D,)
        shapes[f"{p}post_attention_layernorm.weight"] = (D,)
        if args.is_moe:
            shapes[f"{p}block_sparse_moe.gate.weight"] = (args.n_expert, D)
            for e in range(args.n_expert):
                q = f"{p}block_sparse_moe.experts.{e}."
                shapes.update({q + "w1.weight": (inter, D), q + "w3.weight": (inter, D), q + "w2.weight": (D, inter)})
        else:
            shapes.update({p + "mlp.gate_proj.weight": (inter, D), p + "mlp.up_proj.weight": (inter, D),
                           p + "mlp.down_proj.weight": (D, inter)})
    return shapes


def hf_to_native(hf: Mapping[str, Tensor], args: ModelArgs, *, consume: bool = False) -> dict[str, Tensor]:
    """HF tensor names and layout -> this model's state dict (q/k/v fused, experts stacked).

    `consume=True` pops each tensor from `hf` (a dict) as it is converted, so that a layer's
    unfused q/k/v and per-expert matrices are freed once fused: the peak stays near one model.
    """
    take: Callable[[str], Tensor] = hf.pop if consume else hf.__getitem__  # type: ignore[attr-defined]
    try:
        return _hf_to_native(take, args)
    except KeyError as exc:
        raise ValueError(f"checkpoint is missing tensor {exc.args[0]!r}") from None


def _hf_to_native(take: Callable[[str], Tensor], args: ModelArgs) -> dict[str, Tensor]:
    embed = take("model.embed_tokens.weight")
    out = {"tok_embeddings.weight": embed, "norm.weight": take("model.norm.weight"),
           "output.weight": embed if args.tie_embeddings else take("lm_head.weight")}
    for i in range(args.n_layer):
        p, n = f"model.layers.{i}.", f"layers.{i}."
        attn = p + "self_attn."
        out[n + "attention.wqkv.weight"] = torch.cat([take(f"{attn}{x}_proj.weight") for x in "qkv"])
        if args.qkv_bias:
            out[n + "attention.wqkv.bias"] = torch.cat([take(f"{attn}{x}_proj.bias") for x in "qkv"])
        out[n + "attention.wo.weight"] = take(attn + "o_proj.weight")
        out[n + "attention_norm.weight"] = take(p + "input_layernorm.weight")
        out[n + "ffn_norm.weight"] = take(p + "post_attention_layernorm.weight")
        if args.is_moe:
            moe = p + "block_sparse_moe."
            out[n + "feed_forward.gate.weight"] = take(moe + "gate.weight")
            for w in ("w1", "w2", "w3"):  # Mixtral's expert names are already w1 (gate), w2 (down), w3 (up)
                out[f"{n}feed_forward.{w}"] = torch.stack(
                    [take(f"{moe}experts.{e}.{w}.weight") for e in range(args.n_expert)])
        else:
            for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                out[f"{n}feed_forward.{ours}.weight"] = take(f"{p}mlp.{theirs}.weight")
    return out
