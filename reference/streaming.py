"""Attention over long rows, block by block: the oracle where the plain reference's (B, H, T, S)
logits would not fit in memory.

``streaming_attention`` computes variant_attention's context (scaled_dot_product_attention's when no
variant is given) and each query row's maximum logit and log-sum-exp, visiting the keys a block at a
time with exact rescaling (the online softmax of Milakov & Gimelshein 2018, the loop of
FlashAttention, Dao et al. 2022): for each key block j

    m_j = max(m_{j-1}, rowmax(L_j)),   l_j = l_{j-1} exp(m_{j-1} - m_j) + rowsum(exp(L_j - m_j)),
    acc_j = acc_{j-1} exp(m_{j-1} - m_j) + exp(L_j - m_j) V_j, context = acc / l,   lse = m + log l

with L_j the block's variant logits (reference/variants.py, in its order: scale, soft-cap, ALiBi, an
additive mask, then -inf at every key a boolean mask, causality or the window hides). Grouped heads
read key/value head h // G; a sink joins the denominator once, at the end, as a merge adds it
(context = acc / (l + exp(sink - m)), rescaled), and is not in the log-sum-exp (attention_lse's).
In exact arithmetic it equals the plain reference (tests/meta/test_streaming.py); in float64 its
rounding is of the same order. Memory is O(T_block x S_block) per step, the queries visited in
blocks too, so T = S = 16384 runs in seconds. A row that sees no key gets a zero context, max -inf
and log-sum-exp -inf.

``rounded_attention`` and ``sequential_attention_rows`` are the plain reference's own evaluation
in a low dtype (the tolerance policy's same-precision term at kernel scale, spec/kernel_scale.py),
with the same variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.variants import _check_variants, _offset


@dataclass(frozen=True)
class _Logits:
    """What turns a block of scaled logits into the variant logits: the variants of one call, and
    the rounding of the dtype evaluated in (identity for the float64 oracle)."""

    T: int
    S: int
    mask: np.ndarray | None
    causal: str | None
    window: tuple[int, int] | None
    align: str
    softcap: float | None
    slopes: np.ndarray | None  # (Hq,)
    rnd: Any

    def block(self, logits: np.ndarray, rows: np.ndarray, keys: slice) -> np.ndarray:
        """logits (B, Hq, t, s) = scale Q K^T at query rows ``rows`` and keys ``keys`` -> the
        variant logits, -inf at hidden keys, each operation rounded as reference.variants rounds
        it."""
        rnd, dt = self.rnd, logits.dtype.type
        if self.softcap is not None:
            cap = rnd(np.asarray(self.softcap, logits.dtype))  # the cap in the evaluated dtype
            logits = rnd(cap * rnd(np.tanh(rnd(logits / cap))))
        s = np.arange(self.S)[keys][None, :]  # (1, s)
        pos = rows[:, None] + _offset(self.T, self.S, self.align)  # (t, 1): the aligned diagonal
        if self.slopes is not None:
            distance = rnd(np.abs(pos - s).astype(logits.dtype))  # (t, s)
            bias = rnd(rnd(self.slopes.astype(logits.dtype))[:, None, None] * distance)
            logits = rnd(logits - bias)  # (B, Hq, t, s)
        blk = _mask_block(self.mask, rows, keys)
        if blk is not None and blk.dtype != np.bool_:
            logits = rnd(logits + rnd(blk.astype(logits.dtype)))  # -inf masks a key
        keep = np.ones(logits.shape[2:], dtype=bool)  # (t, s)
        if self.causal is not None:
            keep &= s <= rows[:, None] + _offset(self.T, self.S, self.causal)
        if self.window is not None:
            left, right = self.window
            if left >= 0:
                keep &= s >= pos - left
            if right >= 0:
                keep &= s <= pos + right
        if blk is not None and blk.dtype == np.bool_:
            keep = keep & blk
        return np.where(keep, logits, dt(-np.inf))


def _mask_block(mask: np.ndarray | None, rows: np.ndarray, keys: slice) -> np.ndarray | None:
    """The mask's block at query rows ``rows`` and keys ``keys``, broadcast (size-1 axes stay)."""
    if mask is None:
        return None
    m = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
    m = m[:, :, rows] if m.shape[2] > 1 else m
    return m[..., keys] if m.shape[3] > 1 else m


def _prepare(
    name: str, q, k, v, mask, scale, causal, variants: tuple[Any, ...], rnd
) -> tuple[np.ndarray, np.ndarray, float, _Logits]:
    """Checked inputs: k and v with their heads repeated per group (B, Hq, S, .), the scale, and
    the block logits' variants. ``variants`` is (window, align, softcap, alibi_slopes, sinks)."""
    window, align, softcap, alibi_slopes, sinks = variants
    win = _check_variants(
        name, q, k, v, mask, scale, causal, window, align, softcap, alibi_slopes, sinks
    )
    G = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)  # (B, Hq, S, .): head h // G
    T, S, K = q.shape[2], k.shape[2], q.shape[3]
    scale = float(1.0 / np.sqrt(K) if scale is None else scale)
    slopes = None if alibi_slopes is None else np.asarray(alibi_slopes)
    return k, v, scale, _Logits(T, S, mask, causal, win, align, softcap, slopes, rnd)


