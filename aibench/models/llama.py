"""A compact Llama-family decoder (gpt-fast style): RMSNorm, RoPE, GQA, SwiGLU or MoE, static KV cache.

    model = Transformer(ModelArgs.from_name("tiny"))
    model.setup_cache(max_batch=4, max_seq=256)
    logits = model(tokens)                                   # plain causal forward, [B, S, V]
    logits = model(tokens, input_pos=pos, slots=slots)       # through the cache, row b -> slots[b]

RoPE uses Hugging Face's "rotate_half" layout (the two halves of a head are the pair, not
interleaved neighbours), so HF q/k weights load unpermuted. The rotation angles are computed
in fp32 as HF's LlamaRotaryEmbedding does, so an fp32 model reproduces HF logits.

Backends: `attn_backend` / `matmul_backend` "torch" (SDPA / F.linear) or "triton"
(aibench.kernels.attention / .matmul, imported lazily: a missing kernel raises Unsupported).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aibench.core.errors import Unsupported
from aibench.models.config import ModelArgs, RopeScaling
from aibench.models.hf_layout import hf_to_native


def _kernel(name: str) -> Any:
    """aibench.kernels.<name>, looked up at call time (the kernels are optional)."""
    try:
        return getattr(importlib.import_module("aibench.kernels"), name)
    except (ImportError, AttributeError) as exc:
        raise Unsupported(f"the triton backend needs aibench.kernels.{name}, which is unavailable: {exc}") from exc


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, backend: str = "torch") -> Tensor:
    """x @ weight.T (+ bias): F.linear, or the Triton matmul over the flattened tokens."""
    if backend == "torch":
        return F.linear(x, weight, bias)
    out = _kernel("matmul")(x.reshape(-1, x.shape[-1]), weight.t())  # [M, K] @ [K, N]
    out = out.view(*x.shape[:-1], weight.shape[0])
    return out + bias if bias is not None else out


class Linear(nn.Linear):
    """nn.Linear whose matmul backend can be switched (see Transformer.set_backends)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, backend: str = "torch") -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, self.backend)


# --- RoPE -------------------------------------------------------------------------------------


def llama3_scale_inv_freq(inv_freq: Tensor, s: RopeScaling) -> Tensor:
    """Llama 3.1 frequency scaling (HF `_compute_llama3_parameters`, same fp32 arithmetic).

    Wavelengths shorter than original_ctx / high_freq_factor keep their frequency; longer than
    original_ctx / low_freq_factor are slowed by `factor`; in between the two are blended by
    smooth = (original_ctx / wavelen - low) / (high - low).
    """
    old_ctx = s.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_ctx / s.low_freq_factor, inv_freq / s.factor, inv_freq)
    smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= old_ctx / s.high_freq_factor) & (wavelen <= old_ctx / s.low_freq_factor)
    return torch.where(medium, blended, scaled)


