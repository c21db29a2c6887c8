"""One training step of the Llama-family model: forward, cross-entropy, backward, AdamW.

    trainer = build_trainer(TrainSpec(args, global_batch=8, seq=256), device)          # one process
    trainer = build_trainer(spec, device, layout=Layout(dp=8))                          # FSDP2 ranks
    tokens = synthetic_tokens(args.vocab_size, spec.global_batch, spec.seq, seed=0)     # [B, S + 1]
    loss = trainer.step(*trainer.local_batch(tokens))                                   # global mean

Precision: `compute="bf16"` runs the step under torch.autocast(bfloat16) with fp32 master
weights, fp32 gradients and fp32 AdamW state; under FSDP2 the parameters are also all-gathered in
bf16 and gradients reduce-scattered in fp32 (MixedPrecisionPolicy, as TorchTitan does).
`compute="fp32"` (the CPU preview) is fp32 throughout.

Parallel layouts (`Layout`): dp ranks shard parameters, gradients and optimizer state with FSDP2
(`torch.distributed.fsdp.fully_shard`, one unit per transformer block plus the root); tp ranks
split each block's projections with DTensor (torch.distributed.tensor.parallel): wqkv, w1, w3
column-wise, wo, w2 row-wise, the heads of a rank kept together (`tp_row_order`). Embedding,
final norm and lm_head stay replicated across tp (no loss parallel, no sequence parallel), and
MoE experts are not split (no expert parallel): see aibench/workloads/llm_train.py.

Weights are drawn per parameter from `seed` on the full (unsharded) tensor and then distributed,
so every layout starts from the same model: one rank and N ranks train the same numbers.
The correctness gate is aibench/models/train_check.py, the FLOP formulas train_flops.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from aibench.models.config import ModelArgs
from aibench.models.llama import Attention, FeedForward, Transformer, TransformerBlock

COMPUTE = ("bf16", "fp32")
# AdamW as TorchTitan's Llama 3 recipes configure it (lr 8e-4 for 8B, betas 0.9/0.95, eps 1e-8,
# weight decay 0.1); a benchmark step's cost does not depend on these values.
ADAMW = {"lr": 8e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}


# --- Launcher environment ----------------------------------------------------------------------


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job (hardware.md: torchrun's variables)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def read_dist_env(environ: dict[str, str] | None = None) -> DistEnv:
    """RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun's);
    a single process when WORLD_SIZE is absent. A malformed value is a ValueError naming it."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return DistEnv()

    def num(key: str, default: int | None = None) -> int:
        raw = env.get(key)
        if raw is None:
            if default is None:
                raise ValueError(f"torchrun environment: {key} is missing (WORLD_SIZE is set)")
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"torchrun environment: {key}={raw!r} is not an integer") from None

    world = num("WORLD_SIZE")
    rank = num("RANK")
    local = num("LOCAL_RANK", rank)
    local_world = num("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world or not 0 <= local < local_world:
        raise ValueError(f"torchrun environment: RANK {rank} / LOCAL_RANK {local} outside WORLD_SIZE {world} "
                         f"/ LOCAL_WORLD_SIZE {local_world}")
    port = env.get("MASTER_PORT")
    return DistEnv(rank, local, world, local_world, env.get("MASTER_ADDR"), int(port) if port else None)


# --- Spec and layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """dp x tp ranks: FSDP2 over dp, DTensor tensor parallel over tp (mesh dims "dp", "tp")."""

    dp: int = 1
    tp: int = 1

    def __post_init__(self) -> None:
        if self.dp < 1 or self.tp < 1:
            raise ValueError(f"layout needs dp >= 1 and tp >= 1, got dp={self.dp} tp={self.tp}")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    def as_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "dp_shard": self.dp, "tp": self.tp,
                "mesh": {"dp": self.dp, "tp": self.tp},
                "data_parallel": "FSDP2 fully_shard per transformer block + root, reshard after forward"
                if self.dp > 1 else "none",
                "tensor_parallel": "DTensor: wqkv/w1/w3 colwise, wo/w2 rowwise; embedding, norms, lm_head "
                "replicated" if self.tp > 1 else "none"}


