"""The oracle for the attention core: small pure NumPy functions, named as in the spec.

Each function computes in the dtype of its inputs, so the same code is both the float64 oracle and
the "plain same-precision evaluation" the tolerance policy measures (float16 natively; bfloat16
through ml_dtypes, whose matmul accumulates in float32 and is rounded back here, as kernels do).

Numerics policy, written where it applies:
- a masked logit is -inf, never a large finite number, so a masked key's weight is exactly 0;
- a query row whose every key is masked gets weight 0 everywhere and a zero context
  (ONNX, flash-attention, torch's math backend); jax and flax average V there instead (the
  ``fully_masked_row=uniform`` profile, reference/semantics.py);
- softmax subtracts the row maximum first, so logits of 1e4 do not overflow.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reference.checks import (
    check_attention,
    check_float_array,
    check_grouped_multi_head,
    check_multi_head,
    is_array,
)
from reference.masks import causal_mask
from reference.numerics import total
from reference.semantics import convention

# The components (the numpy adapter re-exports exactly these).
__all__ = [
    "attention_weights",
    "grouped_multi_head_attention",
    "grouped_query_attention",
    "multi_head_attention",
    "scaled_dot_product_attention",
    "softmax",
]


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b rounded to a's dtype (NumPy's bfloat16 matmul returns float32)."""
    return np.matmul(a, b).astype(a.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m),  m = max_j x_j  (Bridle 1990).

    -inf entries are masked and get exactly 0. A row of only -inf gets 0 everywhere (the
    fully-masked-row convention), where a naive softmax returns NaN; the semantic profiles
    (reference/semantics.py) give it 1/n (``uniform``) or NaN (``nan``) instead.
    """
    if not is_array(x) or (x.dtype.kind != "f" and x.dtype.name != "bfloat16"):
        raise ValueError(
            f"softmax: x must be a floating NumPy array; got {type(x).__name__} "
            f"{getattr(x, 'dtype', '')}"
        )
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"softmax: axis must index one of x's axes; got axis={axis} for shape {x.shape}"
        )
    if x.size == 0:
        return x.copy()  # softmax over nothing is nothing
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, np.zeros_like(m))  # all -inf row: exp(-inf - 0) = 0, not NaN
    with np.errstate(
        over="ignore"
    ):  # float16: x - m below -65504 rounds to -inf, and exp(-inf) = 0 is right
        e = np.exp(x - m)
    z = total(e, axis=axis, keepdims=True)
    safe_z = np.where(z > 0, z, np.ones_like(z))
    row = convention("fully_masked_row")  # z = 0 only for a row of only -inf
    fill = 0.0 if row == "zeros" else 1.0 / x.shape[axis] if row == "uniform" else np.nan
    return np.where(z > 0, e / safe_z, np.full_like(e, fill)).astype(x.dtype, copy=False)


def _allowed(
    B: int, H: int, T: int, S: int, mask: np.ndarray | None, causal: str | None
) -> np.ndarray:
    """Where a query may attend, (B, H, T, S): the boolean mask AND the causal mask."""
    allowed = np.ones((B, H, T, S), dtype=bool)
    if mask is not None and mask.dtype == np.bool_:
        allowed &= mask  # broadcasts to (B, H, T, S)
    if causal is not None:
        allowed &= causal_mask(T, S, causal)  # (T, S) broadcasts
    return allowed


def attention_weights(
    q: np.ndarray,
    k: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """A = softmax(scale * Q K^T + M), scale = 1/sqrt(K) by default (Vaswani et al. 2017, eq. 1).

    q (B, H, T, K), k (B, H, S, K) -> (B, H, T, S). M is -inf where the boolean mask or the causal
    mask forbids a key, or the additive float mask itself.
    """
    check_attention("attention_weights", q, k, None, mask, scale, causal)
    B, H, T, K = q.shape
    S = k.shape[2]
    if scale is None:
        scale = 1.0 / np.sqrt(K)
    logits = _matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(scale)  # (B, H, T, S)
    if mask is not None and mask.dtype != np.bool_:
        logits = logits + mask.astype(q.dtype)  # additive mask broadcasts to (B, H, T, S)
    allowed = _allowed(B, H, T, S, mask, causal)
    logits = np.where(allowed, logits, q.dtype.type(-np.inf))
    return softmax(logits, axis=-1)


def scaled_dot_product_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """Attention(Q, K, V) = softmax(scale * Q K^T + M) V  (Vaswani et al. 2017, eq. 1).

    q (B, H, T, K), k (B, H, S, K), v (B, H, S, Kv) -> context (B, H, T, Kv).
    """
    check_attention("scaled_dot_product_attention", q, k, v, mask, scale, causal)
    weights = attention_weights(q, k, mask=mask, scale=scale, causal=causal)  # (B, H, T, S)
    return _matmul(weights, v)  # (B, H, T, Kv)


def grouped_query_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """GQA: query head h attends with key/value head h // G, G = Hq / Hkv  (Ainslie et al. 2023;
    Hkv = 1 is multi-query attention, Shazeer 2019; Hkv = Hq is scaled_dot_product_attention).

    q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv) -> context (B, Hq, T, Kv). Groups are
    contiguous: query heads 0..G-1 share key/value head 0 (torch's enable_gqa, jax's
    dot_product_attention, flash-attention). mask broadcasts to (B, Hq, T, S).
    """
    name = "grouped_query_attention"
    check_float_array(name, "q", q, 4, "(B, Hq, T, K)")
    check_float_array(name, "k", k, 4, "(B, Hkv, S, K)")
    check_float_array(name, "v", v, 4, "(B, Hkv, S, Kv)")
    Hq, Hkv = q.shape[1], k.shape[1]
    if v.shape[1] != Hkv:
        raise ValueError(f"{name}: v must have k's Hkv={Hkv} heads; got v {v.shape}")
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(
            f"{name}: Hq must be a multiple of Hkv >= 1; got q {q.shape} (Hq={Hq}) and k "
            f"{k.shape} (Hkv={Hkv})"
        )
    G = Hq // Hkv
    # each key/value head serves G consecutive query heads
    k_full, v_full = (
        np.repeat(k, G, axis=1),
        np.repeat(v, G, axis=1),
    )  # (B, Hq, S, K), (B, Hq, S, Kv)
    check_attention(name, q, k_full, v_full, mask, scale, causal)
    return scaled_dot_product_attention(q, k_full, v_full, mask=mask, scale=scale, causal=causal)


def multi_head_attention(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    mask: np.ndarray | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """MultiHead(Q, K, V) = Concat(head_1..head_H) W_o + b_o, head_h = Attention(Q W_q^h + b_q^h, K
    W_k^h + b_k^h, V W_v^h + b_v^h)  (Vaswani et al. 2017, 3.2.2).

    Canonical layout: query (B, T, D), key and value (B, S, D); W_q, W_k, W_v, W_o are (D, D) and
    act on the right (y = x W + b); biases (D,) are optional (absent = 0). Head h owns columns
    h*K .. (h+1)*K - 1 of W_q, W_k, W_v and rows h*K .. (h+1)*K - 1 of W_o, with K = D / H.
    Self-attention passes the same array as query, key and value.
    """
    check_multi_head("multi_head_attention", query, key, value, params, num_heads, mask, causal)
    B, T, D = query.shape
    S = key.shape[1]
    H, K = num_heads, D // num_heads

    def project(x: np.ndarray, w: str, b: str, L: int) -> np.ndarray:
        y = _matmul(x, params[w].astype(x.dtype))  # (B, L, D)
        if params.get(b) is not None:
            y = y + params[b].astype(x.dtype)
        return y.reshape(B, L, H, K).transpose((0, 2, 1, 3))  # (B, H, L, K)

    q = project(query, "w_q", "b_q", T)  # (B, H, T, K)
    k = project(key, "w_k", "b_k", S)  # (B, H, S, K)
    v = project(value, "w_v", "b_v", S)  # (B, H, S, K)
    context = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)  # (B, H, T, K)
    context = context.transpose((0, 2, 1, 3)).reshape(B, T, D)  # (B, T, D): heads concatenated
    out = _matmul(context, params["w_o"].astype(query.dtype))  # (B, T, D)
    if params.get("b_o") is not None:
        out = out + params["b_o"].astype(query.dtype)
    return out


def grouped_multi_head_attention(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    num_kv_heads: int,
    mask: np.ndarray | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """Multi-head attention with grouped key/value heads (GQA, Ainslie et al. 2023; MQA when Hkv =
    1, Shazeer 2019), as Llama, Mistral and Gemma project it:

        head_h = Attention(Q W_q^h + b_q^h, K W_k^g + b_k^g, V W_v^g + b_v^g),  g = h // (H / Hkv)
        GroupedMultiHead(Q, K, V) = Concat(head_1..head_H) W_o + b_o

    query (B, T, D), key and value (B, S, D); W_q (D, H K), W_k (D, Hkv K), W_v (D, Hkv Kv),
    W_o (H Kv, D), acting on the right; K and Kv are the projections' widths per head, free of D
    (Gemma's head_dim). Query head h owns columns h K .. (h + 1) K - 1 of W_q and rows
    h Kv .. (h + 1) Kv - 1 of W_o; key/value head g owns columns g K .. of W_k (g Kv .. of W_v).
    Biases (the projections' widths) are optional. With Hkv = H and K = Kv = D / H this is
    multi_head_attention.
    """
    K, Kv = check_grouped_multi_head(
        "grouped_multi_head_attention",
        query,
        key,
        value,
        params,
        num_heads,
        num_kv_heads,
        mask,
        causal,
    )
    B, T, _ = query.shape
    S = key.shape[1]

    def project(x: np.ndarray, w: str, b: str, L: int, heads: int, width: int) -> np.ndarray:
        y = _matmul(x, params[w].astype(x.dtype))  # (B, L, heads width)
        if params.get(b) is not None:
            y = y + params[b].astype(x.dtype)
        return y.reshape(B, L, heads, width).transpose((0, 2, 1, 3))  # (B, heads, L, width)

    H, Hkv = int(num_heads), int(num_kv_heads)
    q = project(query, "w_q", "b_q", T, H, K)  # (B, H, T, K)
    k = project(key, "w_k", "b_k", S, Hkv, K)  # (B, Hkv, S, K)
    v = project(value, "w_v", "b_v", S, Hkv, Kv)  # (B, Hkv, S, Kv)
    context = grouped_query_attention(q, k, v, mask=mask, causal=causal)  # (B, H, T, Kv)
    context = context.transpose((0, 2, 1, 3)).reshape(B, T, H * Kv)  # (B, T, H Kv): concatenated
    out = _matmul(context, params["w_o"].astype(query.dtype))  # (B, T, D)
    if params.get("b_o") is not None:
        out = out + params["b_o"].astype(query.dtype)
    return out
