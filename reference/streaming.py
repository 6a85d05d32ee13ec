"""Attention over long rows, block by block: the oracle where the plain reference's (B, H, T, S)
logits would not fit in memory.

``streaming_attention`` computes scaled_dot_product_attention's context and each query row's maximum
logit and log-sum-exp, visiting the keys a block at a time with exact rescaling (the online softmax
of Milakov & Gimelshein 2018, the loop of FlashAttention, Dao et al. 2022): for each key block j

    m_j = max(m_{j-1}, rowmax(L_j)),   l_j = l_{j-1} exp(m_{j-1} - m_j) + rowsum(exp(L_j - m_j)),
    acc_j = acc_{j-1} exp(m_{j-1} - m_j) + exp(L_j - m_j) V_j, context = acc / l,   lse = m + log l

with L_j the block's scaled, masked logits. In exact arithmetic it equals the plain reference (a
property in tests/meta/test_streaming.py); in float64 its rounding is of the same order. Memory is
O(T_block x S_block) per step, the queries visited in blocks too, so T = S = 16384 runs in seconds.
The same masks and conventions as reference.attention: boolean True = may attend, additive float
masks added, -inf masks a key, causal "top_left" / "bottom_right", and a row that sees no key gets a
zero context, max -inf and log-sum-exp -inf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.checks import check_attention
from reference.masks import causal_mask


def _block_mask(
    mask: np.ndarray | None, shape: tuple[int, int, int, int], t: slice, s: slice
) -> np.ndarray | None:
    """The mask's (B, H, t, s) block, broadcast (size-1 axes stay size 1)."""
    if mask is None:
        return None
    m = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
    return m[:, :, t if m.shape[2] > 1 else slice(None), s if m.shape[3] > 1 else slice(None)]


def streaming_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    block: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(context (B, H, T, Kv), row max (B, H, T), log-sum-exp (B, H, T)) of softmax(scale Q K^T + M)
    V, computed in the inputs' dtype, ``block`` queries by ``block`` keys at a time."""
    check_attention("streaming_attention", q, k, v, mask, scale, causal)
    B, H, T, K = q.shape
    S, Kv = k.shape[2], v.shape[3]
    dt = q.dtype
    scale = dt.type(1.0 / np.sqrt(K) if scale is None else scale)
    allowed = (
        causal_mask(T, S, causal) if causal is not None else None
    )  # (T, S) bool: small next to the logits
    context = np.empty((B, H, T, Kv), dt)
    row_max = np.empty((B, H, T), dt)
    lse = np.empty((B, H, T), dt)
    kt = np.swapaxes(k, -1, -2)  # (B, H, K, S)
    for t0 in range(0, T, block):
        t = slice(t0, min(t0 + block, T))
        qt = (
            q[:, :, t] * scale
        )  # (B, H, t, K): the scale folded into the queries, one product per logit
        m = np.full(qt.shape[:3] + (1,), -np.inf, dt)  # (B, H, t, 1)
        l = np.zeros_like(m)  # (B, H, t, 1)
        acc = np.zeros(qt.shape[:3] + (Kv,), dt)  # (B, H, t, Kv)
        for s0 in range(0, S, block):
            s = slice(s0, min(s0 + block, S))
            logits = np.matmul(qt, kt[..., s]).astype(dt, copy=False)  # (B, H, t, s)
            blk = _block_mask(mask, (B, H, T, S), t, s)
            if blk is not None and blk.dtype != np.bool_:
                logits += blk.astype(dt)  # an additive mask (-inf masks a key)
            keep = None if blk is None or blk.dtype != np.bool_ else blk
            if allowed is not None:
                keep = allowed[t, s] if keep is None else keep & allowed[t, s]
            if keep is not None:
                logits = np.where(keep, logits, dt.type(-np.inf))
            m_new = np.maximum(m, logits.max(-1, keepdims=True))  # (B, H, t, 1)
            seen = np.isfinite(m_new)  # rows that have met a key: the others stay at -inf, l = 0
            shift = np.where(seen, m_new, dt.type(0))
            correction = np.exp(
                np.where(seen, m - shift, dt.type(-np.inf))
            )  # exp(-inf) = 0 at the start
            np.subtract(logits, shift, out=logits)
            np.exp(
                logits, out=logits
            )  # p = exp(L - m), in place: the block is the largest array here
            l = l * correction + logits.sum(-1, keepdims=True)
            acc = acc * correction + np.matmul(logits, v[:, :, s]).astype(dt, copy=False)
            m = m_new
        empty = l == 0  # (B, H, t, 1): no visible key
        context[:, :, t] = np.where(empty, dt.type(0), acc / np.where(empty, dt.type(1), l))
        row_max[:, :, t] = m[..., 0]
        with np.errstate(divide="ignore"):
            lse[:, :, t] = np.where(
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


def _rounded_weights(
    q_rows: np.ndarray,
    kt: np.ndarray,
    blk: np.ndarray | None,
    allowed_rows: np.ndarray | None,
    scale_d: float,
    rnd: Any,
    row_sum: Any,
) -> np.ndarray:
    """The softmax weights of some query rows as reference.attention rounds them: q_rows
    (B, H, t, K) and kt (B, H, K, S) in float32, the rows' mask block and causal rows; row_sum(e)
    -> (B, H, t, 1) is the float32 sum over keys (its order is the caller's). -> (B, H, t, S)"""
    f32 = np.float32
    logits = rnd(rnd(np.matmul(q_rows, kt)) * f32(scale_d))  # (B, H, t, S)
    if blk is not None and blk.dtype != np.bool_:
        logits = rnd(logits + rnd(blk.astype(f32)))
    keep = None if blk is None or blk.dtype != np.bool_ else blk
    if allowed_rows is not None:
        keep = allowed_rows if keep is None else keep & allowed_rows
    if keep is not None:
        logits = np.where(keep, logits, f32(-np.inf))
    m = logits.max(-1, keepdims=True)  # (B, H, t, 1)
    m = np.where(np.isfinite(m), m, f32(0))
    with np.errstate(over="ignore"):
        e = rnd(np.exp(rnd(logits - m)))  # (B, H, t, S)
    z = rnd(row_sum(e))  # (B, H, t, 1)
    return np.where(z > 0, rnd(e / np.where(z > 0, z, f32(1))), f32(0))


def rounded_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    block: int = 256,
) -> np.ndarray:
    """scaled_dot_product_attention's plain evaluation in the inputs' dtype (float32, float16,
    bfloat16), as reference.attention computes it: the same operations in the same order, each
    rounded to the dtype (logits, scaled logits, L - max, exp, the row sum, the weights, the
    context), sums and matmuls accumulated in float32 and rounded once (NumPy's float16 matmul,
    reference/numerics.py). Query rows are independent, so visiting them ``block`` at a time
    changes nothing; the arithmetic runs in float32 with BLAS, where NumPy's float16 loops would
    take minutes at S = 16384. The tolerance policy's same-precision term at kernel scale
    (spec/kernel_scale.py)."""
    check_attention("rounded_attention", q, k, v, mask, scale, causal)
    B, H, T, K = q.shape
    S = k.shape[2]
    dt = q.dtype
    rnd = _rounder(dt)
    f32 = np.float32
    scale_d = float(np.asarray(1.0 / np.sqrt(K) if scale is None else scale).astype(dt))
    allowed = causal_mask(T, S, causal) if causal is not None else None  # (T, S) bool
    kt = np.swapaxes(k.astype(f32), -1, -2)  # (B, H, K, S)
    qf, vf = q.astype(f32), v.astype(f32)
    out = np.empty((B, H, T, v.shape[3]), dt)
    for t0 in range(0, T, block):
        t = slice(t0, min(t0 + block, T))
        blk = _block_mask(mask, (B, H, T, S), t, slice(None))
        w = _rounded_weights(  # (B, H, t, S)
            qf[:, :, t],
            kt,
            blk,
            None if allowed is None else allowed[t],
            scale_d,
            rnd,
            lambda e: e.sum(-1, keepdims=True, dtype=f32),
        )
        out[:, :, t] = np.matmul(w, vf).astype(dt)  # (B, H, t, Kv)
    return out


