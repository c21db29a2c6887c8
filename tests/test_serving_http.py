"""`aibench serve` (tiny model, a real subprocess on 127.0.0.1) driven by the serving client over
real HTTP: completions and chat, streamed and not, Poisson arrivals, a concurrency cap, a sweep."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from aibench.cli import cli
from aibench.serving import client, launch
from aibench.serving.datasets import prefix_prompts, random_prompts
from aibench.serving.metrics import Goodput
from tests.serving_helpers import aibench_server


@pytest.fixture(scope="module")
def server() -> Iterator[launch.Server]:
    with aibench_server() as s:
        yield s


def _config(server: launch.Server, n: int = 6, **kw) -> client.BenchConfig:
    prompts = tuple(random_prompts(n, 12, 5, 512, seed=1))
    return client.BenchConfig(server.url, "tiny", prompts, **kw)


def test_models_and_health(server: launch.Server) -> None:
    assert client.list_models(server.url) == ["tiny"]
    assert server.record()["engine"] == "aibench" and server.record()["engine_version"]


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("stream", [True, False])
def test_every_request_completes_with_usage_counts(server: launch.Server, api: str, stream: bool) -> None:
    result = client.run(_config(server, api=api, stream=stream, warmup_requests=1))
    assert result.failures() == {} and result.warmup_failed == 0
    for o in result.outcomes:
        assert o.success and o.output_tokens == 5 and len(o.generated_text) == 5  # one character per token
        assert len(o.chunk_times_s) == (5 if stream else 1)  # one SSE chunk per token when streamed
        assert o.sent_s <= o.chunk_times_s[0] and list(o.chunk_times_s) == sorted(o.chunk_times_s)
        if api == "completions":
            assert o.prompt_len == 12  # the server's usage.prompt_tokens, a token-id prompt sent as is
        else:
            assert o.prompt_len > 12  # chat text ("user: ..\nassistant:") in byte tokens
    m, _ = result.metrics(Goodput(ttft_s=60.0))
    assert m["completed"] == 6 and m["total_output_tokens"] == 30 and m["goodput_rps"] == m["request_throughput_rps"]
    assert m["ttft_p99_s"] >= m["ttft_median_s"] > 0
    # Not streamed, the whole body is one chunk: TTFT = E2EL and TPOT 0, as vLLM computes them.
    assert (m["tpot_mean_s"] > 0) == stream and (m["ttft_mean_s"] == pytest.approx(m["e2el_mean_s"])) != stream


def test_served_tokens_are_the_in_process_engines(server: launch.Server) -> None:
    # The server decodes with aibench's engine: its text is the in-process greedy tokens of the same
    # model (same seed), served alone.
    from aibench.models import serve
    from aibench.models.arrivals import Request
    from aibench.models.config import ModelArgs
    from aibench.models.loader import random_model
    from aibench.serving.server import ByteTokenizer

    p = random_prompts(1, 12, 6, 512, seed=4)[0]
    result = client.run(client.BenchConfig(server.url, "tiny", (p,)))
    model = random_model(ModelArgs.from_name("tiny"), seed=0)
    model.setup_cache(1, 32)
    alone = serve.Engine(model, max_batch=1, max_seq=32).generate_alone(Request(0, 0.0, p.prompt, p.output_len))
    tok = ByteTokenizer(512)
    assert result.outcomes[0].generated_text == "".join(tok.decode_one(t) for t in alone.tokens)


def test_poisson_arrivals_and_a_concurrency_cap(server: launch.Server) -> None:
    poisson = client.run(_config(server, n=8, request_rate=40.0, seed=3))
    sends = [o.sent_s for o in poisson.outcomes]
    assert poisson.failures() == {} and sends == sorted(sends) and sends[-1] > 0.1  # spread out, not all at t=0
    capped = client.run(_config(server, n=8, max_concurrency=2))
    m, _ = capped.metrics()
    assert m["completed"] == 8 and m["max_concurrent_requests"] <= 2
    free, _ = client.run(_config(server, n=8)).metrics()
    assert free["max_concurrent_requests"] > 2  # without the cap more run at once


def test_shared_prefix_prompts(server: launch.Server) -> None:
    prompts = tuple(prefix_prompts(4, 10, 3, 4, 512, num_prefixes=2))
    result = client.run(client.BenchConfig(server.url, "tiny", prompts, max_concurrency=2))
    assert result.failures() == {} and {o.prompt_len for o in result.outcomes} == {13}


def test_serve_bench_cli_sweep_gives_one_result_per_level(server: launch.Server) -> None:
    out = CliRunner().invoke(cli, ["serve-bench", "--endpoint", server.url, "--concurrency", "1,2,4",
                                   "--num-prompts", "4", "--input-len", "8", "--output-len", "3", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["max_concurrency"] for r in rows] == [1, 2, 4]
    for r in rows:
        assert r["model"] == "tiny" and r["metrics"]["completed"] == 4 and r["failures"] == {}
        assert r["metrics"]["max_concurrent_requests"] <= r["max_concurrency"]
        assert len(r["requests"]) == 4 and all(len(q["chunk_times_s"]) == 3 for q in r["requests"])
    bad = CliRunner().invoke(cli, ["serve-bench", "--endpoint", server.url, "--concurrency", "0"])
    assert bad.exit_code == 2 and "levels must be >= 1" in bad.output


def test_bad_requests_get_400_and_a_reason(server: launch.Server) -> None:
    too_long = random_prompts(1, 120, 20, 512)  # 140 positions > --max-seq 128
    result = client.run(client.BenchConfig(server.url, "tiny", tuple(too_long)))
    (o,) = result.outcomes
    assert not o.success and o.error.startswith("HTTP 400") and "max_seq" in o.error
    wrong = client.run(client.BenchConfig(server.url, "other-model", tuple(random_prompts(1, 4, 2, 512))))
    assert "not served here" in wrong.outcomes[0].error
    assert math.isinf(client.BenchConfig(server.url, "tiny", tuple(too_long)).request_rate)
