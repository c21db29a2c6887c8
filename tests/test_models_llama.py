"""The compact Llama model: shapes, RoPE scaling numbers, cache semantics, MoE routing, sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aibench.core.errors import Unsupported
from aibench.models import (
    CONFIGS,
    ModelArgs,
    RopeScaling,
    Transformer,
    ensure_fits,
    estimate_bytes,
    kv_cache_bytes,
    param_count,
    random_model,
    reference_logits,
)
from aibench.models.llama import (
    MoEFeedForward,
    apply_rotary_emb,
    precompute_freqs_cis,
    rope_inv_freq,
)
from aibench.models.memory import matmul_params
from aibench.models.reference import record_routing, replay_routing


def _has_triton_kernels() -> bool:
    try:
        from aibench.kernels import attention, matmul  # noqa: F401
    except ImportError:
        return False
    return True


# --- Configs and sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [  # published parameter counts of the real checkpoints
        ("llama-3.1-8b", 8_030_261_248),
        ("llama-3.1-70b", 70_553_706_496),
        ("llama-3.1-405b", 405_853_388_800),
        ("mixtral-8x7b", 46_702_792_704),
        ("qwen2.5-7b", 7_615_616_512),
    ],
)
def test_named_configs_have_the_published_parameter_counts(name: str, params: int) -> None:
    assert param_count(ModelArgs.from_name(name)) == params


def test_from_name_derives_fields_and_rejects_bad_shapes() -> None:
    a = ModelArgs.from_name("LLAMA-3.1-8B")
    assert (a.head_dim, a.n_kv_head, a.name) == (128, 8, "llama-3.1-8b")
    assert ModelArgs(dim=256, n_head=4).n_kv_head == 4
    assert ModelArgs(dim=768, n_head=12).intermediate_size == 2048  # 2/3 * 4 * 768 rounded to 256
    with pytest.raises(ValueError, match="unknown model"):
        ModelArgs.from_name("gpt-5")
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        ModelArgs(dim=64, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="not divisible"):
        ModelArgs(dim=65, n_head=4)
    with pytest.raises(ValueError, match="attn_backend"):
        ModelArgs(attn_backend="cuda")
    with pytest.raises(ValueError, match="n_expert_per_tok"):
        ModelArgs(dim=64, n_head=4, n_expert=2, n_expert_per_tok=3)
    with pytest.raises(ValueError, match="high_freq_factor"):
        RopeScaling(low_freq_factor=4.0, high_freq_factor=1.0)
    assert set(CONFIGS) >= {"tiny", "tiny-moe", "llama-3.1-8b", "mixtral-8x7b", "qwen2.5-7b"}


def test_sizes_are_exact_arithmetic() -> None:
    a = ModelArgs.from_name("tiny")  # V 512, D 64, 2 layers, 4 heads, 2 kv heads, hd 16, I 160
    per_layer = 64 * (4 + 2 * 2) * 16 + 4 * 16 * 64 + 3 * 64 * 160 + 2 * 64
    assert param_count(a) == 2 * per_layer + 2 * 512 * 64 + 64
    assert matmul_params(a) == 2 * (64 * 8 * 16 + 64 * 64 + 3 * 64 * 160) + 512 * 64
    assert kv_cache_bytes(a, 3, 100, torch.bfloat16) == 2 * 2 * 3 * 2 * 100 * 16 * 2
    assert estimate_bytes(a, 3, 100, torch.float32) == param_count(a) * 4 + kv_cache_bytes(a, 3, 100, torch.float32)
    moe = ModelArgs.from_name("tiny-moe")  # 4 experts, top 2, I 96
    assert matmul_params(moe) == 2 * (64 * 8 * 16 + 64 * 64 + 64 * 4 + 2 * 3 * 64 * 96) + 512 * 64
    assert matmul_params(moe, active=False) - matmul_params(moe) == 2 * 2 * 3 * 64 * 96
    tied = a.replace(tie_embeddings=True)
    assert param_count(a) - param_count(tied) == 512 * 64


def test_ensure_fits_refuses_with_the_numbers() -> None:
    a = ModelArgs.from_name("llama-3.1-70b")
    with pytest.raises(Unsupported, match=r"needs ~13\d\.\d GiB .* has 80\.0 GiB free"):
        ensure_fits(a, 1, 4096, torch.bfloat16, torch.device("cuda"), available=80 * 2**30)
    need = ensure_fits(ModelArgs.from_name("tiny"), 2, 64, torch.float32, torch.device("cpu"), available=2**30)
    assert need == estimate_bytes(ModelArgs.from_name("tiny"), 2, 64, torch.float32)


# --- RoPE -----------------------------------------------------------------------------------------


def test_llama3_rope_scaling_numbers() -> None:
    # Llama 3.1: base 500000, head_dim 128, factor 8, low 1, high 4, original context 8192.
    s = RopeScaling(8.0, 1.0, 4.0, 8192)
    plain = rope_inv_freq(128, 500000.0).double()
    scaled = rope_inv_freq(128, 500000.0, s).double()
    wavelen = 2 * math.pi / plain
    # wavelength < 8192 / 4 = 2048 keeps its frequency: indices 0..28 for these settings
    assert (wavelen[:29] < 2048).all() and wavelen[29] >= 2048
    assert torch.equal(scaled[:29], plain[:29])
    # wavelength > 8192 / 1 is slowed 8x: indices 35..63
    assert (wavelen[35:] > 8192).all() and wavelen[34] <= 8192
    torch.testing.assert_close(scaled[35:], plain[35:] / 8, rtol=1e-6, atol=0)
    # in between: blend (1 - s) * f / 8 + s * f with s = (8192 / wavelen - 1) / (4 - 1)
    smooth = (8192 / wavelen[29:35] - 1) / 3
    torch.testing.assert_close(scaled[29:35], (1 - smooth) * plain[29:35] / 8 + smooth * plain[29:35], rtol=1e-6, atol=0)
    assert scaled[0].item() == 1.0
    assert scaled[63].item() == pytest.approx(500000.0 ** (-126 / 128) / 8, rel=1e-6)


def test_rope_is_rotate_half_and_relative() -> None:
    a = ModelArgs.from_name("tiny")
    fc = precompute_freqs_cis(a, 40)  # [L, 2, D]
    assert fc.shape == (40, 2, 16) and fc.dtype == torch.float32
    x = torch.randn(1, 40, 3, 16)
    out = apply_rotary_emb(x, fc[None])
    cos, sin = fc[None, :, None, 0], fc[None, :, None, 1]
    torch.testing.assert_close(out, x * cos + torch.cat((-x[..., 8:], x[..., :8]), -1) * sin)
    # <rot(q, m), rot(k, n)> depends on m - n only
    q, k = torch.randn(16), torch.randn(16)

    def dot(m: int, n: int) -> float:
        qs = apply_rotary_emb(q.expand(1, 40, 1, 16), fc[None])[0, m, 0]
        ks = apply_rotary_emb(k.expand(1, 40, 1, 16), fc[None])[0, n, 0]
        return float(qs @ ks)

    assert dot(7, 3) == pytest.approx(dot(30, 26), rel=1e-4)


def test_rope_in_bf16_rounds_like_the_reference_implementation() -> None:
    """A bf16 model rotates in bf16 with cos/sin rounded to bf16 (HF's apply_rotary_pos_emb):
    each of the three products and the sum rounds once, so the result stays within a few bf16
    units (2^-8) of the exact rotation, and the output dtype is the input's."""
    fc = precompute_freqs_cis(ModelArgs.from_name("tiny"), 40)
    x = torch.randn(2, 40, 3, 16).bfloat16()
    out = apply_rotary_emb(x, fc[None])
    assert out.dtype == torch.bfloat16
    exact = apply_rotary_emb(x.double(), fc[None].double())
    err = (out.double() - exact).norm() / exact.norm()
    assert err < 3 * 2**-8


# --- Forward and cache ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forward_shapes_and_dtypes(dtype: torch.dtype) -> None:
    model = random_model(ModelArgs.from_name("tiny"), dtype=dtype, seed=1)
    logits = model(torch.randint(0, 512, (3, 11)))
    assert logits.shape == (3, 11, 512) and logits.dtype == dtype
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "args",
    [
        ModelArgs.from_name("tiny"),
        ModelArgs.from_name("tiny-moe"),
        ModelArgs.from_name("tiny", qkv_bias=True, tie_embeddings=True, n_kv_head=1, rope_scaling=None),
        ModelArgs.from_name("tiny", sliding_window=5),
    ],
    ids=["tiny", "tiny-moe", "bias-tied-mqa", "sliding-window"],
)
def test_forward_matches_fp64_reference(args: ModelArgs) -> None:
    model = random_model(args, seed=2)
    tokens = torch.randint(0, args.vocab_size, (2, 37))
    ref = reference_logits(model, tokens)
    torch.testing.assert_close(model(tokens).double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference_logits(model, tokens, [0, 36]), ref[:, [0, 36]])


