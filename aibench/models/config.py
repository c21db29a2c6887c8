"""Model shapes: one `ModelArgs` dataclass and a dict of named configurations (gpt-fast style).

Figures of the named configs come from the models' published Hugging Face `config.json` files
(meta-llama/Llama-3.1-{8B,70B,405B}, mistralai/Mixtral-8x7B-v0.1, Qwen/Qwen2.5-7B). The tiny
ones exist for CPU tests and previews; `tiny` uses Llama-3 RoPE scaling with a short original
context so that all three frequency bands of the scaling are exercised by short sequences.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

BACKENDS: tuple[str, ...] = ("torch", "triton")
ROPE_TYPES: tuple[str, ...] = ("default", "llama3")


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.x frequency scaling (HF `rope_scaling` / `rope_parameters` with rope_type "llama3")."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192
    rope_type: str = "llama3"

    def __post_init__(self) -> None:
        if self.rope_type != "llama3":
            raise ValueError(f"rope_scaling: unsupported rope_type {self.rope_type!r} (supported: llama3)")
        if not self.factor > 0:
            raise ValueError(f"rope_scaling: factor must be > 0, got {self.factor}")
        if not self.high_freq_factor > self.low_freq_factor > 0:
            raise ValueError(
                "rope_scaling: need high_freq_factor > low_freq_factor > 0, got "
                f"{self.high_freq_factor} and {self.low_freq_factor}"
            )
        if self.original_max_position_embeddings <= 0:
            raise ValueError("rope_scaling: original_max_position_embeddings must be > 0")


@dataclass(frozen=True)
class ModelArgs:
    """Shape and options of a decoder-only transformer. Zero means "derive" for the sized fields."""

    vocab_size: int = 32000
    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int = 0  # 0 -> n_head (multi-head); fewer -> grouped-query attention
    head_dim: int = 0  # 0 -> dim // n_head
    intermediate_size: int = 0  # 0 -> SwiGLU's 2/3 * 4 * dim rounded up to 256 (gpt-fast)
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    rope_scaling: RopeScaling | None = None
    block_size: int = 2048  # max_position_embeddings: the RoPE table's default length
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v (not on o)
    tie_embeddings: bool = False  # lm_head shares the embedding table
    n_expert: int = 0  # 0 -> dense SwiGLU MLP; > 0 -> Mixtral-style mixture of experts
    n_expert_per_tok: int = 2
    # Mistral's sliding window: a query sees only the last `sliding_window` keys, itself included
    # (HF: kv_idx > q_idx - sliding_window). Masked on the torch backend; the Triton kernels refuse.
    sliding_window: int | None = None
    attn_backend: str = "torch"
    matmul_backend: str = "torch"
    name: str = ""

    def __post_init__(self) -> None:
        # Frozen dataclass: derived fields are set through object.__setattr__, once, here.
        for field_name in ("vocab_size", "dim", "n_layer", "n_head"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"ModelArgs.{field_name} must be > 0, got {getattr(self, field_name)}")
        if self.n_kv_head == 0:
            object.__setattr__(self, "n_kv_head", self.n_head)
        if self.head_dim == 0:
            if self.dim % self.n_head:
                raise ValueError(f"dim {self.dim} is not divisible by n_head {self.n_head}")
            object.__setattr__(self, "head_dim", self.dim // self.n_head)
        if self.intermediate_size == 0:
            object.__setattr__(self, "intermediate_size", find_multiple(int(2 * 4 * self.dim / 3), 256))
        if self.n_kv_head < 0 or self.head_dim < 0 or self.intermediate_size < 0:
            raise ValueError("ModelArgs: n_kv_head, head_dim and intermediate_size must be >= 0")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.n_expert < 0 or (self.n_expert and not 0 < self.n_expert_per_tok <= self.n_expert):
            raise ValueError(
                f"need 0 < n_expert_per_tok <= n_expert, got {self.n_expert_per_tok} of {self.n_expert}"
            )
        if self.norm_eps <= 0 or self.rope_base <= 0 or self.block_size <= 0:
            raise ValueError("ModelArgs: norm_eps, rope_base and block_size must be > 0")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"ModelArgs.sliding_window must be > 0 or None, got {self.sliding_window}")
        for field_name in ("attn_backend", "matmul_backend"):
            if getattr(self, field_name) not in BACKENDS:
                raise ValueError(
                    f"ModelArgs.{field_name} must be one of {BACKENDS}, got {getattr(self, field_name)!r}"
                )

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelArgs:
        """A named configuration (exact name, case-insensitive), optionally with fields replaced."""
        key = name.lower()
        if key not in CONFIGS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(CONFIGS)}")
        return cls(**{**CONFIGS[key], "name": key, **overrides})

    def replace(self, **changes: Any) -> ModelArgs:
        return dataclasses.replace(self, **changes)


_LLAMA31_ROPE = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                            original_max_position_embeddings=8192)
_LLAMA31 = dict(vocab_size=128256, n_kv_head=8, norm_eps=1e-5, rope_base=500000.0,
                rope_scaling=_LLAMA31_ROPE, block_size=131072)

CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": dict(_LLAMA31, dim=4096, n_layer=32, n_head=32, intermediate_size=14336),
    "llama-3.1-70b": dict(_LLAMA31, dim=8192, n_layer=80, n_head=64, intermediate_size=28672),
    "llama-3.1-405b": dict(_LLAMA31, dim=16384, n_layer=126, n_head=128, intermediate_size=53248),
    "mixtral-8x7b": dict(vocab_size=32000, dim=4096, n_layer=32, n_head=32, n_kv_head=8,
                         intermediate_size=14336, norm_eps=1e-5, rope_base=1e6, block_size=32768,
                         n_expert=8, n_expert_per_tok=2),
    "qwen2.5-7b": dict(vocab_size=152064, dim=3584, n_layer=28, n_head=28, n_kv_head=4,
                       intermediate_size=18944, norm_eps=1e-6, rope_base=1e6, block_size=32768,
                       qkv_bias=True),
    "tiny": dict(vocab_size=512, dim=64, n_layer=2, n_head=4, n_kv_head=2, intermediate_size=160,
                 rope_base=10000.0, block_size=256,
                 rope_scaling=RopeScaling(factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=64)),
    "tiny-moe": dict(vocab_size=512, dim=64, n_layer=2, n_head=4, n_kv_head=2, intermediate_size=96,
                     rope_base=10000.0, block_size=256, n_expert=4, n_expert_per_tok=2),
}
