"""`llm.serve`: online LLM serving measured in-process (vLLM `bench serve` metrics, methods.md).

Requests arrive at a request rate (gamma gaps, `burstiness` 1 = Poisson; `inf` = all at once),
up to a client max-concurrency, and are served by aibench.models.serve.Engine: continuous
batching over the model's static KV cache, greedy decoding, random weights (fixed seed) or a
Hugging Face checkpoint (`weights=DIR`).
The case measures itself (`Case.measure`): its samples are per-request end-to-end latencies and
its metrics TTFT / TPOT / ITL / E2EL statistics, throughputs and goodput under the SLOs
(aibench.models.serving_metrics). Energy is measured over the run itself (`Case.energy_of_run`):
one telemetry window around the measured requests, per output token they generated.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from aibench.core.checks import tolerance_for
from aibench.core.errors import Unsupported, UsageError
from aibench.core.serving_stats import distribution_keys
from aibench.device import devices
from aibench.measure.case import Case, CustomMeasurement, EnergyWindow, Param, no_window
from aibench.models import serve
from aibench.models import serving_metrics as sm
from aibench.models.arrivals import Request, make_requests, max_total_len
from aibench.workloads.registry import workload

_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Without an explicit max_batch the cache gets one slot per concurrent request, at most 256
# slots (InferenceX's sweep tops out at 256 users per GPU; methods.md).
AUTO_MAX_BATCH = 256
# Warm-up requests (excluded from metrics): they trigger lazy initialisation, kernel selection
# and allocator growth; a few tokens each are enough for that.
WARMUP_REQUESTS, WARMUP_TOKENS = 2, 16
# Each concurrency level of a sweep serves this many "waves" of `level` requests at rate inf, so
# that most of the run is at full concurrency rather than ramping up or down.
SWEEP_WAVES = 4
# The batching check: three requests with different prompt lengths (rows at different cache
# positions), a few generated tokens each, served together and then alone.
CHECK_REQUESTS, CHECK_TOKENS = 3, 8

PARAMS = (
    Param("model", str, "llama-3.1-8b", "named model configuration (aibench.models.config)", preview="tiny"),
    Param("num_requests", int, 128, "requests measured (after the warm-up)", preview=8),
    Param("request_rate", float, math.inf, "requests per second, or inf to send all at t=0"),
    Param("burstiness", float, 1.0, "gamma shape of the arrival gaps: 1 Poisson, <1 burstier"),
    Param("max_concurrency", int, 32, "most requests in flight (0: no cap)", preview=4),
    Param("max_batch", int, 0, "KV-cache slots (0: the concurrency, at most 256)"),
    Param("input_len", int, 1024, "prompt tokens (the minimum when input_len_max is set)", preview=16),
    Param("output_len", int, 256, "generated tokens (the minimum when output_len_max is set)", preview=8),
    Param("input_len_max", int, 0, "draw prompt lengths uniformly up to this (0: fixed)"),
    Param("output_len_max", int, 0, "draw output lengths uniformly up to this (0: fixed)"),
    Param("dataset", str, "", "JSON Lines or CSV file of input_len,output_len pairs (overrides lengths)"),
    Param("slo_ttft_ms", float, 2000.0, "goodput SLO on time to first token (ms)"),
    Param("slo_tpot_ms", float, 100.0, "goodput SLO on time per output token (ms)"),
    Param("concurrency_sweep", str, "", "concurrency levels for the InferenceX curve, e.g. '1,4,16,64'",
          preview="1,2"),
    Param("dtype", str, "bfloat16", "weights, activations and KV cache", choices=tuple(_DTYPES), preview="float32"),
    Param("weights", str, "", "Hugging Face checkpoint folder (config.json + safetensors); '' = random weights"),
    Param("seed", int, 0, "seed of the weights, prompts, lengths and arrivals"),
    # The `openai` backend (aibench/workloads/llm_serve_openai.py): an OpenAI-compatible server over HTTP.
    Param("endpoint", str, "", "openai backend: base URL of a running OpenAI-compatible server"),
    Param("engine", str, "", "openai backend: start this server first", choices=("", "aibench", "vllm", "sglang")),
    Param("engine_model", str, "", "openai backend: model the engine loads and requests name (default: model)"),
    Param("engine_args", str, "", "openai backend: extra engine arguments (shell words)"),
    Param("engine_timeout_s", float, 900.0, "openai backend: seconds to wait for the engine's /health"),
    Param("api", str, "completions", "openai backend: endpoint", choices=("completions", "chat")),
    Param("stream", bool, True, "openai backend: stream tokens (SSE)"),
    Param("sharegpt", str, "", "openai backend: ShareGPT-format JSON file of prompts"),
    Param("prefix_len", int, 0, "openai backend: shared-prefix prompts with this many shared tokens (0: off)"),
    Param("num_prefixes", int, 1, "openai backend: distinct shared prefixes"),
    Param("tokenizer", str, "", "openai backend: tokenizer.json to count ShareGPT lengths and check usage"),
    Param("warmup_requests", int, 2, "openai backend: warm-up requests before the measured ones"),
    Param("ramp_up", str, "", "openai backend: request-rate ramp, STRATEGY:START:END (linear or exponential)"),
    Param("request_timeout_s", float, 600.0, "openai backend: seconds before a request counts as failed"),
    Param("slo_e2el_ms", float, 0.0, "goodput SLO on end-to-end latency (ms; 0: none)"),
    Param("num_gpus", int, 1, "GPUs behind the endpoint (throughput per GPU)"),
)

serve_wl = workload("llm.serve", "LLM online serving: TTFT, TPOT, ITL, throughput, goodput (continuous batching)",
                    PARAMS)


def _triton_usable(device: torch.device) -> tuple[bool, str | None]:
    try:
        from aibench.models.config import BACKENDS
    except ImportError as exc:
        return False, f"the LLM model is unavailable: {exc}"
    if "triton" not in BACKENDS:
        return False, "the model has no triton attention backend"
    return devices.triton_usable(device)


def _plan(p: dict[str, Any], vocab_size: int) -> tuple[list[Request], float, list[int], int]:
    """The measured requests, the concurrency cap, the sweep levels and the cache's batch."""
    if p["num_requests"] < 1:
        raise UsageError(f"num_requests must be >= 1, got {p['num_requests']}")
    if p["max_concurrency"] < 0 or p["max_batch"] < 0:
        raise UsageError("max_concurrency and max_batch must be >= 0 (0: automatic)")
    for name in ("slo_ttft_ms", "slo_tpot_ms"):
        if not p[name] > 0:  # goodput under a bound no request can meet would be a meaningless 0
            raise UsageError(f"{name}: an SLO must be a positive time in ms, got {p[name]}")
    requests = make_requests(
        p["num_requests"], vocab_size=vocab_size, input_len=p["input_len"], output_len=p["output_len"],
        input_len_max=p["input_len_max"] or None, output_len_max=p["output_len_max"] or None,
        dataset=p["dataset"] or None, rate=p["request_rate"], burstiness=p["burstiness"], seed=p["seed"],
    )
    cap = float(p["max_concurrency"]) if p["max_concurrency"] else math.inf
    levels = serve.parse_levels(p["concurrency_sweep"])
    wanted = max([min(cap, len(requests)), *levels])
    max_batch = p["max_batch"] or int(min(wanted, AUTO_MAX_BATCH))
    return requests, cap, levels, max_batch


