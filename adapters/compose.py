"""Compositions an adapter builds from its own components, where its library has no single
function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def encoder_decoder_from(
    adapter: Any,
    log_softmax: Callable[[np.ndarray], np.ndarray],
    src_tokens: np.ndarray,
    tgt_in: np.ndarray,
    params: Mapping[str, Any],
    num_heads: int,
    src_lengths: np.ndarray | None,
    norm_first: bool,
    activation: str,
    eps: float,
) -> np.ndarray:
    """The encoder-decoder of reference/model.py, wired from the adapter's own embedding, encoder,
    decoder and tied-logits components, with the library's own log-softmax at the end."""
    mask = None
    if src_lengths is not None:  # (B, 1, 1, S), True = may attend
        mask = (
            np.arange(src_tokens.shape[1])[None, None, None, :]
            < np.asarray(src_lengths)[:, None, None, None]
        )
    x = adapter.embed_with_positions(src_tokens, params["src_table"])  # (B, S, D)
    memory = adapter.encoder(
        x,
        params["encoder"],
        num_heads,
        mask,
        norm_first,
        activation,
        eps,
        params.get("encoder_norm"),
    )
    y = adapter.embed_with_positions(tgt_in, params["tgt_table"])  # (B, T, D)
    h = adapter.decoder(
        y,
        memory,
        params["decoder"],
        num_heads,
        mask,
        norm_first,
        activation,
        eps,
        params.get("decoder_norm"),
    )
    return log_softmax(adapter.tied_output_logits(h, params["tgt_table"]))  # (B, T, V)


def pack_offsets(
    cu_seqlens_q: Any, cu_seqlens_k: Any, Nq: int, Nk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A pack's offsets as an adapter needs them to lay the pack out for a library that takes no
    cu_seqlens: (cq, ck, query lengths, key lengths). Offsets it cannot lay out are refused here, by
    the adapter's mapping (not by the library)."""
    cq, ck = np.asarray(cu_seqlens_q), np.asarray(cu_seqlens_k)
    if cq.shape != ck.shape or cq.ndim != 1 or cq.dtype.kind not in "iu":
        raise ValueError(f"cu_seqlens must be two int arrays (N + 1,); got {cq!r}, {ck!r}")
    T, S = np.diff(cq), np.diff(ck)
    if cq[0] != 0 or ck[0] != 0 or (T < 0).any() or (S < 0).any():
        raise ValueError(f"cu_seqlens must start at 0 and not decrease; got {cq}, {ck}")
    if cq[-1] != Nq or ck[-1] != Nk:
        raise ValueError(f"cu_seqlens must end at Nq={Nq}, Nk={Nk}; got {cq[-1]}, {ck[-1]}")
    return cq, ck, T, S


class ThroughVariants:
    """scaled_dot_product_attention and grouped_query_attention as variant_attention with every
    variant off, for adapters whose library has one attention entry point (HF's attention layers,
    ORT's GroupQueryAttention)."""

    variant_attention: Callable[..., np.ndarray]

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self.variant_attention(q, k, v, mask=mask, scale=scale, causal=causal)

    def grouped_query_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self.variant_attention(q, k, v, mask=mask, scale=scale, causal=causal)


def check_align(align: Any) -> None:
    """The alignments a mapping can translate (the library has no such argument to refuse it)."""
    if align not in ("bottom_right", "top_left"):
        raise ValueError(f"align must be 'bottom_right' or 'top_left'; got {align!r}")
