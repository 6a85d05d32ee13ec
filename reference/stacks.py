"""The oracle for encoder and decoder layers and stacks (Vaswani et al. 2017, 3.1).

Canonical parameters of one layer (weights act on the right, y = x W + b, as everywhere in the spec):
    encoder layer: {"self_attn": MHA params, "ffn": {w1, b1, w2, b2}, "norm1": {gamma, beta}, "norm2": ...}
    decoder layer: adds "cross_attn" (MHA params) and "norm3"
A stack is a list of layer params, with an optional final {gamma, beta} norm (pre-LN stacks need one).
Placement: post-LN (the paper)  x = LN(x + Sublayer(x));  pre-LN  x = x + Sublayer(LN(x)).
The decoder's self-attention is always causal (top-left: position t sees targets <= t).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reference.attention import multi_head_attention
from reference.layers import layer_norm, position_wise_ffn

Params = Mapping[str, Any]


def _norm(x: np.ndarray, p: Params, eps: float) -> np.ndarray:
    return layer_norm(x, p["gamma"], p["beta"], eps)


def _residual(x: np.ndarray, sublayer: Any, norm: Params, norm_first: bool, eps: float) -> np.ndarray:
    """post-LN: LN(x + f(x));  pre-LN: x + f(LN(x))."""
    if norm_first:
        return x + sublayer(_norm(x, norm, eps))
    return _norm(x + sublayer(x), norm, eps)


def _check_layer(component: str, x: np.ndarray, params: Params, keys: tuple[str, ...], num_heads: int) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{component}: x must be a non-empty array (B, T, D); got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1 or x.shape[-1] % num_heads:
        raise ValueError(f"{component}: D must be divisible by H = num_heads; got D={x.shape[-1]}, H={num_heads!r}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"{component}: params must have {keys}; got {sorted(params)} (missing {missing})")


def encoder_layer(
    x: np.ndarray,
    params: Params,
    num_heads: int,
    mask: np.ndarray | None = None,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
) -> np.ndarray:
    """x -> AddNorm(x, SelfAttention(x)) -> AddNorm(., FFN(.)).  x (B, T, D) -> (B, T, D)."""
    _check_layer("encoder_layer", x, params, ("self_attn", "ffn", "norm1", "norm2"), num_heads)
    attend = lambda h: multi_head_attention(h, h, h, params["self_attn"], num_heads, mask=mask)  # noqa: E731
    x = _residual(x, attend, params["norm1"], norm_first, eps)
    return _residual(x, lambda h: position_wise_ffn(h, params["ffn"], activation), params["norm2"], norm_first, eps)


def decoder_layer(
    y: np.ndarray,
    memory: np.ndarray,
    params: Params,
    num_heads: int,
    memory_mask: np.ndarray | None = None,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
) -> np.ndarray:
    """y -> AddNorm(y, CausalSelfAttention(y)) -> AddNorm(., CrossAttention(., memory)) -> AddNorm(., FFN(.)).

    y (B, T, D), memory (B, S, D) -> (B, T, D); memory_mask broadcastable to (B, H, T, S).
    """
    _check_layer("decoder_layer", y, params, ("self_attn", "cross_attn", "ffn", "norm1", "norm2", "norm3"), num_heads)
    if not isinstance(memory, np.ndarray) or memory.ndim != 3 or memory.shape[0] != y.shape[0] or memory.shape[2] != y.shape[2]:
        raise ValueError(
            f"decoder_layer: memory must be (B, S, D)=({y.shape[0]}, S, {y.shape[2]}); got {getattr(memory, 'shape', None)}"
        )
    self_attend = lambda h: multi_head_attention(h, h, h, params["self_attn"], num_heads, causal="top_left")  # noqa: E731
    cross_attend = lambda h: multi_head_attention(h, memory, memory, params["cross_attn"], num_heads, mask=memory_mask)  # noqa: E731
    y = _residual(y, self_attend, params["norm1"], norm_first, eps)
    y = _residual(y, cross_attend, params["norm2"], norm_first, eps)
    return _residual(y, lambda h: position_wise_ffn(h, params["ffn"], activation), params["norm3"], norm_first, eps)


def encoder(
    x: np.ndarray,
    layers: Sequence[Params],
    num_heads: int,
    mask: np.ndarray | None = None,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
    final_norm: Params | None = None,
) -> np.ndarray:
    """N encoder layers, then the optional final LayerNorm.  (B, T, D) -> (B, T, D)."""
    if not layers:
        raise ValueError("encoder: layers must hold at least one layer's params; got none")
    _check_layer("encoder", x, layers[0], (), num_heads)
    for params in layers:
        x = encoder_layer(x, params, num_heads, mask, norm_first, activation, eps)
    return x if final_norm is None else _norm(x, final_norm, eps)


def decoder(
    y: np.ndarray,
    memory: np.ndarray,
    layers: Sequence[Params],
    num_heads: int,
    memory_mask: np.ndarray | None = None,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
    final_norm: Params | None = None,
) -> np.ndarray:
    """N decoder layers over the encoder's memory, then the optional final LayerNorm.  (B, T, D) -> (B, T, D)."""
    if not layers:
        raise ValueError("decoder: layers must hold at least one layer's params; got none")
    _check_layer("decoder", y, layers[0], (), num_heads)
    for params in layers:
        y = decoder_layer(y, memory, params, num_heads, memory_mask, norm_first, activation, eps)
    return y if final_norm is None else _norm(y, final_norm, eps)