def _sweep_requests(p: dict[str, Any], vocab_size: int, level: int) -> list[Request]:
    return make_requests(
        SWEEP_WAVES * level, vocab_size=vocab_size, input_len=p["input_len"], output_len=p["output_len"],
        input_len_max=p["input_len_max"] or None, output_len_max=p["output_len_max"] or None,
        dataset=p["dataset"] or None, seed=p["seed"] + 1,
    )


def _undefined(metrics: dict[str, float]) -> dict[str, str]:
    """TPOT and ITL are undefined when no request produced a second token: say so, per metric."""
    why = "undefined: no request produced more than one output token"
    keys = [*distribution_keys("tpot"), *distribution_keys("itl")]
    return {k: why for k in [*keys, "interactivity_tok_s_user"] if k not in metrics}


def _check_requests(requests: list[Request]) -> list[Request]:
    # At least two tokens each, so that the requests share a batched decode step (one-token
    # requests would only be prefilled, alone: a check that cannot fail); prompts trimmed so that
    # prompt + tokens stays within the measured requests' longest (except when that is under 3
    # positions: then 1 + 2), so the check does not enlarge the KV cache the measured run gets.
    longest = max_total_len(requests)
    tokens = max(2, min(CHECK_TOKENS, longest - 1))
    prompt = max(requests, key=lambda r: r.input_len).prompt
    n = max(1, min(len(prompt), longest - tokens))
    lengths = [n, max(1, n // 2), max(1, n // 3 - 1)]
    return [Request(i, 0.0, prompt[:length], tokens) for i, length in enumerate(lengths[:CHECK_REQUESTS])]


def _case(p: dict[str, Any], device: torch.device, attn_backend: str) -> Case:
    try:
        from aibench.models.config import ModelArgs
        from aibench.models.loader import from_pretrained, random_model, read_config
        from aibench.models.memory import activation_bytes, ensure_fits
    except ImportError as exc:
        raise Unsupported(f"the LLM model is unavailable: {exc}") from exc
    try:
        args = read_config(p["weights"]) if p["weights"] else ModelArgs.from_name(p["model"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dtype = _DTYPES[p["dtype"]]
    requests, cap, levels, max_batch = _plan(p, args.vocab_size)
    sweeps = {level: _sweep_requests(p, args.vocab_size, level) for level in levels}
    checks = _check_requests(requests)
    max_seq = max(max_total_len(r) for r in (requests, checks, *sweeps.values()))
    if max_seq > args.block_size:
        raise UsageError(f"requests need {max_seq} positions; model {args.name} supports {args.block_size}")
    if args.sliding_window is not None and max_seq > args.sliding_window:
        # As llm.decode: masked full attention past the window would misstate a windowed engine.
        raise Unsupported(f"{args.name} uses sliding-window attention ({args.sliding_window} tokens), "
                          f"which aibench serves only within the window; keep requests within it")
    # Weights + KV cache + the activations of the longest prefill must fit, else skip with numbers.
    longest = max(r.input_len for r in (*requests, *checks))
    ensure_fits(args, max_batch, max_seq, dtype, device, extra_bytes=activation_bytes(args, longest, dtype))

    if p["weights"]:
        model = from_pretrained(p["weights"], device, dtype)
    else:
        model = random_model(args, device=device, dtype=dtype, seed=p["seed"])
    model.set_backends(attn=attn_backend)  # the weights' matmuls stay on the vendor library
    model.setup_cache(max_batch, max_seq, device=device, dtype=dtype)
    engine = serve.Engine(model, max_batch=max_batch, max_seq=max_seq, device=device)
    slo = sm.SLO(ttft_s=p["slo_ttft_ms"] / 1e3, tpot_s=p["slo_tpot_ms"] / 1e3)
    warmup = [replace(r, id=i, arrival_s=0.0, output_len=min(r.output_len, WARMUP_TOKENS))
              for i, r in enumerate(requests[:WARMUP_REQUESTS])]

    def measure(_timer_config: Any, window: EnergyWindow = no_window) -> CustomMeasurement:
        # Self-timed: a fixed request set, not a timer loop (the timer config does not apply).
        engine.run(warmup)
        run = window(lambda: engine.run(requests, max_concurrency=cap))  # energy: the measured requests only
        serve.require_tokens(run, requests)
        metrics = run.metrics(slo)
        # The runner derives `tokens_per_s` from work / median sample, which for a serving run
        # (median = a request's latency) is meaningless: state the serving rate instead.
        metrics["tokens_per_s"] = metrics["output_tokens_per_s"]
        details: dict[str, Any] = {
            "slo": {"ttft_ms": p["slo_ttft_ms"], "tpot_ms": p["slo_tpot_ms"]},
            "decode_steps": run.decode_steps,
            "max_running": run.max_running,
            "warmup_requests": len(warmup),
        }
        if levels:
            points = serve.sweep_concurrency(engine, lambda level: sweeps[level], levels, slo)
            details["concurrency_sweep"] = sm.sweep_table(points)
        return CustomMeasurement([sm.e2el(t) for t in run.timings()], metrics, details, _undefined(metrics),
                                 work={"tokens": metrics["total_output_tokens"]})

    def not_called() -> None:  # energy_of_run: the runner measures the run itself, never fn
        raise RuntimeError("llm.serve is measured over its own run; Case.fn is not called")

    return Case(
        fn=not_called,
        check=lambda: serve.check_isolation(engine, checks, tie_tolerance=tolerance_for(dtype)),
        dtype=p["dtype"],
        measure=measure,
        energy_of_run=True,
        details={
            "model": args.name,
            "attn_backend": attn_backend,
            "max_batch": max_batch,
            "max_seq": max_seq,
            "max_concurrency": None if math.isinf(cap) else int(cap),
            "num_gpus": 1,
            "engine": "continuous batching, static KV cache, one prefill per request, greedy decoding",
            "weights": p["weights"] or f"random N(0, 0.02), seed {p['seed']}",
            "energy": "one telemetry window over the measured requests (after the warm-up, before any "
                      "concurrency_sweep points)",
        },
        # A serving step reads tokens back to the host (a sync) and the Triton path syncs to
        # group rows: neither can be captured in a CUDA graph.
        cuda_graph_ok=False,
    )


@serve_wl.backend("torch", baseline=True, description="PyTorch attention (SDPA / masked matmul) and F.linear")
def _serve_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, "torch")


@serve_wl.backend("triton", available=_triton_usable, description="Triton attention kernel, F.linear matmuls")
def _serve_triton(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, "triton")