def test_random_model_is_seeded_and_tied() -> None:
    a = ModelArgs.from_name("tiny", tie_embeddings=True)
    m1, m2, m3 = random_model(a, seed=5), random_model(a, seed=5), random_model(a, seed=6)
    assert torch.equal(m1.layers[0].attention.wqkv.weight, m2.layers[0].attention.wqkv.weight)
    assert not torch.equal(m1.layers[0].attention.wqkv.weight, m3.layers[0].attention.wqkv.weight)
    assert m1.output.weight is m1.tok_embeddings.weight
    assert torch.equal(m1.norm.weight, torch.ones(64))


@pytest.mark.parametrize("name", ["tiny", "tiny-moe"])
def test_cached_decode_matches_full_forward_per_row_positions_and_slots(name: str) -> None:
    model = random_model(ModelArgs.from_name(name), seed=3)
    tokens = torch.randint(0, 512, (3, 30))
    full = model(tokens)  # [3, 30, V]
    model.setup_cache(max_batch=5, max_seq=32)
    lens, slots = [4, 17, 9], [3, 0, 4]
    for row, (n, slot) in enumerate(zip(lens, slots)):  # each row prefilled alone, in two chunks
        half = n // 2
        model(tokens[row : row + 1, :half], input_pos=torch.arange(half)[None], slots=torch.tensor([slot]))
        out = model(tokens[row : row + 1, half:n], input_pos=torch.arange(half, n)[None], slots=torch.tensor([slot]))
        torch.testing.assert_close(out, full[row : row + 1, half:n], atol=1e-5, rtol=1e-5)
    for i in range(5):  # batched decode, every row at its own position and slot
        step = torch.stack([tokens[r, n] for r, n in enumerate(lens)])[:, None]
        # Odd steps bound the keys read by the longest row (a serving engine's kv_len): same logits.
        kv_len = max(lens) + 1 if i % 2 else None
        out = model(step, input_pos=torch.tensor(lens)[:, None], slots=torch.tensor(slots), kv_len=kv_len)
        expected = torch.stack([full[r, n] for r, n in enumerate(lens)])[:, None]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        lens = [n + 1 for n in lens]
    with pytest.raises(ValueError, match="kv_len must be in"):
        model(step, input_pos=torch.tensor(lens)[:, None], slots=torch.tensor(slots), kv_len=33)


