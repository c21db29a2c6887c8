"""Training FLOPs of a ModelArgs: the model FLOPs behind MFU and the hardware FLOPs behind HFU.

Pure functions, tested exactly against hand-computed values (tests/test_train_flops.py).

Convention (the one TorchTitan publishes, `get_num_flop_per_token` and, in its current tree,
`quadratic_attention_flops_per_token` in torchtitan/models/utils.py):

    model FLOPs per token = 6 * N + 12 * L * H * Q * T

- N: the parameters a token multiplies through, embedding table excluded (a lookup, no FLOPs),
  lm_head, attention, MLP and norms included (TorchTitan counts every parameter but the
  nn.Embedding); for MoE the routed experts count top_k / n_expert of their parameters (TorchTitan's
  `get_nparams_and_active_nparams`), the router in full. 6 = 2 FLOPs per multiply-add x (forward
  + input-gradient + weight-gradient GEMMs).
- 12 * L * H * Q * T: attention's two sequence-length matmuls (Q K^T and P V) per layer, H query
  heads of head_dim Q over T = seq keys: 2 matmuls x 2 FLOPs x 3 (forward + 2 backward).
- Causal halving: NOT applied. TorchTitan counts every (query, key) pair ("we follow the convention
  and do not account for sparsity in causal attention"); Megatron-LM's num_floating_point_operations
  halves the core-attention term ("causal mask (only half of the mask is non-zero)"). The record
  carries both: `mfu_pct` in TorchTitan's convention (what its published MFU figures use) and
  `mfu_causal_pct` with the attention term halved (Megatron's).
- Recomputation is not model work: FlashAttention's backward re-computing Q K^T and activation
  checkpointing's second forward are left out of MFU (TorchTitan's "+0"). HFU counts the second
  forward of every checkpointed layer (PaLM's hardware FLOPs); the attention kernel's own
  recomputation inside its backward stays uncounted in both (a kernel's internal choice).
"""

from __future__ import annotations

from dataclasses import dataclass

from aibench.models.config import ModelArgs
from aibench.models.memory import param_count

FORMULA = ("model FLOPs/token = 6*N + 12*L*H*Q*T (TorchTitan get_num_flop_per_token: N = parameters "
           "without the embedding table, MoE experts weighted top_k/n_expert; L layers, H query heads, "
           "Q head_dim, T seq; no causal halving); causal variant (Megatron-LM): 6*N + 6*L*H*Q*T; "
           "HFU adds one forward (2*layer_params + 4*H*Q*T per token) per checkpointed layer")


def layer_params(a: ModelArgs, active: bool = True) -> int:
    """Parameters of one transformer block (both norms included); MoE routed experts weighted by
    top_k / n_expert when `active` (rounded down only if the weighting is not exact)."""
    attn = a.dim * (a.n_head + 2 * a.n_kv_head) * a.head_dim + a.n_head * a.head_dim * a.dim
    bias = (a.n_head + 2 * a.n_kv_head) * a.head_dim if a.qkv_bias else 0
    expert = 3 * a.dim * a.intermediate_size
    if a.is_moe:
        experts = a.n_expert_per_tok if active else a.n_expert
        mlp = a.dim * a.n_expert + experts * expert  # router in full, k of E experts
    else:
        mlp = expert
    return attn + bias + mlp + 2 * a.dim


def non_embedding_params(a: ModelArgs, active: bool = True) -> int:
    """N of 6N: every parameter but the embedding table (which a tied lm_head keeps: it multiplies)."""
    lm_head = a.vocab_size * a.dim
    return a.n_layer * layer_params(a, active) + lm_head + a.dim  # + final norm


def attention_flops_per_token(a: ModelArgs, seq: int, causal: bool = False) -> int:
    """12 * L * H * Q * T (training: forward + backward); halved when `causal` (Megatron-LM)."""
    full = 12 * a.n_layer * a.n_head * a.head_dim * seq
    return full // 2 if causal else full


def model_flops_per_token(a: ModelArgs, seq: int, causal: bool = False) -> int:
    """Model FLOPs of training one token at sequence length `seq` (see the module docstring)."""
    return 6 * non_embedding_params(a) + attention_flops_per_token(a, seq, causal)


def checkpointed_layers(n_layer: int, ac_every: int) -> int:
    """Layers whose forward runs twice: every `ac_every`-th (0: none, 1: all; TorchTitan's
    selective layer AC with frequency k checkpoints layers 0, k, 2k, ...)."""
    if ac_every < 0:
        raise ValueError(f"ac_every must be >= 0, got {ac_every}")
    return 0 if ac_every == 0 else len(range(0, n_layer, ac_every))


def hardware_flops_per_token(a: ModelArgs, seq: int, ac_every: int, causal: bool = False) -> int:
    """Model FLOPs + the recomputed forward of each checkpointed layer (2 FLOPs per multiply-add
    through its parameters, 4 * H * Q * T for its two attention matmuls, halved when causal)."""
    attn_fwd = 4 * a.n_head * a.head_dim * seq
    layer_fwd = 2 * layer_params(a) + (attn_fwd // 2 if causal else attn_fwd)
    return model_flops_per_token(a, seq, causal) + checkpointed_layers(a.n_layer, ac_every) * layer_fwd


def utilization_pct(flops_per_token: float, tokens_per_s_per_gpu: float, peak_tflops: float) -> float:
    """MFU or HFU in percent: achieved FLOP/s per GPU over the datasheet peak (TFLOP/s)."""
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be > 0, got {peak_tflops}")
    return 100.0 * flops_per_token * tokens_per_s_per_gpu / (peak_tflops * 1e12)


@dataclass(frozen=True)
class TrainFlops:
    """The per-token counts a training record carries beside its formula."""

    params: int
    non_embedding_params: int
    model_flops_per_token: int
    model_flops_per_token_causal: int
    hardware_flops_per_token: int
    hardware_flops_per_token_causal: int

    @classmethod
    def of(cls, a: ModelArgs, seq: int, ac_every: int) -> TrainFlops:
        return cls(param_count(a), non_embedding_params(a), model_flops_per_token(a, seq),
                   model_flops_per_token(a, seq, causal=True), hardware_flops_per_token(a, seq, ac_every),
                   hardware_flops_per_token(a, seq, ac_every, causal=True))

    def as_dict(self) -> dict[str, int | str]:
        return {"params": self.params, "non_embedding_params": self.non_embedding_params,
                "model_flops_per_token": self.model_flops_per_token,
                "model_flops_per_token_causal": self.model_flops_per_token_causal,
                "hardware_flops_per_token": self.hardware_flops_per_token,
                "hardware_flops_per_token_causal": self.hardware_flops_per_token_causal,
                "formula": FORMULA}
