"""Mask builders. Convention everywhere in the suite: a boolean mask is True where a query MAY
attend.

torch's ``nn.MultiheadAttention`` uses the opposite meaning; its adapter inverts, the spec never
does.
"""

from __future__ import annotations

import numpy as np

from reference.checks import CAUSAL_ALIGNMENTS

# The components (the numpy adapter re-exports exactly these).
__all__ = ["causal_mask", "key_padding_mask"]


def causal_mask(T: int, S: int, alignment: str = "top_left") -> np.ndarray:
    """Causal mask (T, S), True where query t may see key s.

    top_left (torch ``is_causal``, jax ``is_causal``):   allowed[t, s] = s <= t
    bottom_right (flash-attention >= 2.1, ONNX):          allowed[t, s] = s <= t + (S - T)
    The two agree when T == S. Bottom-right aligns the LAST query with the last key, as in
    decoding with a key/value cache; with T > S its first T - S rows see no key at all.
    """
    if not (
        isinstance(T, (int, np.integer)) and isinstance(S, (int, np.integer)) and T >= 1 and S >= 1
    ):
        raise ValueError(f"causal_mask: T and S must be positive ints; got T={T!r}, S={S!r}")
    if alignment not in CAUSAL_ALIGNMENTS:
        raise ValueError(
            f"causal_mask: alignment must be one of {CAUSAL_ALIGNMENTS}; got {alignment!r}"
        )
    offset = 0 if alignment == "top_left" else S - T
    t = np.arange(T)[:, None]  # (T, 1)
    s = np.arange(S)[None, :]  # (1, S)
    return s <= t + offset  # (T, S)


def key_padding_mask(lengths: np.ndarray, S: int) -> np.ndarray:
    """Key-padding mask (B, 1, 1, S) from per-item key lengths: allowed[b, :, :, s] = s <
    lengths[b].

    A length of 0 masks every key of that item (every query row of it is then fully masked).
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or lengths.size == 0:
        raise ValueError(
            "key_padding_mask: lengths must be a non-empty 1-D int array (B,); got "
            f"{lengths.dtype} {lengths.shape}"
        )
    if not isinstance(S, (int, np.integer)) or S < 1:
        raise ValueError(f"key_padding_mask: S must be a positive int; got {S!r}")
    if (lengths < 0).any() or (lengths > S).any():
        raise ValueError(
            f"key_padding_mask: lengths must lie in [0, S={S}]; got {lengths.tolist()}"
        )
    allowed = np.arange(S)[None, :] < lengths[:, None]  # (B, S)
    return allowed[:, None, None, :]  # (B, 1, 1, S)
