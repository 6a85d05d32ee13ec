"""The oracle for encoder and decoder layers and stacks (Vaswani et al. 2017, 3.1).

Canonical parameters of one layer (weights act on the right, y = x W + b, as everywhere in the
spec):
    encoder layer: {"self_attn": MHA params, "ffn": {w1, b1, w2, b2}, "norm1": {gamma, beta},
    "norm2": ...} decoder layer: adds "cross_attn" (MHA params) and "norm3"
A stack is a list of layer params, with an optional final {gamma, beta} norm (pre-LN stacks need
one). Placement: post-LN (the paper)  x = LN(x + Sublayer(x));  pre-LN  x = x + Sublayer(LN(x)). The
decoder's self-attention is always causal (top-left: position t sees targets <= t).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reference.attention import _matmul, multi_head_attention, scaled_dot_product_attention
from reference.checks import check_mask, is_array
from reference.layers import ACTIVATIONS, layer_norm, position_wise_ffn

# The components (the numpy adapter re-exports exactly these).
__all__ = ["decoder", "decoder_layer", "encoder", "encoder_layer", "incremental_decoder"]

Params = Mapping[str, Any]


def _norm(x: np.ndarray, p: Params, eps: float) -> np.ndarray:
    return layer_norm(x, p["gamma"], p["beta"], eps)


def _residual(
    x: np.ndarray, sublayer: Any, norm: Params, norm_first: bool, eps: float
) -> np.ndarray:
    """post-LN: LN(x + f(x));  pre-LN: x + f(LN(x))."""
    if norm_first:
        return x + sublayer(_norm(x, norm, eps))
    return _norm(x + sublayer(x), norm, eps)


def _check_layer(
    component: str, x: np.ndarray, params: Params, keys: tuple[str, ...], num_heads: int
) -> None:
    if not is_array(x) or x.ndim != 3 or 0 in x.shape:
        raise ValueError(
            f"{component}: x must be a non-empty array (B, T, D); got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1 or x.shape[-1] % num_heads:
        raise ValueError(
            f"{component}: D must be divisible by H = num_heads; got D={x.shape[-1]}, "
            f"H={num_heads!r}"
        )
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(
            f"{component}: params must have {keys}; got {sorted(params)} (missing {missing})"
        )


def check_options(component: str, activation: str, eps: float) -> None:
    """The options every layer shares: the FFN's activation and the LayerNorms' eps."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{component}: activation must be one of {ACTIVATIONS}; got {activation!r}"
        )
    if not isinstance(eps, (int, float, np.floating)) or not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"{component}: eps must be a finite number >= 0; got {eps!r}")


def _check_final_norm(component: str, final_norm: Params | None, D: int) -> None:
    if final_norm is None:
        return
    shapes = [getattr(final_norm.get(k), "shape", None) for k in ("gamma", "beta")]
    if shapes != [(D,), (D,)]:
        raise ValueError(
            f"{component}: final_norm must be {{gamma, beta}} of shape (D,)=({D},); got {shapes}"
        )


def _check_memory(component: str, y: np.ndarray, memory: np.ndarray) -> None:
    if (
        not is_array(memory)
        or memory.ndim != 3
        or memory.shape[0] != y.shape[0]
        or memory.shape[2] != y.shape[2]
    ):
        raise ValueError(
            f"{component}: memory must be (B, S, D)=({y.shape[0]}, S, {y.shape[2]}); got "
            f"{getattr(memory, 'shape', None)}"
        )


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
    check_options("encoder_layer", activation, eps)
    B, T, _ = x.shape
    check_mask("encoder_layer", mask, (B, num_heads, T, T))
    attend = lambda h: multi_head_attention(h, h, h, params["self_attn"], num_heads, mask=mask)
    x = _residual(x, attend, params["norm1"], norm_first, eps)
    return _residual(
        x,
        lambda h: position_wise_ffn(h, params["ffn"], activation),
        params["norm2"],
        norm_first,
        eps,
    )


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
    """y -> AddNorm(y, CausalSelfAttention(y)) -> AddNorm(., CrossAttention(., memory)) ->
    AddNorm(., FFN(.)).

    y (B, T, D), memory (B, S, D) -> (B, T, D); memory_mask broadcastable to (B, H, T, S).
    """
    _check_layer(
        "decoder_layer",
        y,
        params,
        ("self_attn", "cross_attn", "ffn", "norm1", "norm2", "norm3"),
        num_heads,
    )
    _check_memory("decoder_layer", y, memory)
    check_options("decoder_layer", activation, eps)
    check_mask("decoder_layer", memory_mask, (y.shape[0], num_heads, y.shape[1], memory.shape[1]))
    self_attend = lambda h: multi_head_attention(
        h, h, h, params["self_attn"], num_heads, causal="top_left"
    )
    return _decoder_block(
        y, memory, params, num_heads, self_attend, memory_mask, norm_first, activation, eps
    )


