"""The oracle for the whole encoder-decoder Transformer (Vaswani et al. 2017, figure 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.layers import _check_tokens, embed_with_positions, tied_output_logits
from reference.masks import key_padding_mask
from reference.stacks import check_options, decoder, encoder
from reference.training import log_softmax

# The components (the numpy adapter re-exports exactly these).
__all__ = ["encoder_decoder"]


def encoder_decoder(
    src_tokens: np.ndarray,
    tgt_in: np.ndarray,
    params: Mapping[str, Any],
    num_heads: int,
    src_lengths: np.ndarray | None = None,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
) -> np.ndarray:
    """log p(y_t | y_<t, x) at every target position, under teacher forcing:

        memory = Encoder(E_src[x] sqrt(D) + PE) h      = Decoder(E_tgt[tgt_in] sqrt(D) + PE, memory)
        (causal self-attention) logp   = log_softmax(h E_tgt^T)                             (output
        projection tied to E_tgt)

    src_tokens (B, S), tgt_in (B, T) = shift_right(targets) -> (B, T, V). params: src_table (V, D),
    tgt_table (V, D), encoder / decoder (lists of layer params), optional encoder_norm /
    decoder_norm. src_lengths (B,) masks the source's padded tail in the encoder and in
    cross-attention.
    """
    for key in ("src_table", "tgt_table", "encoder", "decoder"):
        if key not in params:
            raise ValueError(
                "encoder_decoder: params must have src_table, tgt_table, encoder, decoder; got "
                f"{sorted(params)}"
            )
    _check_tokens("encoder_decoder", src_tokens, params["src_table"])
    _check_tokens("encoder_decoder", tgt_in, params["tgt_table"])
    check_options("encoder_decoder", activation, eps)
    D = params["src_table"].shape[1]
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1 or D % num_heads:
        raise ValueError(
            f"encoder_decoder: D must be divisible by H = num_heads; got D={D}, H={num_heads!r}"
        )
    if src_lengths is not None:
        lengths = np.asarray(src_lengths)
        B, S = src_tokens.shape
        if (
            lengths.shape != (B,)
            or lengths.dtype.kind not in "iu"
            or (lengths < 0).any()
            or (lengths > S).any()
        ):
            raise ValueError(
                f"encoder_decoder: src_lengths must be (B,)=({B},) ints in [0, S={S}]; got "
                f"{lengths.shape} {lengths.tolist()}"
            )
    mask = (
        None
        if src_lengths is None
        else key_padding_mask(np.asarray(src_lengths), src_tokens.shape[1])
    )  # (B, 1, 1, S)
    memory = encoder(
        embed_with_positions(src_tokens, params["src_table"]),
        params["encoder"],
        num_heads,
        mask,
        norm_first,
        activation,
        eps,
        params.get("encoder_norm"),
    )  # (B, S, D)
    h = decoder(
        embed_with_positions(tgt_in, params["tgt_table"]),
        memory,
        params["decoder"],
        num_heads,
        mask,
        norm_first,
        activation,
        eps,
        params.get("decoder_norm"),
    )  # (B, T, D)
    return log_softmax(tied_output_logits(h, params["tgt_table"]), axis=-1)  # (B, T, V)
