"""Deliberately broken adapters: each is the reference with one bug real code has had.

The meta-tests assert the conformance suite catches every one of them
(tests/meta/test_planted_bugs.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import reference as R
from reference.attention import softmax as _softmax


def _weights_with(
    q,
    k,
    mask=None,
    scale=None,
    causal=None,
    *,
    scale_rule=None,
    axis=-1,
    invert=False,
    causal_shift=0,
):
    """attention_weights with one knob turned: the planted bugs below."""
    K, T, S = q.shape[-1], q.shape[-2], k.shape[-2]
    scale = scale if scale is not None else (scale_rule(K) if scale_rule else 1 / np.sqrt(K))
    logits = (q @ np.swapaxes(k, -1, -2)).astype(q.dtype) * q.dtype.type(scale)  # (B, H, T, S)
    allowed = np.ones(logits.shape, bool)
    if mask is not None and mask.dtype == np.bool_:
        allowed &= ~mask if invert else mask
    elif mask is not None:
        logits = logits + mask.astype(q.dtype)
    if causal is not None:
        offset = (0 if causal == "top_left" else S - T) + causal_shift
        allowed &= np.arange(S)[None, :] <= np.arange(T)[:, None] + offset  # (T, S)
    logits = np.where(allowed, logits, -np.inf).astype(q.dtype)
    return _softmax(logits, axis=axis)


def _adapter(name: str, **weight_knobs: object) -> SimpleNamespace:
    def attention_weights(q, k, mask=None, scale=None, causal=None):
        return _weights_with(q, k, mask, scale, causal, **weight_knobs)

    def scaled_dot_product_attention(q, k, v, mask=None, scale=None, causal=None):
        return (attention_weights(q, k, mask, scale, causal) @ v).astype(q.dtype)

    return SimpleNamespace(
        name=name,
        attention_weights=attention_weights,
        scaled_dot_product_attention=scaled_dot_product_attention,
    )


scale_1_over_K = _adapter("scale_1_over_K", scale_rule=lambda K: 1.0 / K)
softmax_over_queries = _adapter("softmax_over_queries", axis=-2)
mask_inverted = _adapter("mask_inverted", invert=True)
causal_off_by_one = _adapter("causal_off_by_one", causal_shift=1)


def _naive_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """No max subtraction: exp overflows for logits of 1e4."""
    with np.errstate(all="ignore"):
        e = np.exp(x)
        return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


softmax_without_max = SimpleNamespace(name="softmax_without_max", softmax=_naive_softmax)
softmax_nan_on_masked_rows = SimpleNamespace(
    name="softmax_nan_on_masked_rows",
    softmax=lambda x, axis=-1: _naive_softmax(x - np.max(x, axis=axis, keepdims=True), axis),
)


def _mha_heads_interleaved(query, key, value, params, num_heads, mask=None, causal=None):
    """Heads taken as strided columns (h, h+H, ...) instead of contiguous blocks."""
    D = query.shape[-1]
    order = np.arange(D).reshape(D // num_heads, num_heads).T.reshape(-1)  # column permutation
    p = dict(params)
    for w in ("w_q", "w_k", "w_v"):
        p[w] = params[w][:, order]
    for b in ("b_q", "b_k", "b_v"):
        if params.get(b) is not None:
            p[b] = params[b][order]
    return R.multi_head_attention(query, key, value, p, num_heads, mask, causal)


mha_heads_interleaved = SimpleNamespace(
    name="mha_heads_interleaved", multi_head_attention=_mha_heads_interleaved
)


def _sdpa_truncating_v(q, k, v, mask=None, scale=None, causal=None):
    """Silently drops V's extra positions instead of refusing a k/v length mismatch."""
    return R.scaled_dot_product_attention(q, k, v[:, :, : k.shape[2]], mask, scale, causal)


sdpa_accepts_kv_mismatch = SimpleNamespace(
    name="sdpa_accepts_kv_mismatch", scaled_dot_product_attention=_sdpa_truncating_v
)


def _gqa_interleaved(q, k, v, mask=None, scale=None, causal=None):
    """Query head h reads key/value head h % Hkv (interleaved groups) instead of h // G."""
    reps = q.shape[1] // k.shape[1]
    kf, vf = np.tile(k, (1, reps, 1, 1)), np.tile(v, (1, reps, 1, 1))  # (B, Hq, S, .)
    return R.scaled_dot_product_attention(q, kf, vf, mask, scale, causal)


gqa_interleaved = SimpleNamespace(name="gqa_interleaved", grouped_query_attention=_gqa_interleaved)


