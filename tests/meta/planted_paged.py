"""Deliberately broken paged caches (spec/paged.py): the reference's gather-then-attend with one bug
paged kernels have had, and the property that must catch it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

import reference as R


def _gather(pages: np.ndarray, row: np.ndarray, L: int, bug: str, b: int) -> np.ndarray:
    page = pages.shape[1]
    n = -(-L // page)
    if bug == "table_ignored":  # pages assumed laid out in order, sequence after sequence
        used = np.arange(n) + b * n
        used = np.minimum(used, pages.shape[0] - 1)
    else:
        used = row[:n]
    flat = pages[used].reshape(-1, *pages.shape[2:])
    return flat if bug == "whole_last_page" else flat[:L]  # the last page's unused slots read too


def _adapter(name: str, bug: str) -> SimpleNamespace:
    def paged_attention(
        q, k_pages, v_pages, block_table, cache_lens, scale=None, causal=True, window=None
    ) -> Any:
        rows = []
        for b in range(q.shape[0]):
            L = int(cache_lens[b])
            k, v = (
                np.swapaxes(_gather(p, block_table[b], L, bug, b), 0, 1)[None]
                for p in (k_pages, v_pages)
            )
            align = "top_left" if bug == "causal_top_left" else "bottom_right"
            c = (align if causal else None) if bug != "causal_dropped" else None
            rows.append(R.variant_attention(q[b : b + 1], k, v, None, scale, c, window, align))
        return np.concatenate(rows, axis=0)

    def paged_cache_write(pages, block_table, cache_lens, new) -> Any:
        if bug == "written_in_place_then_checked":  # a kernel that checks after writing
            page = pages.shape[1]
            for b in range(new.shape[0]):
                for t in range(new.shape[1]):
                    s = int(cache_lens[b]) + t
                    if s // page < block_table.shape[1]:
                        pages[block_table[b, s // page] % pages.shape[0], s % page] = new[b, t]
            return R.paged_cache_write(pages, block_table, cache_lens, new)
        if bug == "write_one_late":
            return R.paged_cache_write(pages, block_table, cache_lens + 1, new)
        return R.paged_cache_write(pages, block_table, cache_lens, new)

    return SimpleNamespace(
        name=name,
        paged_attention=paged_attention,
        paged_cache_write=paged_cache_write,
        variant_attention=R.variant_attention,
    )


PA, PW = "paged_attention", "paged_cache_write"
table_ignored = _adapter("paged_table_ignored", "table_ignored")
whole_last_page = _adapter("paged_whole_last_page", "whole_last_page")
causal_top_left = _adapter("paged_causal_top_left", "causal_top_left")
causal_dropped = _adapter("paged_causal_dropped", "causal_dropped")
written_in_place = _adapter("paged_written_in_place", "written_in_place_then_checked")
write_one_late = _adapter("paged_write_one_late", "write_one_late")

# (adapter, component, property, variant id, dtype): where each bug must be caught
CAUGHT_BY = [
    (table_ignored, PA, "pages_may_move", "decode", "float32"),
    (table_ignored, PA, "matches_reference", "decode", "float32"),
    (whole_last_page, PA, "page_size_is_free", "prefill", "float32"),
    (whole_last_page, PA, "paged_equals_the_contiguous_cache", "decode", "float32"),
    (causal_top_left, PA, "matches_reference", "decode", "float32"),
    (causal_dropped, PA, "matches_reference", "prefill", "float32"),
    (written_in_place, PW, "a_refused_write_writes_nothing", "prefill", "float32"),
    (write_one_late, PW, "matches_reference", "decode", "float32"),
]

# the same code with no bug on: it must pass wherever a bug above is caught
clean = _adapter("paged_clean", "none")