def rope_inv_freq(head_dim: int, base: float, scaling: RopeScaling | None = None) -> Tensor:
    """Inverse frequencies [head_dim / 2] in fp32, computed on the CPU as HF computes them."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    return llama3_scale_inv_freq(inv_freq, scaling) if scaling is not None else inv_freq


def precompute_freqs_cis(args: ModelArgs, seq_len: int, device: torch.device | str | None = None) -> Tensor:
    """cos and sin per position in rotate_half layout: [seq_len, 2, head_dim], fp32.

    Angles are fp32 products position * inv_freq, as in HF (not fp64): the same rounding.
    """
    inv_freq = rope_inv_freq(args.head_dim, args.rope_base, args.rope_scaling).to(device)
    t = torch.arange(seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # [L, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [L, D]
    return torch.stack((emb.cos(), emb.sin()), dim=1)


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """x [B, S, H, D], freqs_cis [B or 1, S, 2, D] (fp32 angles' cos/sin) -> x rotated, in x's dtype.

    As HF's apply_rotary_pos_emb: the fp32 cos and sin are rounded to x's dtype and the rotation
    computed in it (bf16 for a bf16 model), not in fp32: the same rounding as the reference
    implementation, and half the memory traffic of an fp32 detour over every q and k of a prefill.
    """
    cos = freqs_cis[:, :, None, 0].to(x.dtype)  # [B, S, 1, D]
    sin = freqs_cis[:, :, None, 1].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)  # rotate_half
    return x * cos + rotated * sin


# --- Blocks -----------------------------------------------------------------------------------


def visible_keys(query_pos: Tensor, key_pos: Tensor, window: int | None) -> Tensor:
    """Which keys each query sees [..., Sq, L]: causal, and with a sliding window only the last
    `window` positions, itself included (HF's masking_utils: kv_idx > q_idx - sliding_window)."""
    seen = key_pos <= query_pos[..., None]
    if window is not None:
        seen = seen & (key_pos > query_pos[..., None] - window)
    return seen


def _refuse_window(backend: str, keys: int, window: int | None) -> None:
    if backend == "triton" and window is not None and keys > window:
        raise ValueError(f"the triton attention backend has no sliding window: {keys} keys exceed the "
                         f"model's window of {window}; use the torch backend or a shorter sequence")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # HF order: normalise in fp32, cast back, then scale (matters in bf16/fp16). F.rms_norm
        # without a weight is exactly the first two steps (it upcasts to fp32 inside; bit-identical
        # to the spelled-out ops on a CPU), in one fused kernel where torch has one (aten's
        # _fused_rms_norm), instead of seven passes over fp32 copies of every activation.
        return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)


@dataclass(frozen=True)
class Span:
    """Rows [row0, row0 + rows) of a batch live in cache slots [slot0, slot0 + rows) and end at `end`."""

    row0: int
    rows: int
    slot0: int
    end: int


@dataclass(frozen=True)
class CacheView:
    """How one forward call uses the static cache (built once per call, shared by the layers)."""

    input_pos: Tensor  # [B, S] positions of the new tokens
    slot_index: Tensor  # [B, 1] cache slot of each row (for the writes)
    slots: Tensor | None  # [B] as given; None: rows 0..B-1, read without a gather
    mask: Tensor | None  # [B, 1, S, L] key visible to query (torch backend)
    spans: tuple[Span, ...] | None  # host-side row groups (triton backend)
    kv_len: int | None = None  # keys at or past this position are invisible to every row: not read


class KVCache(nn.Module):
    def __init__(self, max_batch: int, max_seq: int, n_kv_head: int, head_dim: int,
                 device: torch.device | str | None, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (max_batch, n_kv_head, max_seq, head_dim)
        # Not persistent: a checkpoint never carries (or expects) cache contents.
        self.register_buffer("k_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, view: CacheView, k: Tensor, v: Tensor) -> None:
        # k, v [B, S, Hkv, D]; advanced indices around a slice put their dims first: [B, S, Hkv, D].
        self.k_cache[view.slot_index, :, view.input_pos] = k.to(self.k_cache.dtype)
        self.v_cache[view.slot_index, :, view.input_pos] = v.to(self.v_cache.dtype)

    def rows(self, view: CacheView, batch: int) -> tuple[Tensor, Tensor]:
        """The rows' caches [B, Hkv, L, D]: a view for default slots, a gather otherwise."""
        if view.slots is None:
            return self.k_cache[:batch], self.v_cache[:batch]
        return self.k_cache[view.slots], self.v_cache[view.slots]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = args.n_head, args.n_kv_head, args.head_dim
        total_head_dim = (args.n_head + 2 * args.n_kv_head) * args.head_dim
        self.wqkv = Linear(args.dim, total_head_dim, bias=args.qkv_bias, backend=args.matmul_backend)
        self.wo = Linear(args.n_head * args.head_dim, args.dim, bias=False, backend=args.matmul_backend)
        self.kv_cache: KVCache | None = None
        self.backend = args.attn_backend
        self.window = args.sliding_window
        self.scale = 1.0 / math.sqrt(args.head_dim)

    def forward(self, x: Tensor, freqs_cis: Tensor, cache: CacheView | None) -> Tensor:
        B, S, _ = x.shape
        kv_size = self.n_kv_head * self.head_dim
        q, k, v = self.wqkv(x).split([self.n_head * self.head_dim, kv_size, kv_size], dim=-1)
        q = apply_rotary_emb(q.view(B, S, self.n_head, self.head_dim), freqs_cis)  # [B, S, Hq, D]
        k = apply_rotary_emb(k.view(B, S, self.n_kv_head, self.head_dim), freqs_cis)  # [B, S, Hkv, D]
        v = v.view(B, S, self.n_kv_head, self.head_dim)
        q = q.transpose(1, 2)  # [B, Hq, S, D]
        if cache is None:
            y = self._causal(q, k.transpose(1, 2), v.transpose(1, 2))
        else:
            assert self.kv_cache is not None
            self.kv_cache.update(cache, k, v)
            y = self._cached_triton(q, cache) if self.backend == "triton" else self._cached_torch(q, cache)
        return self.wo(y.transpose(1, 2).reshape(B, S, self.n_head * self.head_dim))

    def _causal(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        S = q.shape[2]
        _refuse_window(self.backend, S, self.window)
        if self.backend == "triton":
            return _kernel("attention")(q, k, v, causal=True, scale=self.scale)  # any strides
        group = self.n_head // self.n_kv_head
        # Repeat K/V rather than SDPA's enable_gqa: keeps the fused (flash) kernels eligible.
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if self.window is not None and self.window < S:
            pos = torch.arange(S, device=q.device)
            mask = visible_keys(pos, pos, self.window)  # [S, S]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)

    def _cached_torch(self, q: Tensor, cache: CacheView) -> Tensor:
        B, _, S, D = q.shape
        kc, vc = self.kv_cache.rows(cache, B)  # [B, Hkv, L, D]
        if cache.kv_len is not None:  # a view: no key past the longest row is read
            kc, vc = kc[:, :, : cache.kv_len], vc[:, :, : cache.kv_len]
        kc, vc = kc.to(q.dtype), vc.to(q.dtype)
        group = self.n_head // self.n_kv_head
        if S == 1:
            # Decode: fold the query heads of a group together, so K/V are read once, never copied.
            qg = q.reshape(B, self.n_kv_head, group, D)  # [B, Hkv, G, D]
            scores = (qg @ kc.transpose(-1, -2)) * self.scale  # [B, Hkv, G, L]
            scores = torch.where(cache.mask, scores.float(), float("-inf"))  # one kernel, not ~mask + fill
            y = scores.softmax(dim=-1).to(q.dtype) @ vc  # [B, Hkv, G, D]
            return y.reshape(B, self.n_head, 1, D)
        kc, vc = kc.repeat_interleave(group, dim=1), vc.repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(q, kc, vc, attn_mask=cache.mask, scale=self.scale)

    def _cached_triton(self, q: Tensor, cache: CacheView) -> Tensor:
        assert cache.spans is not None and self.kv_cache is not None
        attention = _kernel("attention")
        kc_all, vc_all = self.kv_cache.k_cache, self.kv_cache.v_cache
        out = None if len(cache.spans) == 1 else torch.empty_like(q)
        for sp in cache.spans:
            # The row's keys are cache[:end]; bottom-right causal alignment puts query i at end - S + i.
            kc = kc_all[sp.slot0 : sp.slot0 + sp.rows, :, : sp.end].to(q.dtype)
            vc = vc_all[sp.slot0 : sp.slot0 + sp.rows, :, : sp.end].to(q.dtype)
            y = attention(q[sp.row0 : sp.row0 + sp.rows], kc, vc, causal=True, scale=self.scale)
            if out is None:
                return y
            out[sp.row0 : sp.row0 + sp.rows] = y
        assert out is not None
        return out


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.w1 = Linear(args.dim, args.intermediate_size, backend=args.matmul_backend)  # gate_proj
        self.w3 = Linear(args.dim, args.intermediate_size, backend=args.matmul_backend)  # up_proj
        self.w2 = Linear(args.intermediate_size, args.dim, backend=args.matmul_backend)  # down_proj

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoEFeedForward(nn.Module):
    """Mixtral-style experts: each token goes to its top-k experts, weighted by a softmax over
    those k router logits (= Mixtral's full softmax renormalised over the top k)."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        E, D, inter = args.n_expert, args.dim, args.intermediate_size
        self.top_k = args.n_expert_per_tok
        self.gate = Linear(D, E, backend=args.matmul_backend)  # router
        self.w1 = nn.Parameter(torch.empty(E, inter, D))
        self.w3 = nn.Parameter(torch.empty(E, inter, D))
        self.w2 = nn.Parameter(torch.empty(E, D, inter))
        self.backend = args.matmul_backend
        self.routing: list[Tensor] | None = None  # see record_routing / replay_routing
        self.replay = False

    def forward(self, x: Tensor) -> Tensor:
        t = x.reshape(-1, x.shape[-1])  # [T, D]
        logits = self.gate(t)  # [T, E]
        if self.replay:
            if not self.routing:
                raise ValueError("replay_routing: no recorded expert choices left for this call")
            idx = self.routing.pop(0)
            top = logits.gather(-1, idx)
        else:
            top, idx = torch.topk(logits, self.top_k, dim=-1)  # [T, k]
            if self.routing is not None:
                self.routing.append(idx)
        weights = top.float().softmax(dim=-1).to(t.dtype)  # [T, k]
        if self.backend == "torch" and idx.numel() <= self.w1.shape[0]:
            y = self._gathered(t, idx, weights)
        else:
            y = self._grouped(t, idx, weights)
        return y.view_as(x)

    def _gathered(self, t: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
        # Few tokens (decode): gather their experts' weights. No host sync, so CUDA-graph and
        # torch.compile friendly (Inductor fuses the gather into the matmul; eager copies it).
        h = F.silu(torch.einsum("td,tkid->tki", t, self.w1[idx])) * torch.einsum("td,tkid->tki", t, self.w3[idx])
        y = torch.einsum("tki,tkdi->tkd", h, self.w2[idx])  # [T, k, D]
        return torch.einsum("tkd,tk->td", y, weights)

    def _grouped(self, t: Tensor, idx: Tensor, weights: Tensor) -> Tensor:
        # Many tokens (prefill): one matmul per expert over its tokens (syncs to find them).
        out = torch.zeros_like(t)
        flat_idx, flat_w = idx.flatten(), weights.flatten()
        for e in range(self.w1.shape[0]):
            sel = (flat_idx == e).nonzero().squeeze(-1)  # [n_e] positions in [T * k]
            if sel.numel() == 0:
                continue
            tok = sel // self.top_k
            xe = t[tok]
            h = F.silu(linear(xe, self.w1[e], backend=self.backend)) * linear(xe, self.w3[e], backend=self.backend)
            out.index_add_(0, tok, linear(h, self.w2[e], backend=self.backend) * flat_w[sel, None])
        return out


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward: nn.Module = MoEFeedForward(args) if args.is_moe else FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: Tensor, freqs_cis: Tensor, cache: CacheView | None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, cache)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layer))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = Linear(args.dim, args.vocab_size, bias=False, backend=args.matmul_backend)
        self.tie_weights()
        self.max_batch = 0
        self.max_seq = 0
        self._freqs_cis: Tensor | None = None  # fp32 table, kept out of .to(dtype) on purpose
        self._register_load_state_dict_pre_hook(self._load_hook)

    @classmethod
    def from_name(cls, name: str) -> Transformer:
        return cls(ModelArgs.from_name(name))

    def tie_weights(self) -> None:
        if self.args.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight

    def _load_hook(self, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
        # Hugging Face layout (model.layers.N.self_attn.q_proj ...) -> ours (fused wqkv ...).
        if any(key.startswith(prefix + "model.") for key in state_dict):
            hf = {k[len(prefix) :]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
            native = hf_to_native(hf, self.args, consume=True)
            state_dict.update({prefix + k: v for k, v in native.items()})

    def set_backends(self, attn: str | None = None, matmul: str | None = None) -> None:
        """Switch kernels on the same weights ("torch" or "triton")."""
        self.args = self.args.replace(attn_backend=attn or self.args.attn_backend,
                                      matmul_backend=matmul or self.args.matmul_backend)
        for m in self.modules():
            if isinstance(m, Attention):
                m.backend = self.args.attn_backend
            elif isinstance(m, (Linear, MoEFeedForward)):
                m.backend = self.args.matmul_backend

    def setup_cache(self, max_batch: int, max_seq: int, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> None:
        """Allocate a static KV cache [max_batch, Hkv, max_seq, D] per layer (replacing any old one)."""
        if max_batch <= 0 or max_seq <= 0:
            raise ValueError(f"setup_cache needs max_batch > 0 and max_seq > 0, got {max_batch}, {max_seq}")
        device = device if device is not None else self.output.weight.device
        dtype = dtype if dtype is not None else self.output.weight.dtype
        for layer in self.layers:
            layer.attention.kv_cache = None  # free the old cache before allocating the new one
            layer.attention.kv_cache = KVCache(max_batch, max_seq, self.args.n_kv_head, self.args.head_dim,
                                               device, dtype)
        self.max_batch, self.max_seq = max_batch, max_seq
        self._freqs(max_seq, torch.device(device))

    def _freqs(self, n: int, device: torch.device) -> Tensor:
        f = self._freqs_cis
        if f is None or f.shape[0] < n or f.device != device:
            length = max(n, self.max_seq, f.shape[0] if f is not None else 0)
            f = self._freqs_cis = precompute_freqs_cis(self.args, -(-length // 256) * 256, device)
        return f

    def forward(self, tokens: Tensor, input_pos: Tensor | None = None, slots: Tensor | None = None,
                kv_len: int | None = None) -> Tensor:
        """`kv_len`: with a cache, an upper bound on every row's last position + 1, known on the
        host (a serving engine knows its rows' lengths): attention then reads keys [0, kv_len)
        instead of the whole cache, as a paged engine reads only what its rows hold. It is not
        checked against `input_pos` (that would take a host sync): a bound too small masks every
        key of a row, whose output is then NaN."""
        B, S = tokens.shape
        if input_pos is None:
            if slots is not None:
                raise ValueError("slots given without input_pos: the cache is only used with input_pos")
            freqs_cis = self._freqs(S, tokens.device)[:S].unsqueeze(0)  # [1, S, 2, D]
            cache = None
        else:
            cache = self._cache_view(input_pos, slots, B, S, kv_len)
            freqs_cis = self._freqs(self.max_seq, tokens.device)[input_pos]  # [B, S, 2, D]
        x = self.tok_embeddings(tokens)  # [B, S, D]
        freqs_cis = freqs_cis.to(x.dtype)  # once per forward, as HF's rotary_emb: not 4 casts a layer
        for layer in self.layers:
            x = layer(x, freqs_cis, cache)
        return self.output(self.norm(x))  # [B, S, V]

    def move_cache_slot(self, src: int, dst: int, length: int) -> None:
        """Copy positions [0, length) of cache slot `src` into slot `dst`, in every layer: a serving
        engine keeps its running requests in slots 0..B-1 (one copy when a request ends), so that
        each decode step reads a view of the cache instead of gathering a copy of it."""
        for layer in self.layers:
            cache = layer.attention.kv_cache
            assert cache is not None
            cache.k_cache[dst, :, :length] = cache.k_cache[src, :, :length]
            cache.v_cache[dst, :, :length] = cache.v_cache[src, :, :length]

    def _cache_view(self, input_pos: Tensor, slots: Tensor | None, B: int, S: int,
                    kv_len: int | None = None) -> CacheView:
        if self.max_seq == 0:
            raise ValueError("input_pos given but no cache: call setup_cache(max_batch, max_seq) first")
        if tuple(input_pos.shape) != (B, S):
            raise ValueError(f"input_pos must be [B, S] = [{B}, {S}], got {list(input_pos.shape)}")
        if slots is not None and tuple(slots.shape) != (B,):
            raise ValueError(f"slots must be [B] = [{B}], got {list(slots.shape)}")
        if slots is None and self.max_batch < B:
            raise ValueError(f"batch {B} exceeds the cache's max_batch {self.max_batch}")
        rows = slots if slots is not None else torch.arange(B, device=input_pos.device)
        if self.args.attn_backend == "triton":
            spans = _spans(input_pos, rows, self.max_batch, self.max_seq)
            _refuse_window("triton", max(sp.end for sp in spans), self.args.sliding_window)
            return CacheView(input_pos, rows[:, None], slots, None, spans)
        if kv_len is not None and not 1 <= kv_len <= self.max_seq:
            raise ValueError(f"kv_len must be in [1, {self.max_seq}], got {kv_len}")
        key_pos = torch.arange(kv_len or self.max_seq, device=input_pos.device)
        # [B, 1, S, L]: no key beyond its row (nor, with a window, too far behind it)
        mask = visible_keys(input_pos, key_pos, self.args.sliding_window).unsqueeze(1)
        return CacheView(input_pos, rows[:, None], slots, mask, None, kv_len)


def _spans(input_pos: Tensor, slots: Tensor, max_batch: int, max_seq: int) -> tuple[Span, ...]:
    """Group rows for the Triton kernel, which takes one key length per call (one host sync)."""
    pos, sl = input_pos.cpu(), slots.cpu()
    S = pos.shape[1]
    ends = pos[:, -1] + 1
    if not torch.equal(pos, ends[:, None] - S + torch.arange(S)):
        raise ValueError("the triton attention backend needs consecutive positions within each row")
    if int(ends.max()) > max_seq or int(pos.min()) < 0 or int(sl.min()) < 0 or int(sl.max()) >= max_batch:
        raise ValueError(f"positions or slots out of the cache's range [{max_batch} slots, {max_seq} positions]")
    spans: list[Span] = []
    for b, (slot, end) in enumerate(zip(sl.tolist(), ends.tolist())):
        last = spans[-1] if spans else None
        if last is not None and last.end == end and last.slot0 + last.rows == slot:
            spans[-1] = Span(last.row0, last.rows + 1, last.slot0, end)
        else:
            spans.append(Span(b, 1, slot, end))
    return tuple(spans)
