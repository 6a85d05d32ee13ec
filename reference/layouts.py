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

__all__ = ["packed_attention", "paged_attention", "paged_cache_write"]


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
        _fail("packed_attention", f"Hq must be a multiple of Hkv; got Hq = {Hq}, Hkv = {Hkv}")
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


def _check_table(
    name: str, block_table: Any, cache_lens: Any, B: int
) -> tuple[np.ndarray, np.ndarray]:
    """block_table an int array (B, max_pages), cache_lens an int array (B,)."""
    table, lens = value(block_table), value(cache_lens)
    for label, x, shape in (("block_table", table, "(B, max_pages)"), ("cache_lens", lens, "(B,)")):
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
            _fail(name, f"{label} must be an int array {shape}; got {type(x).__name__}")
    if table.ndim != 2 or table.shape[0] != B or lens.shape != (B,):
        _fail(
            name,
            f"block_table must be (B, max_pages) and cache_lens (B,), B = {B}; got "
            f"{table.shape}, {lens.shape}",
        )
    return table, lens


def _check_paged(
    q: Any, k_pages: Any, v_pages: Any, block_table: Any, cache_lens: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The rules of the paged cache: pages (P, page_size, Hkv, .), a table (B, max_pages) whose
    pages in use are in [0, P), lengths (B,) from T to the table's capacity."""
    name = "paged_attention"
    check_float_array(name, "q", q, 4, "(B, Hq, T, K)")
    check_float_array(name, "k_pages", k_pages, 4, "(P, page_size, Hkv, K)")
    check_float_array(name, "v_pages", v_pages, 4, "(P, page_size, Hkv, Kv)")
    B, Hq, T, K = q.shape
    P, page, Hkv, Kk = k_pages.shape
    if v_pages.shape[:3] != (P, page, Hkv):
        _fail(
            name,
            f"v_pages must be (P, page_size, Hkv, Kv) = {(P, page, Hkv)} + (Kv,); got "
            f"{v_pages.shape}",
        )
    if Kk != K or Hq % Hkv:
        _fail(
            name, f"k_pages must have q's K = {K} and Hkv dividing Hq = {Hq}; got {k_pages.shape}"
        )
    table, lens = _check_table(name, block_table, cache_lens, B)
    if (lens < T).any():
        _fail(
            name,
            f"cache_lens must be >= T = {T} (the cache holds the new tokens); got {lens.tolist()}",
        )
    capacity = table.shape[1] * page
    if (lens > capacity).any():
        _fail(
            name, f"cache_lens must be <= max_pages x page_size = {capacity}; got {lens.tolist()}"
        )
    for b in range(B):
        used = table[b, : -(-int(lens[b]) // page)]
        if ((used < 0) | (used >= P)).any():
            _fail(name, f"block_table[{b}]'s pages in use must be in [0, {P}); got {used.tolist()}")
    return table, lens


def gather_pages(pages: np.ndarray, table_row: np.ndarray, length: int) -> np.ndarray:
    """One sequence's cache, contiguous: (P, page_size, H, .) pages in table order ->
    (length, H, .)."""
    page = pages.shape[1]
    used = table_row[: -(-length // page)]
    return pages[used].reshape(-1, *pages.shape[2:])[:length]  # (n_pages * page_size, H, .)


def paged_attention(
    q: np.ndarray,
    k_pages: np.ndarray,
    v_pages: np.ndarray,
    block_table: np.ndarray,
    cache_lens: np.ndarray,
    scale: float | None = None,
    causal: bool = True,
    window: tuple[int, int] | None = None,
) -> np.ndarray:
    """Attention of new queries over a paged key/value cache (vLLM's PagedAttention, FlashInfer's
    paged kv, flash-attention's block_table): sequence b's key s is page block_table[b, s // P_s],
    slot s % P_s (P_s the page size), for s < cache_lens[b].

    q (B, Hq, T, K) are the last T tokens of each sequence (decode T = 1, chunked prefill T > 1):
    the cache already holds their keys, so query t sits at position cache_lens[b] - T + t and, when
    causal, sees keys up to it (bottom-right). -> (B, Hq, T, Kv) = variant_attention over each
    sequence's gathered cache.
    """
    table, lens = _check_paged(q, k_pages, v_pages, block_table, cache_lens)
    check_scale("paged_attention", scale)
    if not isinstance(causal, (bool, np.bool_)):
        _fail("paged_attention", f"causal must be True or False; got {causal!r}")
    _check_window("paged_attention", window)
    rows = []
    for b in range(q.shape[0]):
        L = int(lens[b])
        k = np.swapaxes(gather_pages(k_pages, table[b], L), 0, 1)[None]  # (1, Hkv, L, K)
        v = np.swapaxes(gather_pages(v_pages, table[b], L), 0, 1)[None]  # (1, Hkv, L, Kv)
        c = "bottom_right" if causal else None
        rows.append(variant_attention(q[b : b + 1], k, v, None, scale, c, window, "bottom_right"))
    return np.concatenate(rows, axis=0)  # (B, Hq, T, Kv)


def paged_cache_write(
    pages: np.ndarray, block_table: np.ndarray, cache_lens: np.ndarray, new: np.ndarray
) -> np.ndarray:
    """The pages with new (B, T, H, K) written at sequence b's positions cache_lens[b] ..
    cache_lens[b] + T - 1 (the cache's length before the write): pages (P, page_size, H, K) -> the
    same shape, every other slot unchanged. Refused, it writes nothing (a new array is returned;
    the input is never modified)."""
    name = "paged_cache_write"
    check_float_array(name, "pages", pages, 4, "(P, page_size, H, K)")
    check_float_array(name, "new", new, 4, "(B, T, H, K)")
    P, page, H, K = pages.shape
    B, T = new.shape[:2]
    if new.shape[2:] != (H, K) or new.dtype != pages.dtype:
        _fail(
            name,
            f"new must be (B, T, H, K) with H, K = {(H, K)} in {pages.dtype}; got {new.shape} "
            f"{new.dtype}",
        )
    table, lens = _check_table(name, block_table, cache_lens, B)
    if (lens < 0).any() or (lens + T > table.shape[1] * page).any():
        _fail(
            name,
            f"cache_lens must be >= 0 and cache_lens + T <= max_pages x page_size = "
            f"{table.shape[1] * page}; got {lens.tolist()} + T = {T}",
        )
    slots = [
        (int(table[b, (int(lens[b]) + t) // page]), (int(lens[b]) + t) % page)
        for b in range(B)
        for t in range(T)
    ]
    if any(not 0 <= p < P for p, _ in slots):
        bad = sorted({p for p, _ in slots if not 0 <= p < P})
        _fail(name, f"the written slots' pages must be in [0, {P}); got pages {bad}")
    if len(set(slots)) != len(slots):
        _fail(
            name,
            "every written token must have a slot of its own; got "
            f"{len(slots) - len(set(slots))} tokens on slots already written",
        )
    out = pages.copy()
    for (p, s), x in zip(slots, new.reshape(B * T, H, K), strict=True):
        out[p, s] = x
    return out
