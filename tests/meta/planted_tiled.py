"""Tiled attention kernels: a correct one and the bugs real kernels have had, each showing only past
a tile.

``tiled_attention`` is the FlashAttention-2 forward loop written in NumPy (Dao 2023, algorithm 1):
query blocks of ``BLOCK_T`` rows, key blocks of ``BLOCK_S`` columns, an online softmax whose running
maximum and sum are carried from one key block to the next, low precisions accumulated in float32
and rounded once at the end, as GPU kernels do. The planted variants change one line each; the
default run of scaled_dot_product_attention (its tile-boundary shapes, spec/strategies.py) must
catch every one, and the correct kernel must pass (tests/meta/test_planted_bugs.py).

The bugs, and where real kernels had them:
- last_block_unmasked: the last partial key block is padded to the block size and its padded keys
are
  not masked (logit 0 joins the softmax): wrong whenever S is not a multiple of the block.
- stale_running_max: the accumulator is not rescaled when a later block raises the row maximum.
- max_starts_at_zero: the running maximum starts at 0 instead of -inf, so rows whose logits are all
  below about -88 underflow to an all-zero sum (NaN), and others lose precision.
- causal_block_skip_off_by_one: key blocks entirely in a row block's future are skipped, but
"entirely"
  is judged on the block's first query, so keys the later queries of the block may see are dropped.
- causal_alignment_top_left: the tile loop always aligns causality top-left, also when asked
  bottom-right (T != S: flash-attention's convention is bottom-right).
- head_dim_truncated: a kernel specialised for head dims up to 64 reads only the first 64 of a
larger K.
- bf16_accumulation: the accumulator and row sums are kept in the input precision instead of
float32.
"""

from __future__ import annotations

from types import SimpleNamespace

import ml_dtypes
import numpy as np

from reference.checks import check_attention
from reference.masks import causal_mask
from reference.streaming import streaming_attention

BLOCK_T, BLOCK_S = 32, 64


def tiled_attention(q, k, v, mask=None, scale=None, causal=None, *, bug: str | None = None):
    check_attention("scaled_dot_product_attention", q, k, v, mask, scale, causal)
    B, H, T, K = q.shape
    S, Kv = k.shape[2], v.shape[3]
    low = q.dtype in (np.float16, ml_dtypes.bfloat16)
    acc_dtype = q.dtype if bug == "bf16_accumulation" else (np.float32 if low else q.dtype)
    compute = np.dtype(
        np.float32 if low else q.dtype
    )  # logits and probabilities: float32 for 16-bit inputs
    scale = 1.0 / np.sqrt(K) if scale is None else scale
    qc, kc, vc = (a.astype(compute) for a in (q, k, v))
    if bug == "head_dim_truncated" and K > 64:
        qc, kc = qc[..., :64], kc[..., :64]
    alignment = "top_left" if bug == "causal_alignment_top_left" and causal else causal
    allowed = causal_mask(T, S, alignment) if alignment else None  # (T, S)
    full_mask = None if mask is None else np.broadcast_to(mask, (B, H, T, S))
    out = np.zeros((B, H, T, Kv), q.dtype)
    for t0 in range(0, T, BLOCK_T):
        t1 = min(t0 + BLOCK_T, T)
        m = np.full((B, H, t1 - t0, 1), 0.0 if bug == "max_starts_at_zero" else -np.inf, compute)
        l = np.zeros((B, H, t1 - t0, 1), acc_dtype)
        acc = np.zeros((B, H, t1 - t0, Kv), acc_dtype)
        for s0 in range(0, S, BLOCK_S):
            s1 = min(s0 + BLOCK_S, S)
            if allowed is not None:  # skip key blocks that no query of this row block may see
                rows = (
                    slice(t0, t0 + 1) if bug == "causal_block_skip_off_by_one" else slice(t0, t1)
                )  # the bug: the first row only
                if not allowed[rows, s0:s1].any():
                    continue
            width = BLOCK_S if bug == "last_block_unmasked" else s1 - s0
            kb = np.zeros((B, H, width, kc.shape[-1]), compute)
            vb = np.zeros((B, H, width, Kv), compute)
            kb[:, :, : s1 - s0], vb[:, :, : s1 - s0] = kc[:, :, s0:s1], vc[:, :, s0:s1]
            logits = (qc[:, :, t0:t1] @ np.swapaxes(kb, -1, -2)) * compute.type(
                scale
            )  # (B, H, t, width)
            keep = np.ones(
                logits.shape, bool
            )  # the padded keys of a partial block are kept: only the bug pads
            if full_mask is not None:
                block = full_mask[:, :, t0:t1, s0:s1]
                if block.dtype == np.bool_:
                    keep[..., : s1 - s0] &= block
                else:
                    logits[..., : s1 - s0] += block.astype(compute)
            if allowed is not None:
                keep[..., : s1 - s0] &= allowed[t0:t1, s0:s1]
            logits = np.where(keep, logits, -np.inf)
            m_new = np.maximum(m, logits.max(-1, keepdims=True))
            seen = np.isfinite(m_new)
            shift = np.where(seen, m_new, 0)
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.exp(logits - shift)  # (B, H, t, width)
                rescale = np.where(seen, np.exp(np.where(np.isfinite(m), m - shift, -np.inf)), 0)
            if bug == "stale_running_max":
                rescale = np.where(np.isfinite(m), 1.0, 0.0)
            l = (l * rescale + p.sum(-1, keepdims=True)).astype(acc_dtype)
            acc = (acc * rescale + p @ vb).astype(acc_dtype)
            m = m_new
        with np.errstate(invalid="ignore", divide="ignore"):
            block_out = np.where(l > 0, acc / np.where(l > 0, l, 1), 0)
        if bug == "max_starts_at_zero":  # its failure: an all-zero sum divides by zero
            with np.errstate(invalid="ignore", divide="ignore"):
                block_out = np.where(np.isfinite(m) & (l == 0), np.nan, block_out)
        out[:, :, t0:t1] = block_out.astype(q.dtype)
    return out