def test_decode_step_and_prefill_compile_as_one_graph() -> None:
    """llm.decode's compile=true (gpt-fast's way to MBU: Inductor fuses the ~50 small kernels a
    layer runs eagerly) needs the whole step in one graph. fullgraph=True turns any graph break
    into an error; aot_eager traces exactly as Inductor would, without its slow codegen."""
    import torch._dynamo

    model = random_model(ModelArgs.from_name("tiny"), seed=5)
    model.setup_cache(max_batch=2, max_seq=48)
    prompt, tok = torch.randint(0, 512, (2, 20)), torch.randint(0, 512, (2, 1))
    with torch.no_grad():
        eager_prefill = model(prompt)
        model(prompt, input_pos=torch.arange(20).expand(2, 20))
        eager_step = model(tok, input_pos=torch.full((2, 1), 20))
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(prompt), eager_prefill, atol=0, rtol=0)
        torch.testing.assert_close(compiled(tok, input_pos=torch.full((2, 1), 20)), eager_step, atol=0, rtol=0)
        # Stricter than fullgraph, which captures a tensor-to-int (.item()) as an unbacked scalar:
        # that is a device sync in every step, which would split reduce-overhead's CUDA graph.
        torch._dynamo.reset()
        explained = torch._dynamo.explain(model)(tok, input_pos=torch.full((2, 1), 20))
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_cache_with_default_slots_and_bf16_cache() -> None:
    model = random_model(ModelArgs.from_name("tiny"), seed=4)
    tokens = torch.randint(0, 512, (2, 12))
    full = model(tokens)
    model.setup_cache(2, 16)
    model(tokens[:, :11], input_pos=torch.arange(11).expand(2, 11))
    out = model(tokens[:, 11:], input_pos=torch.full((2, 1), 11))
    torch.testing.assert_close(out, full[:, 11:], atol=1e-5, rtol=1e-5)
    model.setup_cache(2, 16, dtype=torch.bfloat16)  # a cache in another dtype than the weights
    assert model.layers[0].attention.kv_cache.k_cache.shape == (2, 2, 16, 16)
    model(tokens[:, :11], input_pos=torch.arange(11).expand(2, 11))
    out = model(tokens[:, 11:], input_pos=torch.full((2, 1), 11))
    torch.testing.assert_close(out, full[:, 11:], atol=0.05, rtol=0.05)


