"""Shape sets taken from real LLMs, as data: the GEMMs and attention calls of Llama 3.1.

Model dimensions are those of the published Llama 3.1 configs (8B, 70B, 405B). A GEMM is the
product of a token batch X [M, hidden] with a weight stored as nn.Linear does, W [N, K], i.e.
X @ W.t(): hence `transpose_b=True` in the models' GemmShape params. Fused projections follow the
common inference layout: q, k and v in one weight (N = (heads + 2 * kv_heads) * head_dim), gate
and up in one (N = 2 * intermediate). Whole-model shapes (no tensor parallelism): one GPU's share
under TP=t divides N of qkv/gate_up and K of o/down by t.

    for shape in GEMM_SHAPE_SETS["llama3-8b"]:
        run_workload("gemm", shape.params(), device)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LlamaConfig:
    name: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


LLAMA3: dict[str, LlamaConfig] = {
    "llama3-8b": LlamaConfig("llama3-8b", 4096, 14336, 32, 8, 128, 128256),
    "llama3-70b": LlamaConfig("llama3-70b", 8192, 28672, 64, 8, 128, 128256),
    "llama3-405b": LlamaConfig("llama3-405b", 16384, 53248, 128, 8, 128, 128256),
}

# Token counts per GEMM call: prefill processes whole prompts (a few thousand tokens per
# batch), decode one new token per sequence, so M is the decode batch size.
PREFILL_TOKENS: tuple[int, ...] = (2048, 4096, 8192)
DECODE_TOKENS: tuple[int, ...] = (1, 8, 32, 64)


@dataclass(frozen=True)
class GemmShape:
    """One GEMM C[M, N] = X[M, K] @ W[N, K].t() of a model's layer."""

    model: str
    op: str  # qkv | o | gate_up | down
    m: int
    n: int
    k: int
    phase: str = "prefill"  # prefill | decode (M = decode batch) | synthetic
    transpose_b: bool = True  # W stored [N, K] as nn.Linear does, multiplied as W.t()

    @property
    def label(self) -> str:
        return f"{self.model}/{self.op}/m{self.m}"

    def params(self) -> dict[str, Any]:
        """The `gemm` workload's parameters for this shape."""
        return {"m": self.m, "n": self.n, "k": self.k, "transpose_b": self.transpose_b}


def llama_projections(cfg: LlamaConfig, tokens: tuple[int, ...], phase: str) -> list[GemmShape]:
    """The four projection GEMMs of one transformer layer at each token count."""
    q_dim = cfg.heads * cfg.head_dim
    ops = (
        ("qkv", (cfg.heads + 2 * cfg.kv_heads) * cfg.head_dim, cfg.hidden),
        ("o", cfg.hidden, q_dim),
        ("gate_up", 2 * cfg.intermediate, cfg.hidden),
        ("down", cfg.hidden, cfg.intermediate),
    )
    return [GemmShape(cfg.name, op, m, n, k, phase) for m in tokens for op, n, k in ops]


def _gemm_sets() -> dict[str, list[GemmShape]]:
    sets: dict[str, list[GemmShape]] = {}
    for name, cfg in LLAMA3.items():
        sets[name] = llama_projections(cfg, PREFILL_TOKENS, "prefill") + llama_projections(
            cfg, DECODE_TOKENS, "decode"
        )
    sets["llm-prefill"] = [s for name in LLAMA3 for s in sets[name] if s.phase == "prefill"]
    sets["llm-decode"] = [s for name in LLAMA3 for s in sets[name] if s.phase == "decode"]
    sets["square"] = [GemmShape("square", "nn", s, s, s, "synthetic", False) for s in (1024, 2048, 4096, 8192)]
    # A few seconds even in Triton's CPU interpreter: for smoke runs and tests.
    sets["tiny"] = [
        GemmShape("tiny", "odd", 37, 53, 29, "synthetic"),
        GemmShape("tiny", "decode", 1, 96, 64, "decode"),
        GemmShape("tiny", "square", 64, 64, 64, "synthetic"),
    ]
    return sets


GEMM_SHAPE_SETS: dict[str, list[GemmShape]] = _gemm_sets()


@dataclass(frozen=True)
class AttentionPrefillShape:
    """Causal self-attention over whole prompts: Q [batch, heads, seq, head_dim], K/V with kv_heads."""

    model: str
    batch: int
    heads: int
    kv_heads: int
    seq: int
    head_dim: int

    @property
    def label(self) -> str:
        return f"{self.model}/prefill/b{self.batch}-s{self.seq}"

    def params(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "seq": self.seq,
            "head_dim": self.head_dim,
        }


@dataclass(frozen=True)
class AttentionDecodeShape:
    """One new query token per sequence attending to a KV cache of `context` tokens."""

    model: str
    batch: int
    heads: int
    kv_heads: int
    context: int
    head_dim: int

    @property
    def label(self) -> str:
        return f"{self.model}/decode/b{self.batch}-ctx{self.context}"

    def params(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "context": self.context,
            "head_dim": self.head_dim,
        }


# (batch, seq): one long prompt, and a batch of medium ones (same order of token count).
PREFILL_BATCHES: tuple[tuple[int, int], ...] = ((1, 4096), (1, 8192), (4, 2048))
# (batch, context): a single user, and batched serving at short and long contexts.
DECODE_BATCHES: tuple[tuple[int, int], ...] = ((1, 4096), (8, 4096), (32, 2048), (64, 8192))


def _attention_sets() -> tuple[dict[str, list[AttentionPrefillShape]], dict[str, list[AttentionDecodeShape]]]:
    prefill: dict[str, list[AttentionPrefillShape]] = {}
    decode: dict[str, list[AttentionDecodeShape]] = {}
    for name, c in LLAMA3.items():
        prefill[name] = [
            AttentionPrefillShape(name, b, c.heads, c.kv_heads, s, c.head_dim) for b, s in PREFILL_BATCHES
        ]
        decode[name] = [
            AttentionDecodeShape(name, b, c.heads, c.kv_heads, ctx, c.head_dim) for b, ctx in DECODE_BATCHES
        ]
    prefill["llm-prefill"] = [s for name in LLAMA3 for s in prefill[name]]
    decode["llm-decode"] = [s for name in LLAMA3 for s in decode[name]]
    prefill["tiny"] = [AttentionPrefillShape("tiny", 1, 4, 2, 64, 32)]
    decode["tiny"] = [AttentionDecodeShape("tiny", 2, 4, 2, 96, 32)]
    return prefill, decode


ATTENTION_PREFILL_SETS, ATTENTION_DECODE_SETS = _attention_sets()
