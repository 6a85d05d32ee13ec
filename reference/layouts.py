"""The oracle for attention over packed variable-length batches (flash-attention's varlen layout),
named as in the spec (spec/layouts.py).

A pack holds N sequences end to end: queries q (Nq, Hq, K) with cumulative lengths cu_seqlens_q
(N + 1,), keys and values (Nk, Hkv, .) with cu_seqlens_k. Sequence i is queries
cu_seqlens_q[i] .. cu_seqlens_q[i+1] - 1 and keys cu_seqlens_k[i] .. cu_seqlens_k[i+1] - 1; it
attends only within itself:

    O[cu_q[i] : cu_q[i+1]] = variant_attention(Q_i, K_i, V_i, scale, causal, window)

so causality and the window are per sequence, aligned bottom-right when a sequence's query and key
lengths differ (flash-attention's varlen kernels; ``causal="top_left"`` is offered too). A sequence
may be empty: with no keys its queries see nothing (context 0, the empty-row convention), with no
queries it contributes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.checks import CAUSAL_ALIGNMENTS, _fail, check_float_array, check_scale, value
from reference.variants import _check_window, variant_attention

__all__ = ["packed_attention"]


def _check_cu(name: str, cu: Any, total: int) -> np.ndarray:
    """cu is an int array (N + 1,), N >= 1, from 0, non-decreasing, ending at the packed length."""
    cu = value(cu)
    if not isinstance(cu, np.ndarray) or cu.dtype.kind not in "iu" or cu.ndim != 1:
        what = f"{cu.dtype} array {cu.shape}" if isinstance(cu, np.ndarray) else type(cu).__name__
        _fail("packed_attention", f"{name} must be a 1-D int array (N + 1,); got {what}")
    if cu.shape[0] < 2:
        _fail("packed_attention", f"{name} must hold N + 1 >= 2 offsets; got {cu.shape}")
    if cu[0] != 0:
        _fail("packed_attention", f"{name} must start at 0; got {cu[0]}")
    if (np.diff(cu) < 0).any():
        _fail("packed_attention", f"{name} must not decrease; got {cu.tolist()}")
    if cu[-1] != total:
        _fail("packed_attention", f"{name} must end at the packed length {total}; got {cu[-1]}")
    return cu


def check_packed(
    q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, scale: Any, causal: Any, window: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The rules of packed_attention's arguments; returns the two offset arrays."""
    check_float_array("packed_attention", "q", q, 3, "(Nq, Hq, K)")
    check_float_array("packed_attention", "k", k, 3, "(Nk, Hkv, K)")
    check_float_array("packed_attention", "v", v, 3, "(Nk, Hkv, Kv)")
    (Nq, Hq, K), (Nk, Hkv, Kk) = q.shape, k.shape
    if v.shape[:2] != (Nk, Hkv):
        _fail("packed_attention", f"v must be (Nk, Hkv, Kv) = ({Nk}, {Hkv}, .); got {v.shape}")
    if Kk != K:
        _fail("packed_attention", f"k must have q's head size K = {K}; got k {k.shape}")
    if Hq % Hkv:
        _fail("packed_attention", f"Hq = {Hq} must be a multiple of Hkv = {Hkv}")
    check_scale("packed_attention", scale)
    if causal is not None and causal not in CAUSAL_ALIGNMENTS:
        _fail(
            "packed_attention", f"causal must be None or one of {CAUSAL_ALIGNMENTS}; got {causal!r}"
        )
    _check_window("packed_attention", window)
    cq, ck = _check_cu("cu_seqlens_q", cu_q, Nq), _check_cu("cu_seqlens_k", cu_k, Nk)
    if cq.shape != ck.shape:
        _fail(
            "packed_attention",
            f"cu_seqlens_q and cu_seqlens_k must name the same N sequences; got {cq.shape} and "
            f"{ck.shape}",
        )
    return cq, ck


def packed_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    cu_seqlens_q: np.ndarray,
    cu_seqlens_k: np.ndarray,
    scale: float | None = None,
    causal: str | None = None,
    window: tuple[int, int] | None = None,
) -> np.ndarray:
    """O_i = softmax(scale Q_i K_i^T + mask_i) V_i for every sequence i of the pack
    (flash-attention's flash_attn_varlen_func), grouped heads as variant_attention's.

    q (Nq, Hq, K), k (Nk, Hkv, K), v (Nk, Hkv, Kv), cu_seqlens_q / cu_seqlens_k (N + 1,) ints
    -> (Nq, Hq, Kv). causal and window (left, right), -1 unbounded, per sequence, bottom-right
    aligned unless causal="top_left".
    """
    cq, ck = check_packed(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, causal, window)
    align = "top_left" if causal == "top_left" else "bottom_right"
    out = np.zeros((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype)  # (Nq, Hq, Kv)
    for i in range(len(cq) - 1):
        qs, ks = slice(cq[i], cq[i + 1]), slice(ck[i], ck[i + 1])
        if qs.start == qs.stop or ks.start == ks.stop:  # no query, or no key: context 0
            continue
        # (T_i, H, .) -> (1, H, T_i, .): heads before positions, as variant_attention takes them
        qi, ki, vi = (np.swapaxes(x[s], 0, 1)[None] for x, s in ((q, qs), (k, ks), (v, ks)))
        o = variant_attention(qi, ki, vi, None, scale, causal, window, align)  # (1, Hq, T_i, Kv)
        out[qs] = np.swapaxes(o[0], 0, 1)  # (T_i, Hq, Kv)
    return out
