"""The oracle for the attention kernels implement today: windows, soft-caps, ALiBi, sinks, grouped
heads, the log-sum-exp output and the split-KV merge. Small pure NumPy functions, named as in the
spec (spec/variants.py).

Every variant changes the logits of scaled dot-product attention, in one pinned order (the order
flash-attention's kernels apply them, hopper/softmax and mask code; Gemma 2's soft-cap):

    L = scale * Q K^T                      (B, Hq, T, S), K and V heads repeated per group (GQA)
    L = cap * tanh(L / cap)                soft-cap, on the scaled logits, before anything is added
    L = L - slope_h * |t + off - s|        ALiBi (Press et al. 2022), off as the window's alignment
    L = L + M                              an additive float mask
    L = -inf where a key is hidden         boolean mask, causal mask, window: masked keys weigh 0
    P = softmax([L | sink_h])[..., :S]     a sink joins each row's denominator and carries no value
    O = P V

The alignment ``align`` places query t on key position t + off: off = S - T for ``bottom_right``
(flash-attention's window_size and ALiBi), 0 for ``top_left`` (jax's local_window_size). A window
(left, right) keeps keys s with t + off - left <= s <= t + off + right; -1 leaves that side
unbounded, so (-1, -1) is no window and (-1, 0) is causal in the same alignment. A row that sees no
key has weight 0 everywhere, context 0 and log-sum-exp -inf (the spec's empty-row convention).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reference.attention import _matmul, softmax
from reference.checks import (
    CAUSAL_ALIGNMENTS,
    _fail,
    check_attention,
    check_float_array,
    is_array,
    value,
)
from reference.masks import causal_mask
from reference.numerics import total

# The components (the numpy adapter re-exports exactly these).
__all__ = ["alibi_slopes", "attention_lse", "merge_attention_states", "variant_attention"]


def alibi_slopes(H: int) -> np.ndarray:
    """ALiBi's head slopes (Press et al. 2022, section 3 and their reference code), float64 (H,).

    H a power of two: m_h = 2^(-8 h / H), h = 1..H (for H = 8: 1/2, 1/4, ..., 1/256). Otherwise,
    with n the largest power of two below H: the n slopes of n heads, then every other slope of 2n
    heads (2^(-4 h / n), h = 1, 3, 5, ...) until there are H (HuggingFace's build_alibi_tensor and
    flash-attention's tests use the same rule).
    """
    if not isinstance(H, (int, np.integer)) or isinstance(H, bool) or H < 1:
        raise ValueError(f"alibi_slopes: H must be a positive int; got {H!r}")
    n = 2 ** math.floor(math.log2(H))
    base = 2.0 ** (-8.0 * np.arange(1, n + 1) / n)  # (n,)
    extra = 2.0 ** (-4.0 * np.arange(1, 2 * (H - n), 2) / n)  # (H - n,): odd powers of 2n heads
    return np.concatenate([base, extra])  # (H,)


def _check_window(component: str, window: Any) -> tuple[int, int] | None:
    if window is None:
        return None
    ok = isinstance(window, (tuple, list)) and len(window) == 2
    if not ok or not all(
        isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in window
    ):
        _fail(component, f"window must be None or (left, right) ints, -1 unbounded; got {window!r}")
    left, right = int(window[0]), int(window[1])
    if left < -1 or right < -1:
        _fail(component, f"window bounds must be >= -1 (-1 = unbounded); got {(left, right)}")
    return left, right


def _check_variants(
    component: str,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray | None,
    mask: np.ndarray | None,
    scale: float | None,
    causal: str | None,
    window: object,
    align: str,
    softcap: float | None,
    alibi: np.ndarray | None,
    sinks: np.ndarray | None,
) -> tuple[int, int] | None:
    """The shared rules: GQA heads, then scaled_dot_product_attention's, then each variant's."""
    check_float_array(component, "q", q, 4, "(B, Hq, T, K)")
    check_float_array(component, "k", k, 4, "(B, Hkv, S, K)")
    Hq, Hkv = q.shape[1], k.shape[1]
    if v is not None:
        check_float_array(component, "v", v, 4, "(B, Hkv, S, Kv)")
        if v.shape[1] != Hkv:
            _fail(component, f"v must have k's Hkv={Hkv} heads; got v {v.shape}")
    if Hq % Hkv:
        _fail(
            component,
            f"Hq must be a multiple of Hkv; got q {q.shape} (Hq={Hq}) and k {k.shape} (Hkv={Hkv})",
        )
    G = Hq // Hkv
    check_attention(
        component,
        q,
        np.repeat(value(k), G, axis=1),
        None if v is None else np.repeat(value(v), G, axis=1),
        mask,
        scale,
        causal,
    )
    if align not in CAUSAL_ALIGNMENTS:
        _fail(component, f"align must be one of {CAUSAL_ALIGNMENTS}; got {align!r}")
    if softcap is not None and (
        not isinstance(softcap, (int, float, np.floating))
        or isinstance(softcap, bool)
        or not (math.isfinite(float(softcap)) and float(softcap) > 0)
    ):
        _fail(component, f"softcap must be None or a finite number > 0; got {softcap!r}")
    for name, per_head in (("alibi_slopes", alibi), ("sinks", sinks)):
        if per_head is None:
            continue
        x = value(per_head)
        if not is_array(x) or x.dtype.kind != "f" and x.dtype.name != "bfloat16":
            _fail(component, f"{name} must be a float array (Hq,)=({Hq},) or None; got {x!r}")
        if x.shape != (Hq,):
            _fail(component, f"{name} must be (Hq,)=({Hq},), one per query head; got {x.shape}")
        if not np.isfinite(x.astype(np.float64)).all():
            _fail(component, f"{name} must be finite; got {x}")
    return _check_window(component, window)


def _offset(T: int, S: int, align: str) -> int:
    return S - T if align == "bottom_right" else 0


def window_allowed(T: int, S: int, window: tuple[int, int], align: str) -> np.ndarray:
    """(T, S): key s is inside query t's window (left, right) around position t + off."""
    left, right = window
    pos = np.arange(T)[:, None] + _offset(T, S, align)  # (T, 1): the aligned diagonal
    s = np.arange(S)[None, :]  # (1, S)
    inside = np.ones((T, S), dtype=bool)
    if left >= 0:
        inside &= s >= pos - left
    if right >= 0:
        inside &= s <= pos + right
    return inside  # (T, S)


def _logits(
    component: str,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray | None,
    mask: np.ndarray | None,
    scale: float | None,
    causal: str | None,
    window: object,
    align: str,
    softcap: float | None,
    alibi_slopes: np.ndarray | None,
    sinks: np.ndarray | None = None,
) -> np.ndarray:
    """The final logits (B, Hq, T, S) in q's dtype, -inf at every hidden key (module docstring)."""
    win = _check_variants(
        component, q, k, v, mask, scale, causal, window, align, softcap, alibi_slopes, sinks
    )
    B, Hq, T, K = q.shape
    S = k.shape[2]
    G = Hq // k.shape[1]
    k = np.repeat(k, G, axis=1)  # (B, Hq, S, K): key head h // G serves query head h
    dt = q.dtype.type
    logits = _matmul(q, np.swapaxes(k, -1, -2)) * dt(  # (B, Hq, T, S)
        1.0 / np.sqrt(K) if scale is None else scale
    )
    if softcap is not None:
        cap = dt(softcap)
        logits = (cap * np.tanh(logits / cap)).astype(q.dtype)
    if alibi_slopes is not None:
        pos = np.arange(T)[:, None] + _offset(T, S, align)  # (T, 1)
        distance = np.abs(pos - np.arange(S)[None, :]).astype(q.dtype)  # (T, S)
        slopes = alibi_slopes.astype(q.dtype)[None, :, None, None]  # (1, Hq, 1, 1)
        logits = logits - slopes * distance  # (B, Hq, T, S)
    if mask is not None and mask.dtype != np.bool_:
        logits = logits + mask.astype(q.dtype)  # additive mask broadcasts to (B, Hq, T, S)
    allowed = np.ones((B, Hq, T, S), dtype=bool)
    if mask is not None and mask.dtype == np.bool_:
        allowed = allowed & mask
    if causal is not None:
        allowed = allowed & causal_mask(T, S, causal)
    if win is not None:
        allowed = allowed & window_allowed(T, S, win, align)
    return np.where(allowed, logits, dt(-np.inf))  # (B, Hq, T, S)


def variant_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    window: tuple[int, int] | None = None,
    align: str = "bottom_right",
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
    sinks: np.ndarray | None = None,
) -> np.ndarray:
    """O = softmax([L | sink])[..., :S] V with L the variant logits (module docstring).

    q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv), Hq a multiple of Hkv -> (B, Hq, T, Kv).
    With every variant off it is scaled_dot_product_attention (grouped_query_attention for
    Hkv < Hq). A sink is a raw logit: not scaled, capped or biased (gpt-oss's attention sinks).
    """
    logits = _logits(
        "variant_attention",
        q,
        k,
        v,
        mask,
        scale,
        causal,
        window,
        align,
        softcap,
        alibi_slopes,
        sinks,
    )
    S = k.shape[2]
    if sinks is not None:
        sink = np.broadcast_to(
            sinks.astype(q.dtype)[None, :, None, None], (*logits.shape[:3], 1)
        )  # (B, Hq, T, 1)
        logits = np.concatenate([logits, sink], axis=-1)  # (B, Hq, T, S + 1)
    weights = softmax(logits, axis=-1)[..., :S]  # (B, Hq, T, S): the sink's share is dropped
    G = q.shape[1] // k.shape[1]
    return _matmul(weights, np.repeat(v, G, axis=1))  # (B, Hq, T, Kv)


