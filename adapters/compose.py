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
