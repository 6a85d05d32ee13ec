"""The oracle for teacher forcing and the loss: shift right, cross-entropy with padding and label
smoothing."""

from __future__ import annotations

import numpy as np

from reference.checks import is_array
from reference.numerics import average, total

# The components (the numpy adapter re-exports exactly these).
__all__ = ["cross_entropy", "shift_right"]


def shift_right(targets: np.ndarray, bos: int, pad: int) -> np.ndarray:
    """Decoder input under teacher forcing: [BOS] + target[:-1]  (Vaswani et al. 2017, 3; Williams &
    Zipser 1989).

    targets (B, T) int -> (B, T): BOS first, the last token dropped. Padding stays padding: a
    position whose target is padding gets ``pad`` as input too (it is masked out of the loss
    anyway), so a sequence's real tokens are never shifted into its padded tail.
    """
    if not is_array(targets) or targets.ndim != 2 or targets.dtype.kind not in "iu":
        raise ValueError(
            f"shift_right: targets must be an int array (B, T); "
            f"got {getattr(targets, 'dtype', type(targets).__name__)} "
            f"{getattr(targets, 'shape', '')}"
        )
    if targets.shape[1] == 0:
        raise ValueError(f"shift_right: targets must have T >= 1; got shape {targets.shape}")
    shifted = np.concatenate(
        [np.full((targets.shape[0], 1), bos, dtype=targets.dtype), targets[:, :-1]], axis=1
    )  # (B, T)
    return np.where(targets == pad, targets.dtype.type(pad), shifted)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(x)_i = x_i - m - log sum_j exp(x_j - m)."""
    m = np.max(x, axis=axis, keepdims=True)
    return (x - m - np.log(total(np.exp(x - m), axis=axis, keepdims=True))).astype(x.dtype)


def cross_entropy(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100, label_smoothing: float = 0.0
) -> np.ndarray:
    """Mean over non-ignored positions of  -sum_v q(v) log p(v),  p = softmax(logits),
    q = (1 - eps) onehot(target) + eps / V  (Szegedy et al. 2016; eps = 0.1 in Vaswani et al. 2017).

    The smoothing mass eps is spread uniformly over the whole vocabulary of size V, the target class
    included, as torch's ``label_smoothing`` and optax's ``smooth_labels`` do; none goes to ignored
    positions, which contribute nothing. logits (..., V) with any leading axes ((V,): one position),
    targets of the leading shape -> scalar. ignore_index is any int, a real class included (a
    padding id). If every position is ignored the mean is over nothing: the spec refuses that (torch
    returns NaN).
    """
    if not is_array(logits) or logits.ndim < 1:
        raise ValueError(
            "cross_entropy: logits must be (..., V); got "
            f"{getattr(logits, 'shape', type(logits).__name__)}"
        )
    if (
        not is_array(targets)
        or targets.shape != logits.shape[:-1]
        or targets.dtype.kind not in "iu"
    ):
        raise ValueError(
            f"cross_entropy: targets must be ints of shape {logits.shape[:-1]}; "
            f"got {getattr(targets, 'dtype', '')} {getattr(targets, 'shape', '')}"
        )
    if isinstance(label_smoothing, bool) or not 0.0 <= label_smoothing <= 1.0:  # NaN too
        raise ValueError(
            f"cross_entropy: label_smoothing must lie in [0, 1]; got {label_smoothing!r}"
        )
    V = logits.shape[-1]
    keep = targets != ignore_index
    if not keep.any():
        raise ValueError(
            f"cross_entropy: targets must hold a position not equal to ignore_index={ignore_index} "
            "(a mean over no "
            "positions is undefined); got every target ignored"
        )
    if (targets[keep] < 0).any() or (targets[keep] >= V).any():
        raise ValueError(
            f"cross_entropy: targets must lie in [0, V={V}) or equal ignore_index={ignore_index}; "
            f"got {np.unique(targets[keep]).tolist()}"
        )
    logp = log_softmax(logits, axis=-1)  # (..., V)
    onehot = np.where(keep, targets, 0)[..., None] == np.arange(V)  # (..., V): the target class
    # (...,): log p(target), exact (one nonzero term)
    picked = total(np.where(onehot, logp, logp.dtype.type(0)), axis=-1)
    smooth = average(logp, axis=-1)  # (...,)
    per_position = -(1 - label_smoothing) * picked - label_smoothing * smooth  # (...,)
    return (
        average(per_position[keep], axis=0, keepdims=True).reshape(()).astype(logits.dtype)
    )  # () as an array