def test_a_moved_cache_slot_decodes_as_it_did_in_its_old_slot() -> None:
    """move_cache_slot (the serving engine keeps running requests in slots 0..B-1): a request
    prefilled into slot 3 and moved to slot 0 decodes on as the full forward says."""
    model = random_model(ModelArgs.from_name("tiny"), seed=5)
    tokens = torch.randint(0, 512, (1, 12))
    full = model(tokens)
    model.setup_cache(max_batch=4, max_seq=16)
    model(tokens[:, :9], input_pos=torch.arange(9)[None], slots=torch.tensor([3]))
    model(torch.randint(0, 512, (1, 4)), input_pos=torch.arange(4)[None], slots=torch.tensor([0]))  # stale
    model.move_cache_slot(3, 0, 9)
    for n in range(9, 12):  # slots=None: row 0 is slot 0, read as a view
        out = model(tokens[:, n : n + 1], input_pos=torch.tensor([[n]]))
        torch.testing.assert_close(out, full[:, n : n + 1], atol=1e-5, rtol=1e-5)


def test_cache_usage_errors() -> None:
    model = random_model(ModelArgs.from_name("tiny"))
    tok = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="setup_cache"):
        model(tok, input_pos=torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="without input_pos"):
        model(tok, slots=torch.tensor([0, 1]))
    model.setup_cache(1, 8)
    with pytest.raises(ValueError, match="max_batch"):
        model(tok, input_pos=torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="input_pos must be"):
        model(tok, input_pos=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="slots must be"):
        model(tok, input_pos=torch.zeros(2, 1, dtype=torch.long), slots=torch.tensor([0]))
    with pytest.raises(ValueError, match="max_batch > 0"):
        model.setup_cache(0, 8)
    with pytest.raises(ValueError, match="attn_backend"):
        model.set_backends(attn="cuda")


# --- Mixture of experts -------------------------------------------------------------------------------


def test_moe_routes_each_token_to_its_top_k_experts() -> None:
    args = ModelArgs.from_name("tiny-moe")
    ff = random_model(args, seed=7).layers[0].feed_forward
    assert isinstance(ff, MoEFeedForward)
    x = torch.randn(3, 5, 64)

    def naive(t: torch.Tensor) -> torch.Tensor:  # token by token, Mixtral's softmax-then-renormalise
        probs = F.softmax(t @ ff.gate.weight.T, dim=-1)
        top, idx = probs.topk(2)
        out = torch.zeros(64)
        for w, e in zip((top / top.sum()).tolist(), idx.tolist()):
            out += w * (F.silu(t @ ff.w1[e].T) * (t @ ff.w3[e].T)) @ ff.w2[e].T
        return out

    expected = torch.stack([naive(t) for t in x.reshape(-1, 64)]).view_as(x)
    torch.testing.assert_close(ff(x), expected, atol=1e-5, rtol=1e-5)  # grouped path (15 * 2 > 4 experts)
    torch.testing.assert_close(ff(x[:1, :2]), expected[:1, :2], atol=1e-5, rtol=1e-5)  # gathered path
    with record_routing(random_model(args)) as empty_tape:
        pass
    assert len(empty_tape) == 2 and empty_tape[0] == []