def _decoder_block(
    y: np.ndarray,
    memory: np.ndarray,
    params: Params,
    num_heads: int,
    self_attend: Any,
    memory_mask: np.ndarray | None,
    norm_first: bool,
    activation: str,
    eps: float,
) -> np.ndarray:
    """The three residual sublayers of a decoder layer, with the self-attention given."""
    cross_attend = lambda h: multi_head_attention(
        h, memory, memory, params["cross_attn"], num_heads, mask=memory_mask
    )
    y = _residual(y, self_attend, params["norm1"], norm_first, eps)
    y = _residual(y, cross_attend, params["norm2"], norm_first, eps)
    return _residual(
        y,
        lambda h: position_wise_ffn(h, params["ffn"], activation),
        params["norm3"],
        norm_first,
        eps,
    )


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
    check_options("encoder", activation, eps)
    check_mask("encoder", mask, (x.shape[0], num_heads, x.shape[1], x.shape[1]))
    _check_final_norm("encoder", final_norm, x.shape[2])
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
    """N decoder layers over the encoder's memory, then the optional final LayerNorm.  (B, T, D) ->
    (B, T, D)."""
    if not layers:
        raise ValueError("decoder: layers must hold at least one layer's params; got none")
    _check_layer("decoder", y, layers[0], (), num_heads)
    _check_memory("decoder", y, memory)
    check_options("decoder", activation, eps)
    check_mask("decoder", memory_mask, (y.shape[0], num_heads, y.shape[1], memory.shape[1]))
    _check_final_norm("decoder", final_norm, y.shape[2])
    for params in layers:
        y = decoder_layer(y, memory, params, num_heads, memory_mask, norm_first, activation, eps)
    return y if final_norm is None else _norm(y, final_norm, eps)


def _cached_self_attention(
    h: np.ndarray, params: Params, num_heads: int, cache: dict[str, np.ndarray]
) -> np.ndarray:
    """One step of self-attention: h (B, 1, D) is the newest position; its key and value are
    appended to ``cache`` (k, v: (B, H, t, K) -> (B, H, t + 1, K)) and its query attends to every
    cached one."""
    B, _, D = h.shape
    H, K = num_heads, D // num_heads

    def project(w: str, b: str) -> np.ndarray:
        y = _matmul(h, params[w].astype(h.dtype))  # (B, 1, D)
        if params.get(b) is not None:
            y = y + params[b].astype(h.dtype)
        return y.reshape(B, 1, H, K).transpose((0, 2, 1, 3))  # (B, H, 1, K)

    cache["k"] = np.concatenate([cache["k"], project("w_k", "b_k")], axis=2)  # (B, H, t + 1, K)
    cache["v"] = np.concatenate([cache["v"], project("w_v", "b_v")], axis=2)  # (B, H, t + 1, K)
    # no mask: the cache holds the past and the present only, which is what causality allows
    context = scaled_dot_product_attention(
        project("w_q", "b_q"), cache["k"], cache["v"]
    )  # (B, H, 1, K)
    out = _matmul(
        context.transpose((0, 2, 1, 3)).reshape(B, 1, D), params["w_o"].astype(h.dtype)
    )  # (B, 1, D)
    return out if params.get("b_o") is None else out + params["b_o"].astype(h.dtype)


def _row(mask: np.ndarray | None, t: int) -> np.ndarray | None:
    """Row t of a memory mask broadcastable to (B, H, T, S): what query position t may see."""
    if mask is None or mask.ndim < 2 or mask.shape[-2] == 1:
        return mask
    return mask[..., t : t + 1, :]


def incremental_decoder(
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
    """The decoder run one position at a time, as at inference: step t sees y[:, t] and, in every
    layer, a key/value cache of that layer's self-attention keys and values at positions <= t:

        k_t = h_t W_k + b_k,  v_t = h_t W_v + b_v,  K_cache <- [K_cache; k_t],  V_cache <- [V_cache;
        v_t] SelfAttention(h_t) = softmax(q_t K_cache^T / sqrt(K)) V_cache

    Same signature and result as ``decoder`` (causality makes the two equal).  (B, T, D) -> (B, T,
    D).
    """
    if not layers:
        raise ValueError(
            "incremental_decoder: layers must hold at least one layer's params; got none"
        )
    _check_layer("incremental_decoder", y, layers[0], (), num_heads)
    for params in layers:  # the same checks as the parallel decoder, before any step runs
        _check_layer(
            "incremental_decoder",
            y,
            params,
            ("self_attn", "cross_attn", "ffn", "norm1", "norm2", "norm3"),
            num_heads,
        )
    _check_memory("incremental_decoder", y, memory)
    check_options("incremental_decoder", activation, eps)
    check_mask(
        "incremental_decoder", memory_mask, (y.shape[0], num_heads, y.shape[1], memory.shape[1])
    )
    _check_final_norm("incremental_decoder", final_norm, y.shape[2])
    B, T, D = y.shape
    empty = np.zeros((B, num_heads, 0, D // num_heads), y.dtype)  # (B, H, 0, K)
    caches = [{"k": empty, "v": empty} for _ in layers]
    steps = []
    for t in range(T):
        h = y[:, t : t + 1]  # (B, 1, D): this step's input only
        for params, cache in zip(layers, caches, strict=True):
            attend = lambda x, p=params, c=cache: _cached_self_attention(
                x, p["self_attn"], num_heads, c
            )
            h = _decoder_block(
                h,
                memory,
                params,
                num_heads,
                attend,
                _row(memory_mask, t),
                norm_first,
                activation,
                eps,
            )
        steps.append(h)
    out = np.concatenate(steps, axis=1)  # (B, T, D)
    return out if final_norm is None else _norm(out, final_norm, eps)
