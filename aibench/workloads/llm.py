"""LLM workloads on the compact Llama-family model: `llm.prefill` (compute-bound, MFU) and
`llm.decode` (memory-bound, MBU), each with a `torch` baseline and a `triton` backend
(aibench.kernels.attention + aibench.kernels.matmul on the same weights).

Weights are random N(0, 0.02) from `seed` unless `weights` names a Hugging Face checkpoint
folder (then `model` is ignored and the folder's config.json decides the shapes).

Counts per timed call (pure functions below, tested exactly):
  prefill FLOPs = 2 * matmul_params * B * S + attention FLOPs
  decode  FLOPs = sum over steps of 2 * matmul_params * B + attention FLOPs
  attention FLOPs = 4 * layers * q_heads * head_dim * (attended (query, key) pairs): QK^T and
      PV, one multiply-add (2 FLOPs) each per pair and dim; a query at position p sees p + 1 keys.
  decode bytes = per step, the weights read once + every row's K/V up to its position
      (gpt-fast's effective bandwidth: model bytes x steps/s; MBU = that / peak bandwidth).
matmul_params (aibench.models.memory) counts lm_head and, for MoE, the router and top-k experts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from aibench.core.checks import Check, compare, tolerance_for
from aibench.core.errors import Unsupported, UsageError
from aibench.device import devices
from aibench.measure.case import Case, Param
from aibench.models.config import CONFIGS, ModelArgs
from aibench.models.llama import Transformer
from aibench.models.loader import from_pretrained, random_model, read_config
from aibench.models.memory import activation_bytes, ensure_fits, kv_cache_bytes, matmul_params, param_count
from aibench.models.reference import record_routing, reference_logits, replay_routing
from aibench.workloads.registry import workload

DTYPES = ("bfloat16", "float16", "float32")
PREFILL_CHUNK_TOKENS = 4096  # tokens per forward when filling a cache: bounds the logits buffer
_CHECK_ROWS = 2  # rows compared with the fp64 reference (rows are independent)
_CHECK_POSITIONS = 32  # positions per row whose logits are compared (keeps fp64 logits small)

_MODEL_PARAMS = (
    Param("model", str, "llama-3.1-8b", "named model configuration (ignored when weights is set)",
          choices=tuple(CONFIGS), preview="tiny"),
)
_TAIL_PARAMS = (
    # Preview in fp32: the CPU check is then exact to fp32 rounding, and Triton's interpreter
    # mishandles bf16 (../shared/reference/triton-interpreter.md).
    Param("dtype", str, "bfloat16", "weights, activations and KV cache dtype", choices=DTYPES, preview="float32"),
    Param("weights", str, "", "Hugging Face checkpoint folder (config.json + *.safetensors); empty: random"),
    Param("seed", int, 0, "seed of the random weights and tokens"),
    Param("compile", bool, False, "torch.compile the model (GPU only; decode uses CUDA graphs)"),
)
prefill_wl = workload(
    "llm.prefill",
    "One forward over a batch of prompts (no cache): tokens/s and MFU",
    (*_MODEL_PARAMS, Param("batch", int, 1, "prompts per forward", preview=2),
     Param("prompt_len", int, 2048, "tokens per prompt", preview=16), *_TAIL_PARAMS),
)
decode_wl = workload(
    "llm.decode",
    "Greedy decode steps against a KV cache pre-filled to context_len: tokens/s, TPOT, MBU",
    (*_MODEL_PARAMS, Param("batch", int, 1, "sequences decoded together", preview=2),
     Param("context_len", int, 2048, "tokens already in each sequence's cache", preview=16),
     Param("new_tokens", int, 16, "decode steps per timed call", preview=2), *_TAIL_PARAMS),
)


# --- Formulas ---------------------------------------------------------------------------------


def attention_flops(args: ModelArgs, batch: int, q_len: int, start: int) -> int:
    """Attention FLOPs of `batch` rows of `q_len` new queries at positions start..start+q_len-1."""
    pairs = q_len * start + q_len * (q_len + 1) // 2  # query at position p attends p + 1 keys
    return 4 * args.n_layer * args.n_head * args.head_dim * batch * pairs


def prefill_flops(args: ModelArgs, batch: int, prompt_len: int) -> int:
    return 2 * matmul_params(args) * batch * prompt_len + attention_flops(args, batch, prompt_len, 0)


def decode_flops(args: ModelArgs, batch: int, context_len: int, steps: int) -> int:
    """`steps` one-token steps, the first at position context_len."""
    pairs_per_row = steps * context_len + steps * (steps + 1) // 2
    attn = 4 * args.n_layer * args.n_head * args.head_dim * batch * pairs_per_row
    return 2 * matmul_params(args) * batch * steps + attn


def decode_weight_bytes(args: ModelArgs, batch: int, dtype: torch.dtype) -> int:
    """Weights one decode step reads: all of them but the embedding table (only `batch` rows
    of it are gathered, ignored here) unless tied, where the table is lm_head. For MoE,
    min(E, batch * k) experts per layer: the most that batch * k routed tokens can touch
    (exact for batch 1; an upper bound when tokens share experts)."""
    params = param_count(args) - (0 if args.tie_embeddings else args.vocab_size * args.dim)
    if args.is_moe:
        unused = args.n_expert - min(args.n_expert, batch * args.n_expert_per_tok)
        params -= args.n_layer * unused * 3 * args.dim * args.intermediate_size
    return params * dtype.itemsize


def decode_bytes(args: ModelArgs, batch: int, context_len: int, steps: int, dtype: torch.dtype) -> int:
    """Bytes `steps` decode steps must move: weights once per step plus each row's K and V for
    positions 0..p at the step writing position p."""
    pairs_per_row = steps * context_len + steps * (steps + 1) // 2
    return steps * decode_weight_bytes(args, batch, dtype) + kv_cache_bytes(args, batch, 1, dtype) * pairs_per_row


# --- Shared helpers (also for llm_serve) --------------------------------------------------------


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def triton_available(device: torch.device) -> tuple[bool, str | None]:
    """Triton usable here and aibench.kernels providing attention and matmul."""
    ok, why = devices.triton_usable(device)
    if not ok:
        return ok, why
    try:
        kernels = importlib.import_module("aibench.kernels")
    except Exception as exc:  # an optional backend never breaks the listing
        return False, f"aibench.kernels is not importable: {exc}"
    missing = [name for name in ("attention", "matmul") if not hasattr(kernels, name)]
    return (False, f"aibench.kernels lacks {', '.join(missing)}") if missing else (True, None)


def build_model(p: dict[str, Any], device: torch.device, batch: int, max_seq: int,
                step_tokens: int) -> tuple[Transformer, str]:
    """The model of params `model`/`weights`/`dtype`/`seed` on `device`, after refusing (Unsupported)
    one whose weights + KV cache [batch x max_seq] + activations of `step_tokens` would not fit.
    Returns the model and where its weights came from ("random(seed=N)" or the folder)."""
    dtype = torch_dtype(p["dtype"])
    if p.get("compile") and device.type != "cuda":
        raise Unsupported("compile=true needs a CUDA GPU (torch.compile with CUDA graphs)")
    args = read_config(p["weights"]) if p["weights"] else ModelArgs.from_name(p["model"])
    if max_seq > args.block_size:
        # As llm.serve and vLLM's max_model_len: RoPE past the trained positions is not the model
        # the name promises, and a config's limit is what a deployment of it would enforce.
        raise UsageError(f"sequences need {max_seq} positions but model {args.name} supports {args.block_size} "
                         f"(max_position_embeddings); shorten the prompt or context")
    if args.sliding_window is not None and max_seq > args.sliding_window:
        # The model masks beyond the window (exact logits) but still computes full attention, unlike
        # the windowed kernels a serving engine runs: a time that would misstate the hardware.
        raise Unsupported(f"{args.name} uses sliding-window attention ({args.sliding_window} tokens), "
                          f"which aibench times only within the window; keep sequences within it")
    ensure_fits(args, batch, max_seq, dtype, device, extra_bytes=activation_bytes(args, step_tokens, dtype))
    if p["weights"]:
        return from_pretrained(p["weights"], device, dtype), p["weights"]
    return random_model(args, device, dtype, seed=p["seed"]), f"random(seed={p['seed']})"


@torch.no_grad()
def prefill_cache(model: Transformer, prompt: torch.Tensor, slots: torch.Tensor | None = None,
                  max_tokens: int = PREFILL_CHUNK_TOKENS) -> None:
    """Write prompt [B, C] into the cache (row b -> slots[b], positions 0..C-1), with at most
    `max_tokens` tokens per forward so that the discarded logits stay small."""
    B, C = prompt.shape
    slots = slots if slots is not None else torch.arange(B, device=prompt.device)
    chunk = min(C, max_tokens)
    rows = max(1, max_tokens // chunk)
    for r in range(0, B, rows):
        n = min(rows, B - r)
        for s in range(0, C, chunk):
            e = min(C, s + chunk)
            pos = torch.arange(s, e, device=prompt.device).expand(n, e - s)
            model(prompt[r : r + n, s:e], input_pos=pos, slots=slots[r : r + n])


def check_positions(seq: int, count: int = _CHECK_POSITIONS) -> list[int]:
    """Up to `count` positions spread over 0..seq-1, the first and last included."""
    n = min(count, seq)
    return sorted({round(i * (seq - 1) / max(n - 1, 1)) for i in range(n)})


def _positive(p: dict[str, Any], *names: str) -> None:
    for name in names:
        if p[name] < 1:
            raise UsageError(f"{name} must be >= 1, got {p[name]}")


def _details(model: Transformer, source: str, p: dict[str, Any], backend: str) -> dict[str, Any]:
    a = model.args
    return {"model": a.name, "weights": source, "params": param_count(a), "matmul_params": matmul_params(a),
            "attn_backend": backend, "matmul_backend": backend, "compile": bool(p["compile"]),
            "flop_formula": "2*matmul_params*tokens + 4*layers*heads*head_dim*attended_pairs"}


# --- llm.prefill --------------------------------------------------------------------------------


def _prefill_case(p: dict[str, Any], device: torch.device, backend: str) -> Case:
    _positive(p, "batch", "prompt_len")
    B, S = p["batch"], p["prompt_len"]
    model, source = build_model(p, device, B, S, step_tokens=B * S)
    args, dtype = model.args, torch_dtype(p["dtype"])
    gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)
    tokens = torch.randint(0, args.vocab_size, (B, S), device=device, generator=gen)
    model.set_backends(backend, backend)
    forward: Callable[..., torch.Tensor] = torch.compile(model, dynamic=False) if p["compile"] else model
    rows, sel = min(B, _CHECK_ROWS), check_positions(S)

    def fn() -> torch.Tensor:
        with torch.no_grad():
            return forward(tokens)

    # MoE checks teacher-force the routing (record_routing): a near-tie that rounding flips
    # would otherwise fail a correct model. The tape is Python state: run those eagerly.
    run = model if args.is_moe else forward

    def check() -> Check:
        with torch.no_grad():
            if backend == "torch":  # against the same weights in fp64 plain math
                with record_routing(model) as tape:
                    out = run(tokens[:rows])[:, sel]
                routing = [torch.cat(calls) for calls in tape] if args.is_moe else None
                return compare(out, reference_logits(model, tokens[:rows], sel, routing=routing), tolerance_for(dtype))
            model.set_backends("torch", "torch")  # the triton backend against torch's logits
            with record_routing(model) as tape:
                ref = model(tokens)[:, sel]
            model.set_backends(backend, backend)
            with replay_routing(model, tape):
                out = run(tokens)[:, sel]
            return compare(out, ref, tolerance_for(dtype))

    flops = prefill_flops(args, B, S)
    spec = devices.spec_for(device)
    peak = spec.peak_for(p["dtype"]) if spec else None

    def metrics(median_s: float) -> dict[str, float]:
        out = {"tokens_per_s": B * S / median_s}
        if peak:
            out["mfu_pct"] = 100.0 * flops / median_s / 1e12 / peak
        return out

    # MoE prefill groups tokens per expert (a host sync), which CUDA graphs cannot capture.
    no_mfu = {} if peak else {"mfu_pct": devices.no_peak_reason(device, spec, f"{p['dtype']} TFLOP/s")}
    return Case(fn=fn, check=check, flops=flops, bytes=None, work={"tokens": B * S}, dtype=p["dtype"],
                metrics=metrics, unavailable=no_mfu, cuda_graph_ok=not (p["compile"] or args.is_moe),
                details={**_details(model, source, p, backend), "batch": B, "prompt_len": S})


@prefill_wl.backend("torch", baseline=True, description="F.linear + SDPA (flash), eager or torch.compile")
def _prefill_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _prefill_case(p, device, "torch")


@prefill_wl.backend("triton", available=triton_available, description="aibench.kernels matmul + attention")
def _prefill_triton(p: dict[str, Any], device: torch.device) -> Case:
    return _prefill_case(p, device, "triton")


# --- llm.decode ---------------------------------------------------------------------------------


def _decode_case(p: dict[str, Any], device: torch.device, backend: str) -> Case:
    _positive(p, "batch", "context_len", "new_tokens")
    if p["compile"] and backend == "triton":
        # Its attention groups rows by cache length on the host (one sync a step): a compiled
        # step would break there and leave reduce-overhead's CUDA graphs in pieces.
        raise Unsupported("compile=true decodes with the torch backend only: the triton backend "
                          "syncs with the host every step; run it with compile=false")
    B, C, N = p["batch"], p["context_len"], p["new_tokens"]
    model, source = build_model(p, device, B, C + N, step_tokens=PREFILL_CHUNK_TOKENS)
    args, dtype = model.args, torch_dtype(p["dtype"])
    model.setup_cache(B, C + N)
    gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)
    prompt = torch.randint(0, args.vocab_size, (B, C), device=device, generator=gen)
    first = torch.randint(0, args.vocab_size, (B, 1), device=device, generator=gen)
    prefill_cache(model, prompt)  # torch kernels: the same cache contents for both backends
    model.set_backends(backend, backend)
    positions = [torch.full((B, 1), C + i, device=device, dtype=torch.long) for i in range(N)]
    step: Callable[..., torch.Tensor] = (
        torch.compile(model, mode="reduce-overhead", dynamic=False) if p["compile"] else model)

    def fn() -> torch.Tensor:
        # Each call rewrites positions C..C+N-1: the cache never grows between calls.
        tok = first
        with torch.no_grad():
            for pos in positions:
                tok = step(tok, input_pos=pos)[:, -1].argmax(dim=-1, keepdim=True)  # greedy, on device
        return tok

    rows = min(B, _CHECK_ROWS)
    run = model if args.is_moe else step  # as in prefill: MoE checks teacher-force the routing

    def check() -> Check:
        with torch.no_grad():
            if backend == "torch":  # cached decode vs a full fp64 forward over prompt + token
                full = torch.cat([prompt[:rows], first[:rows]], dim=1)
                if not args.is_moe:
                    out = step(first, input_pos=positions[0])[:rows].clone()
                    return compare(out, reference_logits(model, full, [C]), tolerance_for(dtype))
                with record_routing(model) as tape:  # re-prefill the checked rows in one call, then decode
                    model(prompt[:rows], input_pos=torch.arange(C, device=device).expand(rows, C),
                          slots=torch.arange(rows, device=device))
                    out = model(first, input_pos=positions[0])[:rows]
                k = args.n_expert_per_tok
                routing = [torch.cat([pre.view(rows, C, k), dec.view(B, 1, k)[:rows]], dim=1).flatten(0, 1)
                           for pre, dec in tape]
                return compare(out, reference_logits(model, full, [C], routing=routing), tolerance_for(dtype))
            model.set_backends("torch", "torch")
            with record_routing(model) as tape:
                ref = model(first, input_pos=positions[0]).clone()
            model.set_backends(backend, backend)
            with replay_routing(model, tape):
                out = run(first, input_pos=positions[0])
            return compare(out, ref, tolerance_for(dtype))

    nbytes = decode_bytes(args, B, C, N, dtype)
    spec = devices.spec_for(device)
    peak_bw = spec.bandwidth_gbps if spec else None

    def metrics(median_s: float) -> dict[str, float]:
        gbps = nbytes / median_s / 1e9
        out = {"tokens_per_s": B * N / median_s, "tpot_s": median_s / N, "effective_bandwidth_gbps": gbps}
        if peak_bw:  # unknown device: no MBU at all, never 0
            out["mbu_pct"] = 100.0 * gbps / peak_bw
        return out

    # Graph-capturable only without host syncs: the triton path reads positions on the host,
    # MoE beyond E / k tokens groups them per expert; compile's reduce-overhead has its own graphs.
    syncs = backend == "triton" or (args.is_moe and B * args.n_expert_per_tok > args.n_expert)
    no_mbu = {} if peak_bw else {"mbu_pct": devices.no_peak_reason(device, spec, "memory bandwidth")}
    return Case(fn=fn, check=check, flops=decode_flops(args, B, C, N), bytes=nbytes, work={"tokens": B * N},
                dtype=p["dtype"], metrics=metrics, unavailable=no_mbu, cuda_graph_ok=not (p["compile"] or syncs),
                details={**_details(model, source, p, backend), "batch": B, "context_len": C, "new_tokens": N,
                         "byte_formula": "steps*weight_bytes + kv_bytes_per_position*attended_positions"})


@decode_wl.backend("torch", baseline=True, description="F.linear + grouped-query matmul attention over the cache")
def _decode_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _decode_case(p, device, "torch")


@decode_wl.backend("triton", available=triton_available, description="aibench.kernels matmul + split-KV attention")
def _decode_triton(p: dict[str, Any], device: torch.device) -> Case:
    return _decode_case(p, device, "triton")
