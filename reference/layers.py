"""The oracle for the Transformer's position-wise layers: positional encoding, embeddings, FFN,
LayerNorm, Add & Norm, dropout. Small pure functions, computing in their inputs' dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.checks import check_float_array, is_array, value
from reference.numerics import average

# The components (the numpy adapter re-exports exactly these).
__all__ = [
    "add_and_norm",
    "dropout",
    "embed_with_positions",
    "layer_norm",
    "position_wise_ffn",
    "rms_norm",
    "sinusoidal_positional_encoding",
    "tied_output_logits",
    "token_embedding",
]

FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")


def _check_base(component: str, base: float) -> None:
    """base is a finite real number > 1 (base = 1 makes every frequency 1; below 1 they grow)."""
    if isinstance(base, bool) or not (
        isinstance(base, (int, float, np.integer, np.floating)) and np.isfinite(base) and base > 1
    ):
        raise ValueError(f"{component}: base must be a finite number > 1; got {base!r}")


def sinusoidal_positional_encoding(
    T: int, D: int, base: float = 10000.0, dtype: str = "float32"
) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / base^(2i/D)),  PE[pos, 2i+1] = cos(pos / base^(2i/D))  (Vaswani et
    al. 2017, 3.5).

    -> (T, D) in ``dtype``. Odd D: the last column is the sine of the next frequency pair, whose
    cosine is dropped (the even/odd interleaving simply stops at D), as the tensor2tensor layout
    truncates. The angle pos / base^(2i/D) is formed in float64 for every output dtype up to float64
    (in the output's own precision above it): a float32 product of a position near 1e4 and a
    frequency is off by ~1e-3 rad, which is the known precision failure. ``dtype`` names a floating
    dtype: float32 by default (the libraries' default float), float64, float16, bfloat16 (or the
    oracle's extended precision).
    """
    if not (
        isinstance(T, (int, np.integer)) and isinstance(D, (int, np.integer)) and T >= 1 and D >= 1
    ):
        raise ValueError(
            f"sinusoidal_positional_encoding: T and D must be positive ints; got T={T!r}, D={D!r}"
        )
    _check_base("sinusoidal_positional_encoding", base)
    try:
        floating = np.dtype(dtype).kind == "f" or np.dtype(dtype).name == "bfloat16"
    except TypeError:
        floating = False
    if not floating:
        raise ValueError(
            f"sinusoidal_positional_encoding: dtype must name a floating dtype {FLOAT_NAMES}; got "
            f"{dtype!r}"
        )
    work: type[np.floating[Any]] = np.longdouble if np.dtype(dtype) == np.longdouble else np.float64
    pos = np.arange(T, dtype=work)[:, None]  # (T, 1)
    two_i = np.arange(0, D, 2, dtype=work)[None, :]  # (1, ceil(D/2))
    angle = pos / np.power(work(base), two_i / D)  # (T, ceil(D/2))
    pe = np.empty((T, D), dtype=work)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : D // 2])
    return pe.astype(dtype)


def _check_tokens(component: str, tokens: np.ndarray, table: np.ndarray) -> None:
    check_float_array(component, "table", table, 2, "(V, D)")
    if not is_array(tokens) or tokens.dtype.kind not in "iu" or tokens.ndim != 2:
        raise ValueError(
            f"{component}: tokens must be an int array (B, T); "
            f"got {getattr(tokens, 'dtype', type(tokens).__name__)} {getattr(tokens, 'shape', '')}"
        )
    if 0 in tokens.shape:
        raise ValueError(
            f"{component}: tokens must be (B, T) with B, T >= 1; got shape {tokens.shape}"
        )
    V = table.shape[0]
    if tokens.min() < 0 or tokens.max() >= V:
        raise ValueError(
            f"{component}: token ids must lie in [0, V={V}); got min {tokens.min()}, max "
            f"{tokens.max()}"
        )


