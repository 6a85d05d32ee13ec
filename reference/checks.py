"""Executable shape and argument rules. The reference calls these, so its ValueErrors are the
spec's; the spec (spec/) imports them from here, so the two never import each other in a circle.

Legend, used in every message and comment: B batch, H heads, T query length, S key length,
D model dim, K head dim (Kv for values when it differs).
Every error names what was expected and what came, e.g.
"scaled_dot_product_attention: mask must broadcast to (B, H, T, S)=(2, 4, 7, 9); got (7, 8)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")


def _fail(component: str, message: str) -> NoReturn:
    raise ValueError(f"{component}: {message}")


def value(x: Any) -> Any:
    """x itself, or the array inside an autograd box when the reference is being differentiated
    (reference/autodiff.py): the rules judge values, whichever computation carries them."""
    while hasattr(x, "_value") and not isinstance(x, np.ndarray):
        x = x._value
    return x


def is_array(x: object) -> bool:
    """x is a NumPy array (or an autograd box of one)."""
    return isinstance(value(x), np.ndarray)


def check_float_array(component: str, name: str, x: object, ndim: int, legend: str) -> None:
    """x must be a floating NumPy array with ``ndim`` axes, none of them empty."""
    x = value(x)
    if not isinstance(x, np.ndarray):
        _fail(component, f"{name} must be a NumPy array {legend}; got {type(x).__name__}")
    if x.dtype.kind != "f" and x.dtype.name != "bfloat16":
        _fail(component, f"{name} must have a floating dtype; got {x.dtype}")
    if x.ndim != ndim:
        _fail(component, f"{name} must have {ndim} axes {legend}; got shape {x.shape}")
    if 0 in x.shape:
        _fail(component, f"{name} must have no empty axis {legend}; got shape {x.shape}")


def check_scale(component: str, scale: float | None) -> None:
    """scale is None (meaning 1/sqrt(K)) or a finite real number."""
    if scale is None:
        return
    if not isinstance(scale, (int, float, np.floating)) or not math.isfinite(float(scale)):
        _fail(component, f"scale must be None or a finite number; got {scale!r}")


def check_causal(component: str, causal: str | None) -> None:
    """causal is None or one of the named alignments."""
    if causal is not None and causal not in CAUSAL_ALIGNMENTS:
        _fail(component, f"causal must be None or one of {CAUSAL_ALIGNMENTS}; got {causal!r}")


def check_mask(component: str, mask: np.ndarray | None, target: tuple[int, ...]) -> None:
    """A boolean (True = may attend) or additive float mask broadcastable to (B, H, T, S)."""
    if mask is None:
        return
    mask = value(mask)
    if not isinstance(mask, np.ndarray):
        _fail(component, f"mask must be a NumPy array or None; got {type(mask).__name__}")
    if mask.dtype != np.bool_ and mask.dtype.kind != "f" and mask.dtype.name != "bfloat16":
        _fail(
            component,
            f"mask must be bool (True = may attend) or float (additive); got {mask.dtype}",
        )
    if mask.ndim > 4:
        _fail(component, f"mask must broadcast to (B, H, T, S)={target}; got {mask.shape}")
    try:
        ok = np.broadcast_shapes(mask.shape, target) == target
    except ValueError:
        ok = False
    if not ok:
        _fail(component, f"mask must broadcast to (B, H, T, S)={target}; got {mask.shape}")
    if mask.dtype.kind == "f" and np.isnan(mask.astype(np.float64)).any():
        _fail(component, "additive mask must not contain NaN (use -inf to mask a key)")


def check_attention(
    component: str,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray | None,
    mask: np.ndarray | None,
    scale: float | None,
    causal: str | None,
) -> None:
    """q (B, H, T, K), k (B, H, S, K), v (B, H, S, Kv); mask broadcastable to (B, H, T, S)."""
    check_float_array(component, "q", q, 4, "(B, H, T, K)")
    check_float_array(component, "k", k, 4, "(B, H, S, K)")
    B, H, T, K = q.shape
    if k.shape[:2] != (B, H) or k.shape[3] != K:
        _fail(component, f"k must be (B, H, S, K)=({B}, {H}, S, {K}) to match q; got {k.shape}")
    S = k.shape[2]
    if v is not None:
        check_float_array(component, "v", v, 4, "(B, H, S, Kv)")
        if v.shape[:3] != (B, H, S):
            _fail(
                component, f"v must be (B, H, S, Kv)=({B}, {H}, {S}, Kv) to match k; got {v.shape}"
            )
    if not (q.dtype == k.dtype and (v is None or v.dtype == q.dtype)):
        _fail(
            component,
            f"q, k, v must share one dtype; got {q.dtype}, {k.dtype}, "
            f"{None if v is None else v.dtype}",
        )
    check_mask(component, mask, (B, H, T, S))
    check_scale(component, scale)
    check_causal(component, causal)


MHA_WEIGHTS = ("w_q", "w_k", "w_v", "w_o")
MHA_BIASES = ("b_q", "b_k", "b_v", "b_o")


def _check_qkv(
    component: str, query: np.ndarray, key: np.ndarray, value: np.ndarray
) -> tuple[int, int, int]:
    """query (B, T, D), key and value (B, S, D) of one shape; returns (B, T, D)."""
    check_float_array(component, "query", query, 3, "(B, T, D)")
    check_float_array(component, "key", key, 3, "(B, S, D)")
    check_float_array(component, "value", value, 3, "(B, S, D)")
    B, T, D = query.shape
    if key.shape[0] != B or key.shape[2] != D:
        _fail(component, f"key must be (B, S, D)=({B}, S, {D}) to match query; got {key.shape}")
    if value.shape != key.shape:
        _fail(component, f"value must be (B, S, D)={key.shape} like key; got {value.shape}")
    return B, T, D


def check_multi_head(
    component: str,
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    mask: np.ndarray | None,
    causal: str | None,
) -> None:
    """query (B, T, D), key and value (B, S, D); W_* (D, D), b_* (D,) or absent; D % H == 0."""
    B, T, D = _check_qkv(component, query, key, value)
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        _fail(component, f"num_heads must be a positive int; got {num_heads!r}")
    if D % num_heads:
        _fail(component, f"D must be divisible by H; got D={D}, H={num_heads}")
    for name in MHA_WEIGHTS:
        w = params.get(name)
        if w is None or getattr(w, "shape", None) != (D, D):
            _fail(
                component,
                f"params[{name!r}] must be (D, D)=({D}, {D}); got {getattr(w, 'shape', w)}",
            )
    for name in MHA_BIASES:
        b = params.get(name)
        if b is not None and getattr(b, "shape", None) != (D,):
            _fail(
                component,
                f"params[{name!r}] must be (D,)=({D},) or absent; got {getattr(b, 'shape', b)}",
            )
    unknown = set(params) - set(MHA_WEIGHTS) - set(MHA_BIASES)
    if unknown:
        _fail(
            component,
            f"params has unknown keys {sorted(unknown)}; expected {MHA_WEIGHTS + MHA_BIASES}",
        )
    check_mask(component, mask, (B, num_heads, T, key.shape[1]))
    check_causal(component, causal)


def _positive_int(component: str, name: str, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        _fail(component, f"{name} must be a positive int; got {value!r}")


def check_grouped_multi_head(
    component: str,
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    num_kv_heads: int,
    mask: np.ndarray | None,
    causal: str | None,
) -> tuple[int, int]:
    """query (B, T, D), key and value (B, S, D); W_q (D, H K), W_k (D, Hkv K), W_v (D, Hkv Kv),
    W_o (H Kv, D), biases of the projections' widths or absent; Hkv divides H. Returns (K, Kv)."""
    B, T, D = _check_qkv(component, query, key, value)
    _positive_int(component, "num_heads", num_heads)
    _positive_int(component, "num_kv_heads", num_kv_heads)
    H, Hkv = int(num_heads), int(num_kv_heads)
    if H % Hkv:
        _fail(component, f"num_kv_heads must divide num_heads; got H={H}, Hkv={Hkv}")
    unknown = set(params) - set(MHA_WEIGHTS) - set(MHA_BIASES)
    if unknown:
        _fail(
            component,
            f"params has unknown keys {sorted(unknown)}; expected {MHA_WEIGHTS + MHA_BIASES}",
        )
    widths = {}
    for name, heads, what in (("w_q", H, "H K"), ("w_k", Hkv, "Hkv K"), ("w_v", Hkv, "Hkv Kv")):
        w = params.get(name)
        shape = getattr(w, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != D or shape[1] % heads or not shape[1]:
            _fail(
                component,
                f"params[{name!r}] must be (D, {what}) with D={D} and {what.split()[0]}={heads}; "
                f"got {shape if shape is not None else w}",
            )
        widths[name] = shape[1] // heads
    K, Kv = widths["w_q"], widths["w_v"]
    if widths["w_k"] != K:
        _fail(
            component,
            f"params['w_k'] must be (D, Hkv K)=({D}, {Hkv * K}) to match W_q's K={K}; got "
            f"{params['w_k'].shape}",
        )
    w_o = params.get("w_o")
    if getattr(w_o, "shape", None) != (H * Kv, D):
        _fail(
            component,
            f"params['w_o'] must be (H Kv, D)=({H * Kv}, {D}); got {getattr(w_o, 'shape', w_o)}",
        )
    for name, width in (("b_q", H * K), ("b_k", Hkv * K), ("b_v", Hkv * Kv), ("b_o", D)):
        b = params.get(name)
        if b is not None and getattr(b, "shape", None) != (width,):
            _fail(
                component,
                f"params[{name!r}] must be ({width},) or absent; got {getattr(b, 'shape', b)}",
            )
    check_mask(component, mask, (B, H, T, key.shape[1]))
    check_causal(component, causal)
    return K, Kv