@dataclass(frozen=True)
class TrainSpec:
    """What one training step is: model shape, global batch of sequences, precision, options."""

    args: ModelArgs
    global_batch: int
    seq: int
    compute: str = "bf16"
    ac_every: int = 0  # checkpoint every k-th block (0: none, 1: all)
    compile: bool = False
    seed: int = 0
    adamw: dict[str, Any] = field(default_factory=lambda: dict(ADAMW))

    def __post_init__(self) -> None:
        if self.compute not in COMPUTE:
            raise ValueError(f"compute must be one of {COMPUTE}, got {self.compute!r}")
        if self.global_batch < 1 or self.seq < 1 or self.ac_every < 0:
            raise ValueError("need global_batch >= 1, seq >= 1 and ac_every >= 0")


# --- Data --------------------------------------------------------------------------------------


def synthetic_tokens(vocab: int, batch: int, seq: int, seed: int) -> Tensor:
    """[batch, seq + 1] uniform token ids from a CPU generator: the same on every rank and device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq + 1), generator=gen)


def split_batch(tokens: Tensor, rank: int, ranks: int) -> tuple[Tensor, Tensor]:
    """This data-parallel rank's rows of a global batch [B, S + 1]: (inputs, labels) [B / ranks, S]."""
    B = tokens.shape[0]
    if B % ranks:
        raise ValueError(f"global batch {B} is not divisible by {ranks} data-parallel ranks")
    rows = tokens[rank * (B // ranks) : (rank + 1) * (B // ranks)]
    return rows[:, :-1], rows[:, 1:]


# --- Model preparation -------------------------------------------------------------------------


class Checkpointed(nn.Module):
    """A block whose activations are recomputed in the backward (torch.utils.checkpoint, non-reentrant)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor, freqs_cis: Tensor, cache: Any) -> Tensor:
        return checkpoint(self.block, x, freqs_cis, cache, use_reentrant=False)


def tp_row_order(args: ModelArgs, tp: int) -> Tensor:
    """Row permutation of the fused wqkv (q heads, k heads, v heads) that puts rank r's q, k and v
    heads in its contiguous chunk: ColwiseParallel gives rank r rows [r*n/tp, (r+1)*n/tp)."""
    hd, hq, hkv = args.head_dim, args.n_head, args.n_kv_head
    q, k, v = torch.arange(hq * hd), hq * hd + torch.arange(hkv * hd), (hq + hkv) * hd + torch.arange(hkv * hd)
    parts = [torch.cat([q.chunk(tp)[r], k.chunk(tp)[r], v.chunk(tp)[r]]) for r in range(tp)]
    return torch.cat(parts)


def _full_value(name: str, shape: torch.Size, seed: int, index: int, device: torch.device) -> Tensor:
    if name.endswith("norm.weight"):
        return torch.ones(shape, device=device)
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)
    return torch.empty(shape, device=device).normal_(0.0, 0.02, generator=gen)


@torch.no_grad()
def init_weights(model: Transformer, seed: int, tp: int = 1) -> None:
    """N(0, 0.02) weights, norms 1: each parameter's full value from (seed, its index), then laid
    out as the parameter is (DTensor shards of FSDP2 / TP, or a plain tensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for index, (name, p) in enumerate(model.named_parameters()):
        device = p.to_local().device if isinstance(p, DTensor) else p.device
        full = _full_value(name, p.shape, seed, index, device)
        if tp > 1 and ".attention.wqkv." in name:
            full = full[tp_row_order(model.args, tp).to(device)]
        if isinstance(p, DTensor):
            p.copy_(distribute_tensor(full.to(p.dtype), p.device_mesh, p.placements, src_data_rank=None))
        else:
            p.copy_(full)


def _blocks(model: Transformer) -> list[nn.Module]:
    return list(model.layers)


def _parallelize_tp(model: Transformer, mesh: Any, tp: int) -> None:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    a = model.args
    if a.is_moe:
        raise ValueError("tensor parallel of MoE experts (expert parallel) is not implemented")
    if a.n_head % tp or a.n_kv_head % tp or a.intermediate_size % tp:
        raise ValueError(f"tp={tp} must divide n_head {a.n_head}, n_kv_head {a.n_kv_head} and "
                         f"intermediate_size {a.intermediate_size}")
    for block in model.layers:
        assert isinstance(block, TransformerBlock)
        plan: dict[str, Any] = {"attention.wqkv": ColwiseParallel(), "attention.wo": RowwiseParallel()}
        if isinstance(block.feed_forward, FeedForward):
            plan.update({"feed_forward.w1": ColwiseParallel(), "feed_forward.w3": ColwiseParallel(),
                         "feed_forward.w2": RowwiseParallel()})
        parallelize_module(block, mesh, plan)
        att: Attention = block.attention
        att.n_head, att.n_kv_head = a.n_head // tp, a.n_kv_head // tp  # this rank's heads


def prepare_model(spec: TrainSpec, device: torch.device, layout: Layout | None, mesh: Any = None) -> Transformer:
    """The model on `device`, laid out: TP, activation checkpointing, compile, FSDP2, weights."""
    a = spec.args
    with torch.device("meta"):
        model = Transformer(a)
    if layout is not None and layout.tp > 1:
        _parallelize_tp(model, mesh["tp"], layout.tp)
    for i, block in enumerate(_blocks(model)):
        wrapped: nn.Module = block
        if spec.ac_every and i % spec.ac_every == 0:
            wrapped = Checkpointed(wrapped)
        if spec.compile:
            wrapped = torch.compile(wrapped)  # per block, as TorchTitan: repeated structure compiles once
        model.layers[i] = wrapped
    if layout is not None and layout.dp > 1:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if spec.compute == "bf16" else torch.float32,
                                  reduce_dtype=torch.float32)
        dp_mesh = mesh["dp"]
        for block in model.layers:
            fully_shard(block, mesh=dp_mesh, mp_policy=mp)
        fully_shard(model, mesh=dp_mesh, mp_policy=mp)
    model.to_empty(device=device)
    init_weights(model, spec.seed, layout.tp if layout is not None else 1)
    return model.train()


# --- The step ------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token loss in fp32 over every position of the local batch."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())


class Trainer:
    """A model, its AdamW and the precision context: `step` is what a benchmark times."""

    def __init__(self, spec: TrainSpec, model: Transformer, device: torch.device, layout: Layout | None,
                 mesh: Any = None) -> None:
        self.spec, self.model, self.device, self.layout, self.mesh = spec, model, device, layout, mesh
        # foreach: one fused multi-tensor kernel per group on GPUs (torch's default there); FSDP2's
        # DTensor parameters take it as well.
        self.optimizer = torch.optim.AdamW(model.parameters(), **spec.adamw, foreach=device.type == "cuda")
        self.dp_rank = 0
        if layout is not None and layout.dp > 1:
            self.dp_rank = mesh["dp"].get_local_rank()

    @property
    def dp(self) -> int:
        return self.layout.dp if self.layout is not None else 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.spec.compute == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def local_batch(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        inputs, labels = split_batch(tokens, self.dp_rank, self.dp)
        return inputs.to(self.device), labels.to(self.device)

    def forward_backward(self, inputs: Tensor, labels: Tensor) -> Tensor:
        """Loss of the local batch (detached) after its backward; gradients accumulate in .grad."""
        with self.autocast():
            logits = self.model(inputs)  # [b, S, V]
        loss = cross_entropy(logits, labels)
        loss.backward()
        return loss.detach()

    def step(self, inputs: Tensor, labels: Tensor) -> Tensor:
        """One optimizer step; the mean loss over the global batch (all-reduced across dp ranks)."""
        loss = self.forward_backward(inputs, labels)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self.global_mean(loss)

    def global_mean(self, loss: Tensor) -> Tensor:
        if self.dp == 1:
            return loss
        import torch.distributed as dist

        out = loss.clone()
        dist.all_reduce(out, group=self.mesh["dp"].get_group())
        return out / self.dp


def build_trainer(spec: TrainSpec, device: torch.device, layout: Layout | None = None, mesh: Any = None) -> Trainer:
    """A Trainer for one process (`layout` None) or for this rank of a dp x tp job whose process
    group is initialised (`mesh`: its DeviceMesh with dims ("dp", "tp"); built when None)."""
    if layout is not None and mesh is None and layout.world_size > 1:
        mesh = device_mesh(device, layout)
    model = prepare_model(spec, device, layout, mesh)
    return Trainer(spec, model, device, layout, mesh)


def device_mesh(device: torch.device, layout: Layout) -> Any:
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (layout.dp, layout.tp), mesh_dim_names=("dp", "tp"))


# --- Memory --------------------------------------------------------------------------------------


def peak_memory(device: torch.device) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, unavailable): the caching allocator's peak allocated and reserved bytes since the
    last reset, on a GPU; on a CPU torch tracks no such peak, so both are unavailable."""
    if device.type != "cuda":
        why = "torch keeps no allocator peak for CPU tensors (torch.cuda.max_memory_* is GPU-only)"
        return {}, {"peak_allocated_gib": why, "peak_reserved_gib": why}
    gib = float(2**30)
    return ({"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / gib,
             "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / gib}, {})


@contextlib.contextmanager
def fresh_peak(device: torch.device) -> Iterator[None]:
    """Reset the allocator's peak counters (GPU) so that a peak read afterwards is this window's."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield


def train_memory_bytes(spec: TrainSpec, layout: Layout, local_batch: int) -> dict[str, int]:
    """Estimated peak bytes on one rank, by part; an estimate used only to refuse a run that
    cannot fit (never reported as a measurement).

    states: fp32 master weight + fp32 gradient + AdamW's two fp32 moments = 16 bytes a parameter,
      a block's projections split over tp, everything sharded over dp (FSDP2);
    gathered: under FSDP2, two blocks' parameters unsharded in the compute dtype (the current
      one and the prefetched next one);
    activations: saved tensors of a layer per token (~6 hidden-size, the q/k/v heads and 3 MLP-size
      vectors; a checkpointed layer keeps only its input), one layer's worth again for the
      recompute, and the logits (compute dtype, their fp32 copy, its fp32 gradient, the compute-
      dtype gradient: 12 bytes a vocabulary entry in bf16).
    """
    from aibench.models.train_flops import checkpointed_layers, layer_params

    a = spec.args
    item = 2 if spec.compute == "bf16" else 4
    per_layer = layer_params(a, active=False)
    norms = 2 * a.dim
    split = per_layer - norms  # the projections (and MoE router + experts, never split: tp is 1 there)
    tables = a.vocab_size * a.dim * (1 if a.tie_embeddings else 2) + a.dim
    params_rank = (a.n_layer * (split // layout.tp + norms) + tables) / layout.dp
    states = int(16 * params_rank)
    gathered = int(2 * (split // layout.tp + norms) * item) if layout.dp > 1 else 0
    tokens = local_batch * spec.seq
    heads = (a.n_head + 2 * a.n_kv_head) * a.head_dim // layout.tp
    mlp = 3 * a.intermediate_size * (a.n_expert_per_tok if a.is_moe else 1) // layout.tp
    full_layer = tokens * (6 * a.dim + 2 * heads + mlp) * item
    ckpt = checkpointed_layers(a.n_layer, spec.ac_every)
    acts = ckpt * tokens * a.dim * item + (a.n_layer - ckpt) * full_layer + full_layer
    logits = tokens * a.vocab_size * (2 * item + 8)
    return {"states": states, "gathered": gathered, "activations": int(acts), "logits": int(logits),
            "total": states + gathered + int(acts) + int(logits)}