def token_embedding(tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Emb(tokens) = E[tokens] * sqrt(D)  (Vaswani et al. 2017, 3.4).  tokens (B, T) int, E (V, D)
    -> (B, T, D)."""
    _check_tokens("token_embedding", tokens, table)
    return table[tokens] * table.dtype.type(np.sqrt(table.shape[1]))  # (B, T, D)


def embed_with_positions(
    tokens: np.ndarray, table: np.ndarray, base: float = 10000.0
) -> np.ndarray:
    """X = E[tokens] sqrt(D) + PE[:T]  -> (B, T, D)."""
    _check_tokens("embed_with_positions", tokens, table)
    _check_base("embed_with_positions", base)
    h = token_embedding(tokens, table)
    return h + sinusoidal_positional_encoding(
        tokens.shape[-1], table.shape[1], base, dtype=table.dtype.name
    )


def tied_output_logits(h: np.ndarray, table: np.ndarray) -> np.ndarray:
    """logits = h E^T: the output projection shares the embedding matrix (Press & Wolf 2017).

    h (..., D), E (V, D) -> (..., V): every position is projected alone, whatever the leading axes.
    """
    ndim = value(h).ndim if is_array(h) and value(h).ndim >= 1 else 1
    check_float_array("tied_output_logits", "h", h, ndim, "(..., D)")
    check_float_array("tied_output_logits", "table", table, 2, "(V, D)")
    if h.shape[-1] != table.shape[1]:
        raise ValueError(
            f"tied_output_logits: h must be (..., D={table.shape[1]}) to match E (V, "
            f"D)={table.shape}; got {h.shape}"
        )
    return np.matmul(h, table.T).astype(h.dtype)  # (..., V)


ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
# The error function, elementwise in float64 (math.erf); reference/autodiff.py gives it its
# derivative.
erf = np.vectorize(math.erf, otypes=[np.float64])


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    """relu: max(0, x); gelu: x Phi(x) with the exact erf; gelu_tanh: the tanh approximation."""
    if name == "relu":
        return np.maximum(x, x.dtype.type(0))
    x64: np.ndarray = x.astype(np.longdouble if x.dtype == np.longdouble else np.float64)
    if name == "gelu":
        phi = 0.5 * (1.0 + erf(x64 / np.sqrt(2.0)))
        return (x64 * phi).astype(x.dtype)
    if name == "gelu_tanh":
        return (
            0.5 * x64 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64**3)))
        ).astype(x.dtype)
    raise ValueError(f"activation must be one of {ACTIVATIONS}; got {name!r}")


def position_wise_ffn(
    x: np.ndarray, params: Mapping[str, np.ndarray], activation: str = "relu"
) -> np.ndarray:
    """FFN(x) = act(x W1 + b1) W2 + b2, the same at every position  (Vaswani et al. 2017, eq. 2).

    x (..., D), W1 (D, F), b1 (F,), W2 (F, D), b2 (D,) -> (..., D).
    """
    if not is_array(x) or x.ndim < 1:
        raise ValueError(
            "position_wise_ffn: x must be an array (..., D); got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    D = x.shape[-1]
    w1, w2 = params.get("w1"), params.get("w2")
    if w1 is None or w1.ndim != 2 or w1.shape[0] != D:
        raise ValueError(
            f"position_wise_ffn: params['w1'] must be (D={D}, F); got {getattr(w1, 'shape', w1)}"
        )
    F = w1.shape[1]
    if w2 is None or w2.shape != (F, D):
        raise ValueError(
            f"position_wise_ffn: params['w2'] must be (F, D)=({F}, {D}); got "
            f"{getattr(w2, 'shape', w2)}"
        )
    for name, want in (("b1", (F,)), ("b2", (D,))):
        got = getattr(params.get(name), "shape", None)
        if got != want:
            raise ValueError(f"position_wise_ffn: params[{name!r}] must be {want}; got {got}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"position_wise_ffn: activation must be one of {ACTIVATIONS}; got {activation!r}"
        )
    h = np.matmul(x, w1.astype(x.dtype)).astype(x.dtype) + params["b1"].astype(x.dtype)  # (..., F)
    h = _activation(h, activation)
    return np.matmul(h, w2.astype(x.dtype)).astype(x.dtype) + params["b2"].astype(
        x.dtype
    )  # (..., D)


def _layer_norm(
    component: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> np.ndarray:
    check_float_array(component, "x", x, x.ndim if is_array(x) and x.ndim else 1, "(..., D)")
    D = x.shape[-1]
    if getattr(gamma, "shape", None) != (D,) or getattr(beta, "shape", None) != (D,):
        raise ValueError(
            f"{component}: gamma and beta must be (D,)=({D},); got "
            f"{getattr(gamma, 'shape', gamma)}, "
            f"{getattr(beta, 'shape', beta)}"
        )
    if isinstance(eps, bool) or not (
        isinstance(eps, (int, float, np.integer, np.floating)) and np.isfinite(eps) and eps >= 0
    ):
        raise ValueError(f"{component}: eps must be a finite number >= 0; got {eps!r}")
    if eps == 0 and (value(x).max(-1) == value(x).min(-1)).any():  # exactly, in every precision
        raise ValueError(
            f"{component}: eps = 0 expected every row of x to vary (0/0 otherwise); got a constant "
            "row"
        )
    mean = average(x, axis=-1, keepdims=True)  # (..., 1)
    var = average((x - mean) ** 2, axis=-1, keepdims=True)  # (..., 1): biased
    normed = (x - mean) / np.sqrt(var + x.dtype.type(eps))  # (..., D)
    return (normed * gamma.astype(x.dtype) + beta.astype(x.dtype)).astype(x.dtype)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """LN(x) = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis  (Ba et al. 2016).

    var is the biased variance (divide by D, not D - 1) and eps is inside the square root: torch's
    nn.LayerNorm convention, which flax and the paper's tensor2tensor share. eps >= 0; with eps = 0
    a constant row (zero variance, D = 1 included) is refused: its normalisation is 0/0.
    """
    return _layer_norm("layer_norm", x, gamma, beta, eps)


def rms_norm(x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * gamma over the last axis  (Zhang & Sennrich 2019).

    No centring and no shift (T5, LLaMA); eps inside the square root, as torch's F.rms_norm and
    flax's nn.RMSNorm. eps >= 0; with eps = 0 a row of zeros is refused: its normalisation is 0/0.
    """
    check_float_array("rms_norm", "x", x, x.ndim if is_array(x) and x.ndim else 1, "(..., D)")
    D = x.shape[-1]
    if getattr(gamma, "shape", None) != (D,):
        raise ValueError(
            f"rms_norm: gamma must be (D,)=({D},); got {getattr(gamma, 'shape', gamma)}"
        )
    if isinstance(eps, bool) or not (
        isinstance(eps, (int, float, np.integer, np.floating)) and np.isfinite(eps) and eps >= 0
    ):
        raise ValueError(f"rms_norm: eps must be a finite number >= 0; got {eps!r}")
    if eps == 0 and (value(x) == 0).all(-1).any():  # exactly, in every precision
        raise ValueError("rms_norm: eps = 0 expected no row of x to be all zeros (0/0); got one")
    ms = average(x * x, axis=-1, keepdims=True)  # (..., 1): the mean square
    return (x / np.sqrt(ms + x.dtype.type(eps)) * gamma.astype(x.dtype)).astype(x.dtype)


def add_and_norm(
    x: np.ndarray, sublayer_out: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> np.ndarray:
    """Post-LN Add & Norm: LayerNorm(x + Sublayer(x))  (Vaswani et al. 2017, 3.1)."""
    if not is_array(sublayer_out) or sublayer_out.shape != getattr(x, "shape", None):
        raise ValueError(
            f"add_and_norm: sublayer_out must have x's shape {getattr(x, 'shape', None)}; "
            f"got {getattr(sublayer_out, 'shape', None)}"
        )
    return _layer_norm("add_and_norm", x + sublayer_out, gamma, beta, eps)


def dropout(x: np.ndarray, p: float, training: bool = False, seed: int = 0) -> np.ndarray:
    """Dropout (Srivastava et al. 2014), inverted: each entry kept with probability 1 - p and scaled
    by 1 / (1 - p), else 0; the identity when not training. The random draw is the adapter's own, so
    only properties are checked in training mode, never values. seed: any int in [-2^63, 2^63), the
    name of a stream (its bits seed NumPy's generator here; the spec fixes no stream)."""
    if isinstance(p, bool) or not (
        isinstance(p, (int, float, np.integer, np.floating)) and 0 <= p <= 1
    ):
        raise ValueError(f"dropout: p must be a number in [0, 1]; got {p!r}")
    if isinstance(seed, bool) or not (
        isinstance(seed, (int, np.integer)) and -(2**63) <= seed < 2**63
    ):
        raise ValueError(f"dropout: seed must be an int in [-2^63, 2^63); got {seed!r}")
    if not training or p == 0:
        return x.copy()
    if p == 1:
        return np.zeros_like(x)
    keep = np.random.default_rng(int(seed) % 2**64).random(x.shape) >= p
    return np.where(keep, x / x.dtype.type(1 - p), x.dtype.type(0)).astype(x.dtype)