def streaming_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    block: int = 1024,
    *,
    window: tuple[int, int] | None = None,
    align: str = "bottom_right",
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
    sinks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(context (B, Hq, T, Kv), row max (B, Hq, T), log-sum-exp (B, Hq, T)) of
    softmax([L | sink])[..., :S] V with L the variant logits (module docstring), computed in the
    inputs' dtype, ``block`` queries by ``block`` keys at a time. q (B, Hq, T, K), k (B, Hkv, S, K),
    v (B, Hkv, S, Kv). The row max and log-sum-exp are over the keys only (no sink)."""
    variants = (window, align, softcap, alibi_slopes, sinks)
    k, v, scale_d, shaper = _prepare(
        "streaming_attention", q, k, v, mask, scale, causal, variants, lambda x: x
    )
    B, H, T, _ = q.shape
    S, Kv = k.shape[2], v.shape[3]
    dt = q.dtype
    context = np.empty((B, H, T, Kv), dt)
    row_max = np.empty((B, H, T), dt)
    lse = np.empty((B, H, T), dt)
    kt = np.swapaxes(k, -1, -2)  # (B, H, K, S)
    for t0 in range(0, T, block):
        rows = np.arange(t0, min(t0 + block, T))
        qt = q[:, :, rows]  # (B, H, t, K)
        m = np.full(qt.shape[:3] + (1,), -np.inf, dt)  # (B, H, t, 1)
        l = np.zeros_like(m)  # (B, H, t, 1)
        acc = np.zeros(qt.shape[:3] + (Kv,), dt)  # (B, H, t, Kv)
        for s0 in range(0, S, block):
            s = slice(s0, min(s0 + block, S))
            logits = np.matmul(qt, kt[..., s]).astype(dt, copy=False) * dt.type(scale_d)
            logits = shaper.block(logits, rows, s)  # (B, H, t, s)
            m_new = np.maximum(m, logits.max(-1, keepdims=True))  # (B, H, t, 1)
            seen = np.isfinite(m_new)  # rows that have met a key: the others stay at -inf, l = 0
            shift = np.where(seen, m_new, dt.type(0))
            correction = np.exp(
                np.where(seen, m - shift, dt.type(-np.inf))
            )  # exp(-inf) = 0 at the start
            np.subtract(logits, shift, out=logits)
            np.exp(logits, out=logits)  # p = exp(L - m), in place: the largest array here
            l = l * correction + logits.sum(-1, keepdims=True)
            acc = acc * correction + np.matmul(logits, v[:, :, s]).astype(dt, copy=False)
            m = m_new
        empty = l == 0  # (B, H, t, 1): no visible key
        denominator = l
        if sinks is not None:  # the sink's exp(sink - m) joins l, both rescaled to their max
            sink = np.asarray(sinks).astype(dt)[None, :, None, None]  # (1, H, 1, 1)
            top = np.maximum(m, sink)  # (B, H, t, 1): finite
            acc = acc * np.exp(m - top)
            denominator = l * np.exp(m - top) + np.exp(sink - top)
        context[:, :, rows] = np.where(
            empty, dt.type(0), acc / np.where(denominator == 0, dt.type(1), denominator)
        )
        row_max[:, :, rows] = m[..., 0]
        with np.errstate(divide="ignore"):
            lse[:, :, rows] = np.where(
                empty, dt.type(-np.inf), m + np.log(np.where(empty, dt.type(1), l))
            )[..., 0]
    return context, row_max, lse


def _rounder(dtype: np.dtype) -> Any:
    """x (float32) -> x rounded to dtype, kept in float32: one correctly rounded operation of dtype
    (a float32 result rounded once to float16 or bfloat16 is the correctly rounded 16-bit result of
    +, -, *, /: float32 carries more than 2p + 2 bits of either)."""
    if dtype == np.float32:
        return lambda x: x
    return lambda x: x.astype(dtype).astype(np.float32)


def _rounded_rows(
    q: np.ndarray,
    kt: np.ndarray,
    vf: np.ndarray,
    rows: np.ndarray,
    scale_d: float,
    shaper: _Logits,
    sink: np.ndarray | None,
    left_to_right: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(context (B, H, t, Kv), log-sum-exp (B, H, t)) of some query rows as reference.variants
    rounds them: q (B, H, T, K) in float32, kt (B, H, K, S) and vf (B, H, S, Kv) in float32,
    sink (1, H, 1, 1) or None. The two sums over keys (the weights' row sum and the weighted sum of
    values) are BLAS's float32 sums rounded once, or with ``left_to_right`` one key at a time in
    float32 (a key loop accumulating into registers): the least accurate order a correct kernel
    uses, whose error grows like sqrt(S) rounding units."""
    f32, rnd = np.float32, shaper.rnd
    logits = rnd(rnd(np.matmul(q[:, :, rows], kt)) * f32(scale_d))  # (B, H, t, S)
    logits = shaper.block(logits, rows, slice(None))

    def shifted(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # (m, exp(L - m), sum over keys of it) with m finite: an empty row's exp(-inf - 0) is 0
        m = np.where(np.isfinite(m), m, f32(0))
        with np.errstate(over="ignore"):
            e = rnd(np.exp(rnd(logits - m)))  # (B, H, t, S)
        if left_to_right:
            return m, e, np.cumsum(e, axis=-1, dtype=f32)[..., -1:]  # (B, H, t, 1)
        return m, e, e.sum(-1, keepdims=True, dtype=f32)

    m, e, keys_sum = shifted(logits.max(-1, keepdims=True))  # (B, H, t, 1): attention_lse's
    with np.errstate(divide="ignore"):  # lse = log(sum over the keys) + m: no sink in it
        lse = np.where(keys_sum > 0, rnd(rnd(np.log(rnd(keys_sum))) + m), f32(-np.inf))[..., 0]
    if sink is not None:  # the softmax over [L | sink] shifts by the larger; the sink sums last
        m, e, keys_sum = shifted(np.maximum(logits.max(-1, keepdims=True), sink))
        keys_sum = keys_sum + rnd(np.exp(rnd(sink - m)))
    z = rnd(keys_sum)
    w = np.where(z > 0, rnd(e / np.where(z > 0, z, f32(1))), f32(0))  # (B, H, t, S)
    if left_to_right:
        terms = np.swapaxes(w, -1, -2)[..., None] * vf[:, :, :, None]  # (B, H, S, t, Kv)
        out = np.cumsum(terms, axis=2, dtype=f32)[:, :, -1]  # (B, H, t, Kv)
    else:
        out = np.matmul(w, vf)  # (B, H, t, Kv)
    return out, lse


def rounded_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    block: int = 256,
    *,
    window: tuple[int, int] | None = None,
    align: str = "bottom_right",
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
    sinks: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    left_to_right: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(context (B, Hq, T|r, Kv), log-sum-exp (B, Hq, T|r)) of variant_attention / attention_lse
    evaluated in the inputs' dtype (float32, float16, bfloat16) as reference.variants computes them:
    the same operations in the same order, each rounded to the dtype (logits, scaled logits, the
    soft-cap's three, ALiBi's distance, product and difference, L - max, exp, the row sum, the
    weights, the context), sums and matmuls accumulated in float32 and rounded once (NumPy's float16
    matmul, reference/numerics.py). Query rows are independent, so visiting them ``block`` at a
    time changes nothing; the arithmetic runs in float32 with BLAS, where NumPy's float16 loops
    would take minutes at S = 16384. ``rows`` evaluates those query rows only; ``left_to_right``
    sums over keys one key at a time (_rounded_rows). The tolerance policy's same-precision term at
    kernel scale (spec/kernel_scale.py)."""
    dt = q.dtype
    rnd = _rounder(dt)
    variants = (window, align, softcap, alibi_slopes, sinks)
    k, v, scale, shaper = _prepare("rounded_attention", q, k, v, mask, scale, causal, variants, rnd)
    f32 = np.float32
    scale_d = float(np.asarray(scale).astype(dt))
    kt, vf, qf = np.swapaxes(k.astype(f32), -1, -2), v.astype(f32), q.astype(f32)  # kt (B, H, K, S)
    sink = None if sinks is None else rnd(np.asarray(sinks).astype(f32))[None, :, None, None]
    wanted = np.arange(q.shape[2]) if rows is None else np.asarray(rows)
    step = 1 if left_to_right else block  # the key-by-key sums hold (B, H, S, t, Kv) at once
    B, H = q.shape[:2]
    out = np.empty((B, H, len(wanted), v.shape[3]), dt)
    lse = np.empty((B, H, len(wanted)), dt)
    for i in range(0, len(wanted), step):
        part = slice(i, i + step)
        out[:, :, part], lse[:, :, part] = (
            x.astype(dt)
            for x in _rounded_rows(qf, kt, vf, wanted[part], scale_d, shaper, sink, left_to_right)
        )
    return out, lse


def sequential_attention_rows(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    rows: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    **variants: Any,
) -> np.ndarray:
    """rounded_attention's context at the query rows ``rows`` only, with the two sums over keys (the
    row sum of the weights' numerators and the weighted sum of values) accumulated one key at a
    time, left to right, in float32: the least accurate order a correct kernel sums in (a key loop
    accumulating into registers), where BLAS keeps several partial sums. Its error grows like
    sqrt(S) rounding units, which a long row makes the larger one (torch's CPU kernel at T = 1, S =
    16384 in float32 is 3-4x the BLAS order's error and within this one). -> (B, H, len(rows), Kv)
    """
    out, _ = rounded_attention(
        q, k, v, mask, scale, causal, rows=rows, left_to_right=True, **variants
    )
    return out
