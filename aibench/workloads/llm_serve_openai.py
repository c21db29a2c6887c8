"""`llm.serve` backend `openai`: the same serving benchmark against any OpenAI-compatible server.

The server is `endpoint` (already running), or the `engine` aibench starts (aibench's own
`aibench serve`, vLLM or SGLang; aibench.serving.launch), reused by consecutive cases with the same
engine and arguments, as a suite's concurrency sweep runs one case per point. The client
(aibench.serving.client) sends the prompts at the request rate (gamma gaps, `burstiness`, an
optional ramp-up) up to `max_concurrency`, after `warmup_requests`; metrics are vLLM `bench
serve`'s (aibench.serving.metrics) from the per-chunk timestamps, token counts from `usage`.

The check: one request must return exactly `output_len` tokens by `usage` (the client sets
ignore_eos) and, for a token-id prompt, `usage.prompt_tokens` equal to its length: a server that
truncates or ignores max_tokens would make every throughput wrong. Energy is measured over the run
itself (`Case.energy_of_run`): one telemetry window around the measured requests, per output token
they generated (`telemetry.per_unit.j_per_token`); without telemetry the record says why, no number.
Failed requests (an HTTP error, a malformed stream, a timeout, the server gone) are counted with
their reasons in the record; a run where none completed fails with those reasons.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aibench.core.checks import Check
from aibench.core.errors import Unsupported, UsageError, WorkloadError
from aibench.measure.case import Case, CustomMeasurement, EnergyWindow, no_window
from aibench.workloads.llm_serve import SWEEP_WAVES, serve_wl


def _available(_device: torch.device) -> tuple[bool, str | None]:
    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        return False, f"the serving client needs aiohttp: {exc}"
    return True, None


def _count_tokens(path: str) -> Any:
    if not path:
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise Unsupported(f"tokenizer={path!r} needs the tokenizers package: {exc}") from None
    try:
        tok = Tokenizer.from_file(path)
    except Exception as exc:
        raise UsageError(f"cannot load tokenizer {path!r}: {exc}") from None
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _vocab_size(model: str) -> int:
    from aibench.models.config import ModelArgs

    try:
        return ModelArgs.from_name(model).vocab_size
    except ValueError:
        return 1000  # token ids below 1000 exist in every real tokenizer's vocabulary


def _prompts(p: dict[str, Any], n: int, count_tokens: Any, seed: int) -> list[Any]:
    from aibench.models.arrivals import make_requests
    from aibench.serving import datasets

    if p["sharegpt"]:
        return datasets.sharegpt_prompts(p["sharegpt"], n, output_len=p["output_len"] if not count_tokens else 0,
                                         count_tokens=count_tokens, seed=seed)
    vocab = _vocab_size(p["model"])
    if p["prefix_len"] > 0:
        suffix = max(0, p["input_len"] - p["prefix_len"])
        return datasets.prefix_prompts(n, p["prefix_len"], suffix, p["output_len"], vocab,
                                       num_prefixes=p["num_prefixes"], seed=seed)
    # Random token ids with llm.serve's lengths (fixed, a uniform range, or a lengths file), so both
    # backends of one entry send the same shapes.
    reqs = make_requests(n, vocab_size=vocab, input_len=p["input_len"], output_len=p["output_len"],
                         input_len_max=p["input_len_max"] or None, output_len_max=p["output_len_max"] or None,
                         dataset=p["dataset"] or None, seed=seed)
    return [datasets.Prompt(r.id, r.prompt, r.input_len, r.output_len) for r in reqs]


def _validate(p: dict[str, Any]) -> None:
    if bool(p["endpoint"]) == bool(p["engine"]):
        raise Unsupported("the openai backend needs exactly one of endpoint=URL (a running server) or "
                          "engine=aibench|vllm|sglang (started here)")
    if p["num_requests"] < 1 or p["warmup_requests"] < 0 or p["max_concurrency"] < 0 or p["num_gpus"] < 1:
        raise UsageError("num_requests >= 1, warmup_requests >= 0, max_concurrency >= 0, num_gpus >= 1")
    for name in ("slo_ttft_ms", "slo_tpot_ms"):
        if not p[name] > 0:
            raise UsageError(f"{name}: an SLO must be a positive time in ms, got {p[name]}")
    if p["slo_e2el_ms"] < 0:
        raise UsageError(f"slo_e2el_ms must be >= 0 (0: none), got {p['slo_e2el_ms']}")


@serve_wl.backend("openai", available=_available,
                  description="any OpenAI-compatible server over HTTP (endpoint=URL, or engine=aibench|vllm|sglang)")
def _serve_openai(p: dict[str, Any], device: torch.device) -> Case:
    from aibench.models.serve import parse_levels
    from aibench.serving import client, launch
    from aibench.serving import metrics as sm
    from aibench.serving.schedule import RampUp

    _validate(p)
    ramp = RampUp.parse(p["ramp_up"])
    count_tokens = _count_tokens(p["tokenizer"])
    prompts = tuple(_prompts(p, p["num_requests"], count_tokens, p["seed"]))
    levels = parse_levels(p["concurrency_sweep"])
    cap = p["max_concurrency"] or None
    goodput = sm.Goodput(p["slo_ttft_ms"] / 1e3, p["slo_tpot_ms"] / 1e3, (p["slo_e2el_ms"] / 1e3) or None)
    model_name = p["engine_model"] or p["model"]
    engine_info: dict[str, Any]
    if p["engine"]:
        ok, why = launch.installed(p["engine"])
        if not ok:
            raise Unsupported(why or "engine not installed")
        args = p["engine_args"]
        if p["engine"] == "aibench" and device.type == "cpu" and "--device" not in args:
            args = f"{args} --device cpu".strip()  # aibench serve on the case's device
        server = launch.shared(p["engine"], model_name, args, timeout_s=p["engine_timeout_s"])
        base_url, engine_info = server.url, server.record()
    else:
        base_url, engine_info, server = p["endpoint"], {"engine": "external", "url": p["endpoint"]}, None

    def config(ps: tuple[Any, ...], concurrency: int | None, warmup: int, rate: float = math.inf,
               ramp_up: RampUp | None = None) -> client.BenchConfig:
        return client.BenchConfig(base_url, model_name, ps, api=p["api"], stream=p["stream"], request_rate=rate,
                                  burstiness=p["burstiness"], ramp_up=ramp_up, max_concurrency=concurrency,
                                  warmup_requests=warmup, request_timeout_s=p["request_timeout_s"], seed=p["seed"])

    def check() -> Check:
        probe = prompts[0]
        (o,) = client.run(config((probe,), None, 0)).outcomes
        if not o.success:
            return Check(False, detail=f"the probe request failed: {o.error.splitlines()[0] if o.error else '?'}")
        if o.output_tokens != probe.output_len:
            return Check(False, detail=f"asked for {probe.output_len} tokens (ignore_eos), usage says {o.output_tokens}")
        if isinstance(probe.prompt, tuple) and p["api"] == "completions" and o.prompt_len != probe.prompt_len:
            return Check(False, detail=f"sent {probe.prompt_len} prompt tokens, usage says {o.prompt_len}")
        return Check(True, detail=f"usage: {o.prompt_len} prompt and {o.output_tokens} completion tokens, as sent")

    def not_called() -> None:  # energy_of_run: the runner measures the run itself, never fn
        raise RuntimeError("llm.serve (openai) is measured over its own run; Case.fn is not called")

    def measure(_timer_config: Any, window: EnergyWindow = no_window) -> CustomMeasurement:
        # The warm-up first, on its own: inside the energy window its tokens would be energy with
        # no tokens counted against it.
        warm = client.run(config((prompts[0],) * p["warmup_requests"], cap, 0)) if p["warmup_requests"] else None
        result = window(lambda: client.run(config(prompts, cap, 0, p["request_rate"], ramp)))
        metrics, unavailable = result.metrics(goodput, p["num_gpus"], count_tokens)
        failures = result.failures()
        if metrics["completed"] == 0:
            died = server is not None and not server.alive()
            raise WorkloadError(("the engine died; " if died else "") + "no request completed: "
                                + "; ".join(f"{n} x {why}" for why, n in failures.items()))
        metrics["tokens_per_s"] = metrics["output_tokens_per_s"]
        details: dict[str, Any] = {
            "failures": failures, "warmup_requests": p["warmup_requests"],
            "warmup_failed": sum(1 for o in warm.outcomes if not o.success) if warm is not None else 0,
            "slo": goodput.as_dict(), "requests": client.outcomes_table(result.outcomes),
        }
        if server is not None:
            details["engine_alive_after_run"] = server.alive()
        if count_tokens is not None:
            ok = [o for o in result.outcomes if o.success and o.output_tokens is not None]
            diffs = [abs(count_tokens(o.generated_text) - o.output_tokens) for o in ok]
            details["tokenizer_check"] = {"requests": len(ok), "mismatched": sum(1 for d in diffs if d),
                                          "max_abs_diff": max(diffs, default=0)}
        if levels:
            rows = []
            for level in levels:
                ps = tuple(_prompts(p, SWEEP_WAVES * level, count_tokens, p["seed"] + 1))
                r = client.run(config(ps, level, 0))
                m, _ = r.metrics(goodput, p["num_gpus"], count_tokens)
                rows.append({"concurrency": level, "failed": int(m["failed"]),
                             **{k: m.get(k) for k in ("throughput_per_gpu_tokens_per_s", "interactivity_tok_s_user",
                                                      "output_tokens_per_s", "request_throughput_rps",
                                                      "ttft_p50_s", "tpot_mean_s")}})
            details["concurrency_sweep"] = rows
        samples = [o.latency_s for o in result.outcomes if o.success]
        # Energy per token is per generated token of the measured requests (the rate the report
        # costs is output tokens/s); a run whose window read no energy says so in its telemetry.
        return CustomMeasurement(samples, metrics, details, unavailable,
                                 work={"tokens": metrics["total_output_tokens"]})

    return Case(
        fn=not_called,
        check=check,
        measure=measure,
        energy_of_run=True,
        details={"client": "aibench.serving (vLLM bench serve metrics)", "api": p["api"], "stream": p["stream"],
                 "model": model_name, "max_concurrency": cap, "num_gpus": p["num_gpus"],
                 "dataset": ("sharegpt" if p["sharegpt"] else "prefix" if p["prefix_len"] else
                             "lengths file" if p["dataset"] else "random"),
                 "energy": "one telemetry window over the measured requests (after the warm-up, before any "
                           "concurrency_sweep points)", **engine_info},
        cuda_graph_ok=False,
    )