def attention_lse(
    q: np.ndarray,
    k: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    window: tuple[int, int] | None = None,
    align: str = "bottom_right",
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
) -> np.ndarray:
    """lse_t = log sum_s exp(L_ts) over the variant logits (module docstring): (B, Hq, T).

    What flash kernels return beside the context (softmax_lse) for the backward pass and for
    split-KV decoding; a row that sees no key is -inf (so it weighs nothing in a merge). The weights
    are exp(L - lse). Sinks are not keys and are not in it: a merge of partial states adds a sink
    once, at the end.
    """
    logits = _logits(
        "attention_lse", q, k, None, mask, scale, causal, window, align, softcap, alibi_slopes
    )
    m = np.max(logits, axis=-1, keepdims=True)  # (B, Hq, T, 1)
    m = np.where(np.isfinite(m), m, np.zeros_like(m))  # an empty row: log(0) = -inf below
    with np.errstate(divide="ignore", over="ignore"):
        z = total(np.exp(logits - m), axis=-1, keepdims=True)  # (B, Hq, T, 1)
        return (np.log(z) + m)[..., 0].astype(q.dtype)  # (B, Hq, T)


def merge_attention_states(
    o_a: np.ndarray, lse_a: np.ndarray, o_b: np.ndarray, lse_b: np.ndarray
) -> np.ndarray:
    """Attention over keys A + B from the attention over A and over B (flash-decoding; FlashInfer's
    merge_state): O = (e^lse_a O_a + e^lse_b O_b) / (e^lse_a + e^lse_b), the larger lse subtracted
    first so nothing overflows. o (B, H, T, Kv), lse (B, H, T) ->
    (B, H, T, Kv); the merged log-sum-exp is logaddexp(lse_a, lse_b). A row empty in both parts
    (both -inf) is 0.
    """
    name = "merge_attention_states"
    for o_name, o, lse_name, lse in (("o_a", o_a, "lse_a", lse_a), ("o_b", o_b, "lse_b", lse_b)):
        check_float_array(name, o_name, o, 4, "(B, H, T, Kv)")
        check_float_array(name, lse_name, lse, 3, "(B, H, T)")
        if value(lse).shape != value(o).shape[:3]:
            _fail(
                name, f"{lse_name} must be (B, H, T)={value(o).shape[:3]}; got {value(lse).shape}"
            )
        if np.isnan(value(lse).astype(np.float64)).any() or (value(lse) == np.inf).any():
            _fail(name, f"{lse_name} must be finite or -inf (an empty row); got NaN or +inf")
    if value(o_a).shape != value(o_b).shape or value(o_a).dtype != value(o_b).dtype:
        _fail(
            name,
            f"o_a and o_b must share shape and dtype; got {value(o_a).shape} "
            f"{value(o_a).dtype} and {value(o_b).shape} {value(o_b).dtype}",
        )
    if value(lse_a).dtype != value(o_a).dtype or value(lse_b).dtype != value(o_a).dtype:
        _fail(name, f"lse_a and lse_b must have the outputs' dtype {value(o_a).dtype}")
    m = np.maximum(lse_a, lse_b)  # (B, H, T)
    m = np.where(np.isfinite(m), m, np.zeros_like(m))  # both empty: both weights 0
    with np.errstate(over="ignore"):
        ea, eb = np.exp(lse_a - m), np.exp(lse_b - m)  # (B, H, T): the larger is 1
    z = ea + eb
    safe = np.where(z > 0, z, np.ones_like(z))
    wa = np.where(z > 0, ea / safe, np.zeros_like(z))[..., None]  # (B, H, T, 1)
    wb = np.where(z > 0, eb / safe, np.zeros_like(z))[..., None]
    return (wa * o_a + wb * o_b).astype(o_a.dtype)  # (B, H, T, Kv)