def _gqa_repeats_v_by_its_heads(q, k, v, mask=None, scale=None, causal=None):
    """Groups k and v each by its own head count (torch's enable_gqa): a v whose head count differs
    from k's is accepted."""
    kf = np.repeat(k, q.shape[1] // k.shape[1], axis=1)
    vf = np.repeat(v, q.shape[1] // v.shape[1], axis=1)
    return R.scaled_dot_product_attention(q, kf, vf, mask, scale, causal)


gqa_accepts_v_heads = SimpleNamespace(
    name="gqa_accepts_v_heads", grouped_query_attention=_gqa_repeats_v_by_its_heads
)


def _gmha(bug: str):
    """grouped_multi_head_attention with one bug: ``interleaved`` (query head h reads key/value head
    h % Hkv), ``width_from_D`` (head width D / H, as if H K were always D: Gemma's head_dim breaks
    it), ``floors_groups`` (Hkv not dividing H accepted: groups of H // Hkv, the last heads cut)."""

    def forward(query, key, value, params, num_heads, num_kv_heads, mask=None, causal=None):
        B, T, D = query.shape
        S, H, Hkv = key.shape[1], num_heads, num_kv_heads

        def project(x, w, b, L, heads, width=None):
            y = x @ params[w] + (params[b] if b in params else 0)  # (B, L, heads width)
            return y.reshape(B, L, heads, width or -1).transpose(0, 2, 1, 3)  # (B, heads, L, .)

        q = project(query, "w_q", "b_q", T, H, D // H if bug == "width_from_D" else None)
        k = project(key, "w_k", "b_k", S, Hkv)  # (B, Hkv, S, K)
        v = project(value, "w_v", "b_v", S, Hkv)  # (B, Hkv, S, Kv)
        if bug == "interleaved":
            context = _gqa_interleaved(q, k, v, mask, None, causal)
        else:
            G = max(H // Hkv, 1)
            kf, vf = np.repeat(k, G, axis=1)[:, :H], np.repeat(v, G, axis=1)[:, :H]  # (B, H, S, .)
            context = R.scaled_dot_product_attention(q, kf, vf, mask, None, causal)
        out = context.transpose(0, 2, 1, 3).reshape(B, T, -1) @ params["w_o"]  # (B, T, D)
        return out + params["b_o"] if "b_o" in params else out

    return SimpleNamespace(name=f"gmha_{bug}", grouped_multi_head_attention=forward)


gmha_interleaved, gmha_width_from_D, gmha_floors_groups = (
    _gmha(b) for b in ("interleaved", "width_from_D", "floors_groups")
)

# (adapter, component, property or "refuses[bad input]", variant, dtype name): where each bug must
# be caught
CAUGHT_BY = [
    (scale_1_over_K, "scaled_dot_product_attention", "matches_reference", "none", "float32"),
    (scale_1_over_K, "attention_weights", "matches_reference", "none", "float64"),
    (softmax_over_queries, "attention_weights", "weights_are_distributions", "none", "float32"),
    (softmax_over_queries, "scaled_dot_product_attention", "matches_reference", "none", "float32"),
    (mask_inverted, "attention_weights", "matches_reference", "bool", "float32"),
    (mask_inverted, "scaled_dot_product_attention", "hidden_keys_do_not_matter", "bool", "float32"),
    (
        causal_off_by_one,
        "scaled_dot_product_attention",
        "hidden_keys_do_not_matter",
        "causal_top_left",
        "float32",
    ),
    (
        causal_off_by_one,
        "attention_weights",
        "matches_reference",
        "causal_bottom_right",
        "bfloat16",
    ),
    (softmax_without_max, "softmax", "finite_for_large_logits", None, "float32"),
    (softmax_nan_on_masked_rows, "softmax", "all_neg_inf_slice_is_zero", None, "float32"),
    (mha_heads_interleaved, "multi_head_attention", "matches_reference", "cross", "float32"),
    (gqa_interleaved, "grouped_query_attention", "matches_reference", "none", "float32"),
    (gqa_interleaved, "grouped_query_attention", "kv_head_feeds_its_group", "none", "float32"),
    (gmha_interleaved, "grouped_multi_head_attention", "matches_reference", "self", "float32"),
    (
        gmha_interleaved,
        "grouped_multi_head_attention",
        "repeated_kv_heads_are_multi_head",
        "cross+padding",
        "float32",
    ),
    (gmha_width_from_D, "grouped_multi_head_attention", "matches_reference", "cross", "float32"),
    (
        gmha_floors_groups,
        "grouped_multi_head_attention",
        "refuses[kv_heads_do_not_divide_heads]",
        None,
        "float32",
    ),
    (
        gqa_accepts_v_heads,
        "grouped_query_attention",
        "refuses[kv_heads_mismatch]",
        None,
        "float32",
    ),
    (
        sdpa_accepts_kv_mismatch,
        "scaled_dot_product_attention",
        "refuses[kv_length_mismatch]",
        None,
        "float32",
    ),
]