def _kernel(name: str, bug: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        scaled_dot_product_attention=lambda q, k, v, mask=None, scale=None, causal=None: (
            tiled_attention(q, k, v, mask, scale, causal, bug=bug)
        ),
    )


correct_tiled = _kernel("tiled", None)
BUGS = (
    "last_block_unmasked",
    "stale_running_max",
    "max_starts_at_zero",
    "causal_block_skip_off_by_one",
    "causal_alignment_top_left",
    "head_dim_truncated",
    "bf16_accumulation",
)
PLANTED = {bug: _kernel(f"tiled_{bug}", bug) for bug in BUGS}


# Split-KV (flash-decoding): the keys in splits of SPLIT, each split's partial state (context,
# log-sum-exp) merged by their log-sum-exps, and the sinks added to the merged denominator. A
# correct kernel adds each head's sink once; the bug adds it in every split, as a kernel that
# treats a split like a whole row does. With one split (S <= SPLIT: every length the default run
# draws) the two agree.
SPLIT = 1024


def split_kv_attention(q, k, v, mask=None, scale=None, causal=None, *, bug=None, **variants):
    """variant_attention over key splits of SPLIT, in float32 for the low dtypes (streaming oracle
    per split, masked to it so positions stay global), merged by log-sum-exp."""
    S = k.shape[2]
    sinks = variants.pop("sinks", None)
    wide = q.dtype if q.dtype == np.float64 else np.dtype(np.float32)
    q32, k32, v32 = (a.astype(wide) for a in (q, k, v))
    user = None if mask is None else np.broadcast_to(mask, (*q.shape[:3], S))
    states = []
    for s0 in range(0, S, SPLIT):
        inside = (np.arange(S) >= s0) & (np.arange(S) < s0 + SPLIT)  # (S,)
        split = inside if user is None or user.dtype != np.bool_ else user & inside
        if user is not None and user.dtype != np.bool_:  # an additive mask: -inf outside
            split = np.where(inside, user, -np.inf).astype(user.dtype)
        context, _, lse = streaming_attention(q32, k32, v32, split, scale, causal, **variants)
        states.append((context, lse))
    lse_all = np.stack([lse for _, lse in states])  # (n, B, H, T)
    top = lse_all.max(0)  # (B, H, T)
    top = np.where(np.isfinite(top), top, 0)
    if sinks is not None:
        sink = sinks.astype(wide)[None, :, None]  # (1, H, 1)
        top = np.maximum(top, sink)
    weights = np.exp(lse_all - top)  # (n, B, H, T)
    denominator = weights.sum(0)
    if sinks is not None:
        times = len(states) if bug == "sink_in_every_split" else 1
        denominator = denominator + times * np.exp(sink - top)
    acc = sum(w[..., None] * c for w, (c, _) in zip(weights, states, strict=True))
    out = np.where(denominator[..., None] > 0, acc / denominator[..., None], 0)
    return out.astype(q.dtype)


def _split_kernel(name: str, bug: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        variant_attention=lambda q, k, v, mask=None, scale=None, causal=None, **kw: (
            split_kv_attention(q, k, v, mask, scale, causal, bug=bug, **kw)
        ),
    )


correct_split_kv = _split_kernel("split_kv", None)
SPLIT_BUGS = ("sink_in_every_split",)
PLANTED_SPLIT = {bug: _split_kernel(f"split_kv_{bug}", bug) for bug in SPLIT_BUGS}