def sequential_attention_rows(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    rows: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
) -> np.ndarray:
    """rounded_attention's operations at the query rows ``rows`` only, with the two sums over keys
    (the row sum of the weights' numerators and the weighted sum of values) accumulated one key at a
    time, left to right, in float32: the least accurate order a correct kernel sums in (a key loop
    accumulating into registers), where BLAS keeps several partial sums. Its error grows like
    sqrt(S) rounding units, which a long row makes the larger one (torch's CPU kernel at T = 1, S =
    16384 in float32 is 3-4x the BLAS order's error and within this one). -> (B, H, len(rows), Kv)
    """
    check_attention("sequential_attention_rows", q, k, v, mask, scale, causal)
    B, H, T, K = q.shape
    S = k.shape[2]
    dt, f32 = q.dtype, np.float32
    rnd = _rounder(dt)
    scale_d = float(np.asarray(1.0 / np.sqrt(K) if scale is None else scale).astype(dt))
    allowed = causal_mask(T, S, causal) if causal is not None else None  # (T, S) bool
    kt, vf = np.swapaxes(k.astype(f32), -1, -2), v.astype(f32)  # (B, H, K, S), (B, H, S, Kv)
    out = np.empty((B, H, len(rows), v.shape[3]), dt)
    for i, t in enumerate(rows):
        sel = slice(int(t), int(t) + 1)
        blk = _block_mask(mask, (B, H, T, S), sel, slice(None))
        w = _rounded_weights(  # (B, H, 1, S)
            q[:, :, sel].astype(f32),
            kt,
            blk,
            None if allowed is None else allowed[sel],
            scale_d,
            rnd,
            lambda e: np.cumsum(e, axis=-1, dtype=f32)[..., -1:],  # left to right
        )
        terms = np.swapaxes(w, -1, -2) * vf  # (B, H, S, Kv): w_s v_s
        out[:, :, i] = np.cumsum(terms, axis=2, dtype=f32)[:, :, -1].astype(dt)  # (B, H, Kv)
    return out
