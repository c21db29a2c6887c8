"""The serving engine on a tiny stand-in transformer (same API as aibench.models.Transformer) and a
virtual clock, so every timestamp is known exactly; then the `llm.serve` workload end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aibench.core.errors import UsageError
from aibench.models import arrivals, serve
from aibench.models import serving_metrics as sm
from aibench.models.arrivals import Request
from aibench.workloads import llm_serve


class TinyLM(nn.Module):
    """A 2-layer causal transformer with a slotted KV cache: the contract of the real model."""

    def __init__(self, vocab: int = 61, dim: int = 32, heads: int = 2, layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.heads, self.hd, self.n_layers = heads, dim // heads, layers
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(256, dim)
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.head = nn.Linear(dim, vocab)
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def setup_cache(self, max_batch: int, max_seq: int, device: object = None, dtype: object = None) -> None:
        shape = (self.n_layers, max_batch, max_seq, self.heads, self.hd)
        self.k_cache, self.v_cache = torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None, slots: torch.Tensor | None = None,
        kv_len: int | None = None,
    ) -> torch.Tensor:
        assert self.k_cache is not None and self.v_cache is not None
        assert input_pos is not None
        b, s = tokens.shape
        slots = torch.arange(b) if slots is None else slots  # None: rows 0..B-1 (the contract)
        x = self.emb(tokens) + self.pos(input_pos)
        t = self.k_cache.shape[2]
        mask = torch.arange(t)[None, None, :] <= input_pos[:, :, None]  # [B, S, T]: causal by position
        for i in range(self.n_layers):
            q, k, v = self.qkv[i](x).view(b, s, 3, self.heads, self.hd).unbind(2)
            self.k_cache[i][slots[:, None], input_pos] = k
            self.v_cache[i][slots[:, None], input_pos] = v
            keys = self.k_cache[i][slots].transpose(1, 2)  # [B, H, T, hd]
            vals = self.v_cache[i][slots].transpose(1, 2)
            att = F.scaled_dot_product_attention(q.transpose(1, 2), keys, vals, attn_mask=mask[:, None])
            x = x + self.out[i](att.transpose(1, 2).reshape(b, s, -1))
        return self.head(x)

    def move_cache_slot(self, src: int, dst: int, length: int) -> None:
        assert self.k_cache is not None and self.v_cache is not None
        self.k_cache[:, dst, :length] = self.k_cache[:, src, :length]
        self.v_cache[:, dst, :length] = self.v_cache[:, src, :length]


class LeakyLM(TinyLM):
    """A broken cache: every row writes and reads slot 0."""

    def forward(self, tokens, input_pos=None, slots=None, kv_len=None):  # type: ignore[no-untyped-def]
        return super().forward(tokens, input_pos, torch.zeros(tokens.shape[0], dtype=torch.long))


class VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class Costed(nn.Module):
    """Advances the virtual clock by a fixed cost per forward: 8 ms prefill, 1 ms decode."""

    PREFILL, DECODE = 0.008, 0.001

    def __init__(self, inner: nn.Module, clock: VirtualClock) -> None:
        super().__init__()
        self.inner, self.clock = inner, clock

    def forward(self, tokens, input_pos=None, slots=None, kv_len=None):  # type: ignore[no-untyped-def]
        self.clock.t += self.PREFILL if tokens.shape[1] > 1 else self.DECODE
        return self.inner(tokens, input_pos=input_pos, slots=slots, kv_len=kv_len)

    def move_cache_slot(self, src: int, dst: int, length: int) -> None:
        self.inner.move_cache_slot(src, dst, length)


def _req(i: int, n_in: int, n_out: int, at: float = 0.0) -> Request:
    return Request(i, at, tuple((7 * i + j) % 61 for j in range(n_in)), n_out)


def _engine(max_batch: int, max_seq: int = 32, model: nn.Module | None = None) -> tuple[serve.Engine, VirtualClock]:
    clock = VirtualClock()
    inner = model or TinyLM()
    inner.setup_cache(max_batch, max_seq)
    eng = serve.Engine(
        Costed(inner, clock), max_batch=max_batch, max_seq=max_seq, device=torch.device("cpu"),
        clock=clock, sleep=clock.sleep,
    )
    return eng, clock


def test_continuous_batching_timeline() -> None:
    eng, _ = _engine(max_batch=2)
    run = eng.run([_req(0, 3, 3), _req(1, 2, 2), _req(2, 2, 1)])
    r0, r1, r2 = run.completions
    # r0 and r1 take both slots and are prefilled one after the other, then decode together;
    # r1 finishes at the first decode step and r2 takes its slot (its one token ends it).
    assert r0.token_times_s == pytest.approx((0.008, 0.017, 0.026))
    assert r1.token_times_s == pytest.approx((0.016, 0.017))
    assert r2.token_times_s == pytest.approx((0.025,))
    assert run.duration_s == pytest.approx(0.026)
    assert run.decode_steps == 2 and run.max_running == 2
    assert [len(c.tokens) for c in run.completions] == [3, 2, 1]
    m = run.metrics()
    assert m["ttft_p50_s"] == pytest.approx(0.016)
    assert m["output_tokens_per_s"] == pytest.approx(6 / 0.026)
    serve.require_tokens(run, [_req(0, 3, 3), _req(1, 2, 2), _req(2, 2, 1)])


def test_concurrency_cap_delays_the_send() -> None:
    eng, _ = _engine(max_batch=2)
    run = eng.run([_req(0, 2, 3), _req(1, 2, 2)], max_concurrency=1)
    r0, r1 = run.completions
    assert r0.token_times_s == pytest.approx((0.008, 0.009, 0.010))
    # r1 is sent when r0's last token frees the cap: its latency starts there (vLLM's semaphore).
    assert r1.sent_s == pytest.approx(0.010)
    assert r1.token_times_s == pytest.approx((0.018, 0.019))
    assert r1.timing().output_len == 2 and sm.ttft(r1.timing()) == pytest.approx(0.008)
    assert run.max_running == 1


def test_engine_waits_for_arrivals_and_queues_when_full() -> None:
    eng, clock = _engine(max_batch=1)
    run = eng.run([_req(0, 2, 2, at=0.0), _req(1, 2, 2, at=0.0), _req(2, 2, 2, at=1.0)])
    _, r1, r2 = run.completions
    assert r1.sent_s == 0.0 and r1.token_times_s[0] == pytest.approx(0.017)  # queued for the slot
    assert r2.sent_s == 1.0 and sm.ttft(r2.timing()) == pytest.approx(0.008)  # idle engine slept
    assert clock.t == pytest.approx(1.009)


def test_batched_tokens_equal_lone_tokens_with_slot_reuse() -> None:
    reqs = [_req(i, n_in, n_out) for i, (n_in, n_out) in enumerate([(5, 6), (2, 9), (7, 1), (3, 4), (9, 5)])]
    eng, _ = _engine(max_batch=3)
    check = serve.check_isolation(eng, reqs, tie_tolerance=1e-4)
    assert check.passed, check.detail
    batched = eng.run(reqs)
    assert batched.max_running == 3
    for c in batched.completions:
        assert c.tokens == eng.generate_alone(c.request).tokens


def test_decode_reads_dense_slots_and_a_move_that_skips_its_cache_fails() -> None:
    """Running requests hold slots 0..B-1 (a finished one's slot takes the highest running
    request, cache and all), so every decode step passes slots=None: a view, never a gather."""
    reqs = [_req(i, n_in, n_out) for i, (n_in, n_out) in enumerate([(5, 3), (2, 9), (7, 6), (3, 8)])]
    calls: list[tuple[int, object]] = []
    moves: list[tuple[int, int, int]] = []

    class Recording(TinyLM):
        def forward(self, tokens, input_pos=None, slots=None, kv_len=None):  # type: ignore[no-untyped-def]
            calls.append((tokens.shape[1], slots))
            return super().forward(tokens, input_pos, slots)

        def move_cache_slot(self, src: int, dst: int, length: int) -> None:
            moves.append((src, dst, length))
            super().move_cache_slot(src, dst, length)

    eng, _ = _engine(max_batch=3, model=Recording())
    batched = eng.run(reqs)
    assert all(slots is None for s, slots in calls if s == 1)  # every decode step: rows are slots
    assert moves and all(src > dst for src, dst, _ in moves)  # request 0 ended first, in slot 0
    for c in batched.completions:
        assert c.tokens == eng.generate_alone(c.request).tokens
    moves.clear()  # four requests ending in one step: none of them is moved (a dead cache copied)
    _engine(max_batch=4, model=Recording())[0].run([_req(i, 3, 5) for i in range(4)])
    assert moves == []

    class Forgetful(Recording):  # moves the slot's bookkeeping but not its cache
        def move_cache_slot(self, src: int, dst: int, length: int) -> None:
            pass

    eng, _ = _engine(max_batch=3, model=Forgetful())
    assert not serve.check_isolation(eng, reqs, tie_tolerance=1e-6).passed


def test_leaky_cache_fails_the_isolation_check() -> None:
    reqs = [_req(i, 4 + i, 6) for i in range(3)]
    eng, _ = _engine(max_batch=3, model=LeakyLM())
    check = serve.check_isolation(eng, reqs, tie_tolerance=1e-6)
    assert not check.passed
    assert "interfere" in (check.detail or "")


def test_margins_recorded_only_on_request() -> None:
    eng, _ = _engine(max_batch=2)
    assert eng.run([_req(0, 3, 3)]).completions[0].margins is None
    eng.record_margins = True
    margins = eng.run([_req(0, 3, 3)]).completions[0].margins
    assert margins is not None and len(margins) == 3 and all(m >= 0 for m in margins)


def test_sweep_concurrency() -> None:
    eng, _ = _engine(max_batch=4)

    def make(level: int) -> list[Request]:
        return [_req(i, 3, 4) for i in range(2 * level)]

    points = serve.sweep_concurrency(eng, make, [1, 4])
    assert [p.concurrency for p in points] == [1, 4]
    # More concurrent users: more total throughput, fewer tokens/s for each user.
    assert points[1].throughput_per_gpu_tokens_per_s > points[0].throughput_per_gpu_tokens_per_s
    assert points[0].interactivity_tok_s_user == pytest.approx(1 / 0.001)  # alone: 1 ms per token
    assert points[1].interactivity_tok_s_user < points[0].interactivity_tok_s_user
    with pytest.raises(UsageError):
        serve.sweep_concurrency(eng, make, [0])


def test_decode_step_fn() -> None:
    eng, _ = _engine(max_batch=3)
    out = eng.decode_step_fn(2)()
    assert out.shape == (2,)
    assert eng.decode_step_fn()().shape == (3,)


def test_parse_levels() -> None:
    assert serve.parse_levels("1, 4,16") == [1, 4, 16]
    assert serve.parse_levels("") == []
    for bad in ("1,x", "0,2"):
        with pytest.raises(UsageError):
            serve.parse_levels(bad)


def test_engine_errors() -> None:
    eng, _ = _engine(max_batch=2, max_seq=8)
    with pytest.raises(UsageError, match="cache"):
        eng.run([_req(0, 6, 3)])
    with pytest.raises(UsageError):
        eng.run([])
    with pytest.raises(UsageError):
        eng.run([_req(0, 2, 2)], max_concurrency=0)
    with pytest.raises(UsageError):
        serve.Engine(TinyLM(), max_batch=0, max_seq=8)


def test_requests_from_arrivals_run_on_the_real_clock() -> None:
    model = TinyLM()
    model.setup_cache(4, 24)
    eng = serve.Engine(model, max_batch=4, max_seq=24)
    reqs = arrivals.make_requests(6, vocab_size=61, input_len=3, output_len=4, output_len_max=8, rate=500.0, seed=1)
    run = eng.run(reqs, max_concurrency=3)
    serve.require_tokens(run, reqs)
    m = run.metrics()
    assert m["completed"] == 6 and m["output_tokens_per_s"] > 0 and math.isfinite(m["e2el_p99_s"])
    assert all(c.sent_s >= c.request.arrival_s for c in run.completions)


# -- the llm.serve workload on the real model (tiny config) ------------------------------------

def _setup(**overrides: object) -> tuple[object, dict]:
    params = llm_serve.serve_wl.resolve_params(overrides, preview=True)
    return llm_serve.serve_wl.get_backend("torch").setup(params, torch.device("cpu")), params


def test_workload_preview_check_and_measure() -> None:
    case, params = _setup(concurrency_sweep="1,3", num_requests=5)
    check = case.check()
    assert check.passed, check.detail
    result = case.measure(None)
    assert len(result.samples_s) == 5 and all(s > 0 for s in result.samples_s)
    m = result.metrics
    for key in ("ttft_p50_s", "tpot_mean_s", "itl_p99_s", "e2el_p90_s", "goodput_rps", "output_tokens_per_s",
                "total_tokens_per_s", "request_throughput_rps", "interactivity_tok_s_user"):
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["completed"] == 5 and m["total_output_tokens"] == 5 * params["output_len"]
    assert m["tokens_per_s"] == m["output_tokens_per_s"]
    assert [row["concurrency"] for row in result.details["concurrency_sweep"]] == [1, 3]
    assert result.details["slo"] == {"ttft_ms": 2000.0, "tpot_ms": 100.0}
    # max_batch follows the largest of the concurrency cap (4) and the sweep levels.
    assert case.details["max_batch"] == 4
    # Energy is the window over the measured requests, per token they generated; fn is never the window.
    assert case.energy_of_run and result.work == {"tokens": 5 * params["output_len"]}
    with pytest.raises(RuntimeError, match="measured over its own run"):
        case.fn()


def test_workload_dataset_lengths_and_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "lens.csv"
    data.write_text("input_len,output_len\n3,1\n9,4\n")
    case, _ = _setup(dataset=str(data), num_requests=3, request_rate=200.0, max_concurrency=0,
                     concurrency_sweep="")
    result = case.measure(None)
    assert result.metrics["total_output_tokens"] == 1 + 4 + 1
    assert "concurrency_sweep" not in result.details
    assert case.details["max_concurrency"] is None and case.details["max_batch"] == 3


def test_workload_rejects_requests_longer_than_the_model() -> None:
    with pytest.raises(UsageError, match="positions"):
        _setup(input_len=300)
    with pytest.raises(UsageError, match="unknown model"):
        _setup(model="no-such-model")


def test_workload_skips_a_model_that_cannot_fit() -> None:
    from aibench.core.errors import Unsupported

    with pytest.raises(Unsupported, match="GiB"):
        _setup(model="llama-3.1-405b")


def test_workload_through_the_runner() -> None:
    from aibench.workloads.run import run_workload

    outcomes = run_workload("llm.serve", {"num_requests": 3, "concurrency_sweep": ""}, torch.device("cpu"),
                            backends=["torch"])
    record = outcomes[0].record
    assert record.status == "ok", record.reason
    assert record.metrics["completed"] == 3 and record.correctness["passed"] is True


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gpu_serving_tiny(backend: str) -> None:
    params = llm_serve.serve_wl.resolve_params({"model": "tiny", "num_requests": 16, "concurrency_sweep": "1,8"})
    case = llm_serve.serve_wl.get_backend(backend).setup(params, torch.device("cuda"))
    check = case.check()
    assert check.passed, check.detail
    assert case.measure(None).metrics["completed"] == 16


def test_batching_check_decodes_even_when_requests_emit_one_token() -> None:
    # One-token requests never reach a batched decode step; the check must still batch its own
    # requests (or it compares lone prefills with lone prefills and cannot fail), without
    # growing the KV cache the measured requests get.
    case, params = _setup(output_len=1, concurrency_sweep="")
    check = case.check()
    assert check.passed, check.detail
    assert "max 3 at once" in (check.detail or "")
    assert case.details["max_seq"] == params["input_len"] + 1
    checks = llm_serve._check_requests(arrivals.make_requests(4, vocab_size=61, input_len=3, output_len=1))
    assert all(r.output_len >= 2 for r in checks)
    measured = case.measure(None)  # one token each: TPOT and ITL are undefined, and said to be
    assert "tpot_p99_s" not in measured.metrics and "itl_mean_s" not in measured.metrics
    assert measured.unavailable["tpot_p99_s"].startswith("undefined: no request produced more than one")
    assert "interactivity_tok_s_user" in measured.unavailable and "ttft_p99_s" not in measured.unavailable


@pytest.mark.parametrize("slo", [{"slo_ttft_ms": -1.0}, {"slo_tpot_ms": 0.0}])
def test_workload_rejects_slos_no_request_can_meet(slo: dict[str, float]) -> None:
    with pytest.raises(UsageError, match="SLO"):
        _setup(**slo)


def test_serving_a_checkpoint(tmp_path: Path) -> None:
    """`weights=DIR` serves a Hugging Face checkpoint (its config sets the vocabulary and the
    position limit), with the batching check passing."""
    from test_workload_llm import tiny_llama_checkpoint

    tiny_llama_checkpoint(tmp_path, max_position_embeddings=64)
    case, _ = _setup(weights=str(tmp_path), concurrency_sweep="", num_requests=4)
    assert case.check().passed and case.details["weights"] == str(tmp_path)
    assert case.measure(None).metrics["completed"] == 4
    with pytest.raises(UsageError, match="supports 64"):  # the checkpoint's own position limit
        _setup(weights=str(tmp_path), input_len=60, output_len=8)
