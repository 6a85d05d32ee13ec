"""Deliberately broken packed attention (spec/layouts.py): a per-sequence loop over the reference's
variant_attention with one bug varlen kernels have had, and the property that must catch it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

import reference as R


def _adapter(name: str, bug: str) -> SimpleNamespace:
    def packed_attention(
        q, k, v, cu_seqlens_q, cu_seqlens_k, scale=None, causal=None, window=None
    ) -> Any:
        cq, ck = np.asarray(cu_seqlens_q), np.asarray(cu_seqlens_k)
        if bug == "query_offsets_for_keys":  # a self-attention kernel's assumption
            ck = np.minimum(cq, k.shape[0])
        out = np.zeros((q.shape[0], q.shape[1], v.shape[2]), q.dtype)
        for n in range(len(cq) - 1):
            qs, ks = slice(cq[n], cq[n + 1]), slice(ck[n], ck[n + 1])
            if bug == "no_document_mask":  # every query sees the whole pack
                ks = slice(0, k.shape[0])
            if bug == "keys_shifted":  # sequence n's keys read one token late
                ks = slice(min(ck[n] + 1, k.shape[0] - 1), min(ck[n + 1] + 1, k.shape[0]))
            if qs.start == qs.stop:
                continue
            if ks.start == ks.stop:
                if bug == "empty_sequence_sees_the_pack":  # no keys: fall back to all of them
                    ks = slice(0, k.shape[0])
                else:
                    continue
            align = (
                "top_left" if causal == "top_left" or bug == "causal_top_left" else "bottom_right"
            )
            c = None if causal is None else align
            one = [np.swapaxes(x[s], 0, 1)[None] for x, s in ((q, qs), (k, ks), (v, ks))]
            w = window
            if bug == "window_global" and window is not None:
                # the window measured from the pack's start: positions offset by the sequence's
                # place in the pack, as a kernel indexing tokens globally would
                shift = int(ck[n]) - int(cq[n])
                w = tuple(
                    -1 if b == -1 else max(0, b + s)
                    for b, s in zip(window, (shift, -shift), strict=True)
                )
            o = R.variant_attention(*one, None, scale, c, w, align)
            out[qs] = np.swapaxes(o[0], 0, 1)
        return out

    return SimpleNamespace(
        name=name, packed_attention=packed_attention, variant_attention=R.variant_attention
    )


PA = "packed_attention"
no_document_mask = _adapter("packed_no_document_mask", "no_document_mask")
query_offsets_for_keys = _adapter("packed_query_offsets_for_keys", "query_offsets_for_keys")
keys_shifted = _adapter("packed_keys_shifted", "keys_shifted")
causal_top_left = _adapter("packed_causal_top_left", "causal_top_left")
empty_sequence_sees_the_pack = _adapter(
    "packed_empty_sees_the_pack", "empty_sequence_sees_the_pack"
)
window_global = _adapter("packed_window_global", "window_global")

# (adapter, component, property, variant id, dtype): where each bug must be caught
CAUGHT_BY = [
    (no_document_mask, PA, "pack_is_its_sequences", "cross+causal", "float32"),
    (no_document_mask, PA, "matches_reference", "cross", "float32"),
    (query_offsets_for_keys, PA, "matches_reference", "cross", "float32"),
    (keys_shifted, PA, "pack_equals_the_padded_batch", "cross", "float32"),
    (causal_top_left, PA, "matches_reference", "cross+causal", "float32"),
    (causal_top_left, PA, "pack_equals_the_padded_batch", "cross+causal", "float32"),
    (empty_sequence_sees_the_pack, PA, "matches_reference", "empty+cross", "float32"),
    (window_global, PA, "matches_reference", "cross+window", "float32"),
]

# the same code with no bug on: it must pass wherever a bug above is caught
clean = _adapter("packed_clean", "none")