def test_routing_record_and_replay() -> None:
    model = random_model(ModelArgs.from_name("tiny-moe"), seed=8)
    tokens = torch.randint(0, 512, (2, 6))
    with record_routing(model) as tape:
        out = model(tokens)
    assert len(tape) == 2 and tape[0][0].shape == (12, 2)
    gate_logits = model.layers[0].feed_forward.gate(model.layers[0].ffn_norm(torch.zeros(1, 64)))
    assert gate_logits.shape == (1, 4)
    forced = [[torch.flip(calls[0], dims=[-1])] for calls in tape]  # same experts, other order
    with replay_routing(model, forced):
        torch.testing.assert_close(model(tokens), out, atol=1e-6, rtol=1e-6)
    other = [[(calls[0] + 1) % 4] for calls in tape]  # different experts change the output
    with replay_routing(model, other):
        assert not torch.allclose(model(tokens), out, atol=1e-3)
    with replay_routing(model, [[] for _ in tape]), pytest.raises(ValueError, match="no recorded"):
        model(tokens)
    assert model.layers[0].feed_forward.routing is None  # the context restored the layers
    ref = reference_logits(model, tokens, routing=[torch.cat(c) for c in tape])
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


# --- Triton backend -------------------------------------------------------------------------------------


def test_sliding_window_through_the_cache_and_the_triton_refusal() -> None:
    window = 6
    model = random_model(ModelArgs.from_name("tiny", sliding_window=window), seed=4)
    tokens = torch.randint(0, 512, (2, 15))
    full = model(tokens)  # [2, 15, V], masked beyond the window
    unwindowed = random_model(ModelArgs.from_name("tiny"), seed=4)(tokens)
    assert torch.equal(full[:, :window], unwindowed[:, :window])  # within the window: the same model
    assert not torch.allclose(full[:, window:], unwindowed[:, window:], atol=1e-3)
    model.setup_cache(max_batch=2, max_seq=16)
    out = [model(tokens[:, :4], input_pos=torch.arange(4).expand(2, 4))]
    out += [model(tokens[:, t : t + 1], input_pos=torch.full((2, 1), t)) for t in range(4, 15)]
    torch.testing.assert_close(torch.cat(out, dim=1), full, atol=1e-5, rtol=1e-5)
    model.set_backends(attn="triton")
    with pytest.raises(ValueError, match="no sliding window: 15 keys exceed the model's window of 6"):
        model(tokens)
    model.setup_cache(max_batch=2, max_seq=16)
    model(tokens[:, :window], input_pos=torch.arange(window).expand(2, window))  # within it: allowed
    with pytest.raises(ValueError, match="no sliding window: 7 keys"):
        model(tokens[:, window : window + 1], input_pos=torch.full((2, 1), window))
    with pytest.raises(ValueError, match="sliding_window must be > 0"):
        ModelArgs.from_name("tiny", sliding_window=0)


@pytest.mark.skipif(not _has_triton_kernels(), reason="aibench.kernels.attention/matmul not importable yet")
def test_triton_backends_match_torch_with_cache() -> None:
    model = random_model(ModelArgs.from_name("tiny"), seed=9)
    tokens = torch.randint(0, 512, (2, 9))
    ref = model(tokens)
    model.set_backends("triton", "triton")
    assert model.args.attn_backend == "triton" and model.output.backend == "triton"
    torch.testing.assert_close(model(tokens), ref, atol=1e-5, rtol=1e-5)
    model.setup_cache(3, 12)
    for row, (n, slot) in enumerate(zip([5, 8], [2, 0])):
        model(tokens[row : row + 1, :n], input_pos=torch.arange(n)[None], slots=torch.tensor([slot]))
    step = torch.stack([tokens[0, 5], tokens[1, 8]])[:, None]
    out = model(step, input_pos=torch.tensor([[5], [8]]), slots=torch.tensor([2, 0]))
    torch.testing.assert_close(out, torch.stack([ref[0, 5], ref[1, 8]])[:, None], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="consecutive"):
        model(tokens[:1, :2], input_pos=torch.tensor([[0, 2]]))


def test_from_name_builds_a_module() -> None:
    model = Transformer.from_name("tiny")
    assert sum(p.numel() for p in model.parameters()) == param_count(model.args)
