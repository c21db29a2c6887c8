"""The serving client's pure parts: vLLM bench-serve metrics on hand-computed timestamps, the SSE
parser on split and odd streams, the send schedule, the datasets."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from aibench.core.errors import UsageError
from aibench.serving import metrics as sm
from aibench.serving.datasets import as_text, prefix_prompts, random_prompts, sharegpt_prompts
from aibench.serving.outcome import RequestOutcome
from aibench.serving.schedule import RampUp, send_times
from aibench.serving.sse import SSEParser

# A: sent at 0, tokens at 0.1, 0.2, 0.4 (3 tokens by usage); B: sent at 0.5, one token at 0.7; C failed.
A = RequestOutcome(0, True, 0.0, (0.1, 0.2, 0.4), prompt_len=10, output_tokens=3, reasoning_tokens=1)
B = RequestOutcome(1, True, 0.5, (0.7,), prompt_len=5, output_tokens=1, reasoning_tokens=0)
C = RequestOutcome(2, False, 0.6, (), prompt_len=7, error="HTTP 500")


def test_metrics_match_hand_computed_values() -> None:
    m, why = sm.calculate([A, B, C], 1.0)
    approx = pytest.approx
    assert (m["completed"], m["failed"]) == (2, 1)
    assert m["total_input_tokens"] == 15 and m["total_output_tokens"] == 4  # the failed request counts nowhere
    assert m["request_throughput_rps"] == approx(2.0)
    assert m["output_tokens_per_s"] == approx(4.0) and m["total_tokens_per_s"] == approx(19.0)
    assert m["total_reasoning_tokens"] == 1
    # TTFT [0.1, 0.2]: mean 0.15, population std 0.05, p99 = 0.1 + 0.99 * 0.1 (numpy linear)
    assert (m["ttft_mean_s"], m["ttft_median_s"], m["ttft_std_s"]) == (approx(0.15), approx(0.15), approx(0.05))
    assert m["ttft_p99_s"] == approx(0.199) and m["ttft_p90_s"] == approx(0.19)
    # TPOT: A (0.4 - 0.1) / (3 - 1) = 0.15; B has one token: no TPOT sample
    assert m["tpot_mean_s"] == approx(0.15) and m["tpot_std_s"] == 0.0
    # ITL: A's gaps 0.1 and 0.2 (B has none)
    assert m["itl_mean_s"] == approx(0.15) and m["itl_p99_s"] == approx(0.199)
    # E2EL: A 0.4, B 0.2
    assert m["e2el_mean_s"] == approx(0.3) and m["e2el_std_s"] == approx(0.1)
    assert m["interactivity_tok_s_user"] == approx(1 / 0.15)
    assert m["max_concurrent_requests"] == 1  # [0, 0.4) and [0.5, 0.7) never overlap
    assert "goodput_rps" not in m and why["goodput_rps"] == "no SLO given"


def test_goodput_counts_requests_meeting_every_slo() -> None:
    approx = pytest.approx
    m, _ = sm.calculate([A, B, C], 2.0, sm.Goodput(ttft_s=0.15))
    assert m["goodput_rps"] == approx(0.5) and m["slo_attainment"] == approx(0.5)  # only A's TTFT 0.1
    # TPOT bound 0.1: A's 0.15 fails; B's one token counts as TPOT 0 (vLLM) and meets it
    m, _ = sm.calculate([A, B], 1.0, sm.Goodput(tpot_s=0.1))
    assert m["goodput_rps"] == approx(1.0)
    m, _ = sm.calculate([A, B], 1.0, sm.Goodput(ttft_s=0.15, tpot_s=0.1))
    assert m["goodput_rps"] == 0.0  # A misses TPOT, B misses TTFT: a measured zero
    m, _ = sm.calculate([A, B], 1.0, sm.Goodput(e2el_s=0.4))  # slo >= value: A's 0.4 meets it
    assert m["goodput_rps"] == approx(2.0)
    with pytest.raises(ValueError):
        sm.Goodput(ttft_s=0.0)


def test_output_length_without_usage_and_unavailable_metrics() -> None:
    no_usage = RequestOutcome(0, True, 0.0, (0.1, 0.3), prompt_len=4, generated_text="a b c")
    m, _ = sm.calculate([no_usage], 1.0)
    assert m["total_output_tokens"] == 2  # one token per token-bearing chunk
    m, _ = sm.calculate([no_usage], 1.0, count_tokens=lambda s: len(s.split()))
    assert m["total_output_tokens"] == 3 and m["tpot_mean_s"] == pytest.approx(0.1)
    m, why = sm.calculate([B], 1.0)
    assert "tpot_mean_s" not in m and "itl_mean_s" not in m and "interactivity_tok_s_user" in why
    m, why = sm.calculate([C], 1.0)
    assert m["completed"] == 0 and "ttft_mean_s" not in m and why["ttft_mean_s"] == "no request completed"
    with pytest.raises(ValueError):
        sm.calculate([A], 0.0)


def test_sse_parser_reassembles_events_split_anywhere() -> None:
    stream = (': ping\r\n\r\ndata: {"a": 1}\r\n\r\nevent: x\ndata: l1\ndata:l2\n\ndata: [DONE]\n\n'
              "data: é\n\n").encode()
    whole = SSEParser().feed(stream)
    assert [(e.event, e.data) for e in whole] == [("message", '{"a": 1}'), ("x", "l1\nl2"), ("message", "[DONE]"),
                                                   ("message", "é")]
    for cut in range(1, len(stream)):  # every split point, the CRLF and the two UTF-8 bytes of é included
        p = SSEParser()
        assert p.feed(stream[:cut]) + p.feed(stream[cut:]) == whole, cut
    p = SSEParser()
    assert p.feed(b"data: {\"half") == [] and p.partial


def test_schedule_follows_vllm() -> None:
    assert send_times(4, math.inf) == [0.0] * 4
    t = send_times(200, 10.0, seed=1)
    assert t == sorted(t) and t[-1] == pytest.approx(20.0)  # rescaled so the last send is N / rate
    assert t != send_times(200, 10.0, seed=2) and t == send_times(200, 10.0, seed=1)
    regular = send_times(5, 2.0, burstiness=math.inf)
    assert regular == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    # Burstiness < 1 gives more variable gaps than Poisson at the same mean rate.
    gaps = lambda ts: [b - a for a, b in itertools.pairwise(ts)]  # noqa: E731
    cv = lambda g: (sum((x - sum(g) / len(g)) ** 2 for x in g) / len(g)) ** 0.5 / (sum(g) / len(g))  # noqa: E731
    assert cv(gaps(send_times(2000, 10, 0.25, seed=3))) > 1.5 > cv(gaps(send_times(2000, 10, 1.0, seed=3))) > 0.8
    ramp = RampUp.parse("linear:1:3")
    assert ramp is not None and [ramp.rate(i, 3) for i in range(3)] == [1.0, 2.0, 3.0]
    assert send_times(3, 99.0, burstiness=math.inf, ramp_up=ramp) == pytest.approx([1.0, 1.5, 1.5 + 1 / 3])
    assert RampUp.parse("exponential:1:4").rate(1, 3) == pytest.approx(2.0)
    for bad in ("linear:1", "sine:1:2", "linear:0:2"):
        with pytest.raises(UsageError):
            RampUp.parse(bad)


def test_datasets(tmp_path) -> None:
    r = random_prompts(5, 10, 4, 50, range_ratio=0.5, seed=0)
    assert all(5 <= p.prompt_len <= 15 and len(p.prompt) == p.prompt_len and 2 <= p.output_len <= 6 for p in r)
    assert all(0 <= t < 50 for p in r for t in p.prompt)
    fixed = random_prompts(3, 8, 4, 50)
    assert {(p.prompt_len, p.output_len) for p in fixed} == {(8, 4)}
    pre = prefix_prompts(4, 6, 3, 2, 50, num_prefixes=2)
    assert pre[0].prompt[:6] == pre[2].prompt[:6] != pre[1].prompt[:6] and pre[0].prompt[6:] != pre[2].prompt[6:]
    assert len(as_text((1, 2, 700)).split()) == 3
    f = tmp_path / "sg.json"
    f.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "a b c d"}]},
        {"conversations": [{"from": "human", "value": "only one turn"}]},
    ]))
    sg = sharegpt_prompts(f, 3, count_tokens=lambda s: len(s.split()))
    assert [(p.prompt, p.prompt_len, p.output_len) for p in sg] == [("hello there", 2, 4)] * 3
    assert sharegpt_prompts(f, 1, output_len=7)[0].output_len == 7
    with pytest.raises(UsageError, match="tokenizer"):
        sharegpt_prompts(f, 1)
    f.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        sharegpt_prompts(f, 1, output_len=1)
