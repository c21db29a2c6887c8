"""`aibench serve` (aibench's engine over OpenAI-compatible HTTP) and `aibench serve-bench` (the
serving client against any endpoint, once, without a run directory unless asked)."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from aibench.cli.common import CliUsageError, console, device_option, print_json


@click.command("serve")
@click.option("--model", default="tiny", show_default=True, help="Named model configuration (random weights).")
@click.option("--weights", default="", help="A Hugging Face checkpoint folder instead of random weights.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="KV-cache slots (requests decoded at once).")
@click.option("--max-seq", type=int, default=256, show_default=True, help="Positions per slot (prompt + output).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16", "bfloat16"]))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@device_option
def serve_command(model: str, weights: str, host: str, port: int, max_batch: int, max_seq: int, dtype: str,
                  seed: int, device_spec: str) -> None:
    """Serve aibench's engine as an OpenAI-compatible HTTP server.

    \b
    Example:
      aibench serve --model tiny --port 8000 --device cpu
    """
    import asyncio

    from aibench.serving.server import build, serve_forever

    if not 0 <= port < 65536:
        raise CliUsageError(f"--port {port}: expected 0..65535")
    app, online, describe = build(model, weights, device_spec, dtype, max_batch, max_seq, seed)
    online.start()

    def ready(url: str) -> None:
        # The line a launcher or a test waits for (stderr, flushed: stdout may be a pipe).
        click.echo(f"aibench serve: {describe()} listening on {url}", err=True)
        sys.stderr.flush()

    try:
        asyncio.run(serve_forever(app, host, port, ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    finally:
        online.stop()


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliUsageError(f"--concurrency {text!r}: expected integers separated by commas") from None
    if not levels or any(v < 1 for v in levels):
        raise CliUsageError(f"--concurrency {text!r}: levels must be >= 1")
    return levels


@click.command("serve-bench")
@click.option("--endpoint", required=True, help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000.")
@click.option("--model", default="", help="Model name to ask for (default: the first of /v1/models).")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions", show_default=True)
@click.option("--stream/--no-stream", default=True, show_default=True, help="Stream tokens (SSE).")
@click.option("--num-prompts", type=int, default=16, show_default=True)
@click.option("--input-len", type=int, default=32, show_default=True, help="Random prompt tokens.")
@click.option("--output-len", type=int, default=16, show_default=True, help="Tokens to generate (EOS ignored).")
@click.option("--vocab-size", type=int, default=512, show_default=True, help="Range of the random token ids.")
@click.option("--request-rate", type=float, default=math.inf, help="Requests/s (default inf: all at once).")
@click.option("--burstiness", type=float, default=1.0, show_default=True, help="Gamma shape (1: Poisson).")
@click.option("--concurrency", default="", help="Max concurrency, or a sweep '1,4,16' (one result per level).")
@click.option("--warmup", "warmup_requests", type=int, default=1, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True, help="Seconds per request.")
@click.option("--slo-ttft-ms", type=float, default=None, help="Goodput SLO on TTFT.")
@click.option("--slo-tpot-ms", type=float, default=None, help="Goodput SLO on TPOT.")
@click.option("--slo-e2el-ms", type=float, default=None, help="Goodput SLO on E2EL.")
@click.option("--json", "json_", is_flag=True, help="Print the results as JSON.")
def serve_bench_command(endpoint: str, model: str, api: str, stream: bool, num_prompts: int, input_len: int,
                        output_len: int, vocab_size: int, request_rate: float, burstiness: float, concurrency: str,
                        warmup_requests: int, timeout_s: float, slo_ttft_ms: float | None,
                        slo_tpot_ms: float | None, slo_e2el_ms: float | None, json_: bool) -> None:
    """Benchmark an OpenAI-compatible endpoint once (vLLM `bench serve` metrics).

    \b
    Example:
      aibench serve-bench --endpoint http://127.0.0.1:8000 --concurrency 1,2,4 --json
    """
    from aibench.serving import client
    from aibench.serving.datasets import random_prompts
    from aibench.serving.metrics import Goodput

    levels: list[int | None] = list(_levels(concurrency)) if concurrency else [None]
    if num_prompts < 1:
        raise CliUsageError(f"--num-prompts {num_prompts}: expected >= 1")
    try:
        goodput = Goodput(*(None if v is None else v / 1e3 for v in (slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)))
    except ValueError as exc:
        raise CliUsageError(str(exc)) from None
    if not model:
        models = client.list_models(endpoint)
        if not models:
            raise click.ClickException(f"{endpoint} serves no model (/v1/models is empty)")
        model = models[0]
    prompts = tuple(random_prompts(num_prompts, input_len, output_len, vocab_size))
    results: list[dict[str, Any]] = []
    for level in levels:
        config = client.BenchConfig(endpoint, model, prompts, api=api, stream=stream, request_rate=request_rate,
                                    burstiness=burstiness, max_concurrency=level,
                                    warmup_requests=warmup_requests, request_timeout_s=timeout_s)
        result = client.run(config)
        results.append({"endpoint": endpoint, "model": model, "api": api, "stream": stream,
                        "max_concurrency": level, "request_rate": request_rate,
                        **client.summary(result, goodput), "requests": client.outcomes_table(result.outcomes)})
    if json_:
        print_json(results if len(results) > 1 else results[0])
        return
    for r in results:
        m = r["metrics"]
        console.print(f"[bold]{r['model']}[/bold] @ {r['endpoint']} concurrency={r['max_concurrency'] or 'inf'}: "
                      f"{int(m['completed'])} ok, {int(m['failed'])} failed, "
                      f"{m['request_throughput_rps']:.2f} req/s, {m['output_tokens_per_s']:.1f} out tok/s")
        for name in ("ttft", "tpot", "itl", "e2el"):
            if f"{name}_mean_s" in m:
                console.print(f"  {name.upper():5s} mean {m[f'{name}_mean_s'] * 1e3:8.2f} ms  median "
                              f"{m[f'{name}_median_s'] * 1e3:8.2f}  p99 {m[f'{name}_p99_s'] * 1e3:8.2f}")
        for reason, n in r["failures"].items():
            console.print(f"  [red]{n} failed: {reason}[/red]")
