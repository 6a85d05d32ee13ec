"""Analytic vector-Jacobian products where the closed form is short and a softmax inside makes the
backward pass cancel (a floor from output magnitudes cannot see that): softmax, scaled dot-product
attention, multi-head attention, additive attention weights.

Evaluated in the test dtype they are the gradient policy's "same-precision reference"
(spec/gradients.py), as the forward functions are for outputs; the finite differences in extended
precision stay the oracle. Each returns (gradients, magnitudes): the magnitude of an entry is the
sum of the absolute values of the terms that make it (a running error bound, Higham 2002, 3.1),
which is what rounding scales with.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from reference.attention import (
    _allowed,
    _matmul,
    attention_weights,
    grouped_query_attention,
    softmax,
)
from reference.seq2seq import additive_attention_weights

Grads = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _abs(a: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64))


def softmax_vjp(x: np.ndarray, axis: int, cotangent: np.ndarray) -> Grads:
    """y = softmax(x): dx = y * (c - sum(c * y))  (the Jacobian diag(y) - y y^T applied to c)."""
    y = softmax(x, axis)
    c = cotangent.astype(x.dtype)
    dot = (c * y).sum(axis=axis, keepdims=True).astype(x.dtype)
    magnitude = _abs(y) * (_abs(c) + (_abs(c) * _abs(y)).sum(axis, keepdims=True))
    return {"x": (y * (c - dot)).astype(x.dtype)}, {"x": magnitude}


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to the shape of the input that was broadcast."""
    while g.ndim > len(shape):
        g = g.sum(0)
    return g.sum(
        axis=tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1), keepdims=True
    )


def scaled_dot_product_attention_vjp(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    cotangent: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    algorithm: str = "softmax",
) -> Grads:
    """O = P V, P = softmax(S), S = scale Q K^T + M (Dao et al. 2022, algorithm 4, without tiling):

        dV = P^T dO,   dP = dO V^T,   dS = P * (dP - D),
        dQ = scale dS K,   dK = scale dS^T Q,   dM = dS (summed over the axes M broadcasts along)
    with D = rowsum(P * dP) ("softmax", the Jacobian's form) or rowsum(dO * O) ("flash"): equal in
    exact arithmetic, not in rounding (at a saturated softmax dP - D cancels, and |q| amplifies it
    in dK).
    """
    dt = q.dtype
    p = attention_weights(q, k, mask, scale, causal)  # (B, H, T, S)
    s = dt.type(1.0 / np.sqrt(q.shape[-1]) if scale is None else scale)
    do = cotangent.astype(dt)  # (B, H, T, Kv)
    dp = _matmul(do, np.swapaxes(v, -1, -2))  # (B, H, T, S)
    if algorithm == "flash":
        d = (do * _matmul(p, v)).sum(-1, keepdims=True).astype(dt)  # (B, H, T, 1)
    else:
        d = (p * dp).sum(-1, keepdims=True).astype(dt)  # (B, H, T, 1)
    ds = (p * (dp - d)).astype(dt)  # (B, H, T, S)
    # a hidden key's logit is a constant: no gradient through it (under the canonical profile p is
    # 0 there already; a row that sees no key has weights 1/S under fully_masked_row=uniform)
    B, H, T, S = p.shape
    hidden = ~_allowed(B, H, T, S, mask, causal)
    if mask is not None and mask.dtype != np.bool_:
        hidden |= np.isneginf(mask.astype(np.float64))  # broadcasts to (B, H, T, S)
    ds = np.where(hidden, dt.type(0), ds)  # (B, H, T, S)
    mag_dp = _abs(do) @ np.swapaxes(_abs(v), -1, -2)  # (B, H, T, S)
    mag_ds = _abs(p) * (mag_dp + (_abs(p) * mag_dp).sum(-1, keepdims=True))  # (B, H, T, S)
    grads = {
        "q": (_matmul(ds, k) * s).astype(dt),  # (B, H, T, K)
        "k": (_matmul(np.swapaxes(ds, -1, -2), q) * s).astype(dt),  # (B, H, S, K)
        "v": _matmul(np.swapaxes(p, -1, -2), do),  # (B, H, S, Kv)
    }
    mags = {
        "q": mag_ds @ _abs(k) * abs(float(s)),
        "k": np.swapaxes(mag_ds, -1, -2) @ _abs(q) * abs(float(s)),
        "v": np.swapaxes(_abs(p), -1, -2) @ _abs(do),
    }
    if mask is not None and mask.dtype != np.bool_:
        grads["mask"], mags["mask"] = (
            _sum_to(ds, mask.shape).astype(dt),
            _sum_to(mag_ds, mask.shape),
        )
    return grads, mags


def _heads(x: np.ndarray, H: int) -> np.ndarray:
    B, L, D = x.shape
    return x.reshape(B, L, H, D // H).transpose((0, 2, 1, 3))  # (B, H, L, K)


def _merge(x: np.ndarray) -> np.ndarray:
    B, H, L, K = x.shape
    return x.transpose((0, 2, 1, 3)).reshape(B, L, H * K)  # (B, L, D)


def multi_head_attention_vjp(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    cotangent: np.ndarray,
    mask: np.ndarray | None = None,
    causal: str | None = None,
) -> Grads:
    """MultiHead = Concat(heads) W_o + b_o, heads = SDPA(query W_q + b_q, key W_k + b_k, value W_v +
    b_v): the output projection's VJP, then SDPA's, then the input projections'. Gradients for
    query, key, value and W_q, W_k, W_v, W_o, one per use: for self-attention (one array passed
    three times) the gradient of that array is their sum (spec/gradients.py, alias_paths)."""
    return grouped_multi_head_attention_vjp(
        query, key, value, params, num_heads, num_heads, cotangent, mask, causal
    )


def grouped_multi_head_attention_vjp(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    params: Mapping[str, np.ndarray],
    num_heads: int,
    num_kv_heads: int,
    cotangent: np.ndarray,
    mask: np.ndarray | None = None,
    causal: str | None = None,
) -> Grads:
    """multi_head_attention_vjp with Hkv key/value heads: grouped_query_attention_vjp between the
    projections' VJPs (Hkv = H is multi-head attention's)."""
    dt, H, Hkv = query.dtype, num_heads, num_kv_heads
    w = {n: params[n].astype(dt) for n in ("w_q", "w_k", "w_v", "w_o")}
    proj = {}
    for name, x, heads in (("q", query, H), ("k", key, Hkv), ("v", value, Hkv)):
        y = _matmul(x, w[f"w_{name}"])
        proj[name] = _heads(
            y if params.get(f"b_{name}") is None else (y + params[f"b_{name}"].astype(dt)), heads
        )  # (B, heads, L, width)
    context = _merge(
        grouped_query_attention(proj["q"], proj["k"], proj["v"], mask=mask, causal=causal)
    )  # (B, T, H Kv)
    c = cotangent.astype(dt)
    dctx = _heads(_matmul(c, w["w_o"].T), H)  # (B, H, T, Kv)
    g, m = grouped_query_attention_vjp(
        proj["q"], proj["k"], proj["v"], dctx, mask=mask, causal=causal
    )
    grads: dict[str, Any] = {
        "params.w_o": _matmul(np.swapaxes(context, -1, -2), c).sum(0).astype(dt)
    }
    mags: dict[str, Any] = {"params.w_o": (np.swapaxes(_abs(context), -1, -2) @ _abs(c)).sum(0)}
    for name, x, xname in (("q", query, "query"), ("k", key, "key"), ("v", value, "value")):
        dy, my = _merge(g[name]), _merge(m[name])  # (B, L, heads width)
        grads[xname], mags[xname] = _matmul(dy, w[f"w_{name}"].T), my @ _abs(w[f"w_{name}"]).T
        grads[f"params.w_{name}"] = _matmul(np.swapaxes(x, -1, -2), dy).sum(0).astype(dt)
        mags[f"params.w_{name}"] = (np.swapaxes(_abs(x), -1, -2) @ my).sum(0)
    return grads, mags


def additive_attention_weights_vjp(
    s_prev: np.ndarray,
    h: np.ndarray,
    params: Mapping[str, np.ndarray],
    cotangent: np.ndarray,
    mask: np.ndarray | None = None,
) -> Grads:
    """alpha = softmax(e), e_j = v . tanh(z_j), z_j = s W + h_j U (Bahdanau):

    de = alpha * (c - sum(alpha * c)),   dz_j = de_j v (1 - tanh(z_j)^2),
    ds = sum_j dz_j W^T,   dh_j = dz_j U^T
    """
    dt = h.dtype
    w, u, v = (params[n].astype(dt) for n in ("w", "u", "v"))
    alpha = additive_attention_weights(s_prev, h, params, mask)  # (B, S)
    c = cotangent.astype(dt)
    de = (alpha * (c - (alpha * c).sum(-1, keepdims=True).astype(dt))).astype(dt)  # (B, S)
    th = np.tanh(_matmul(s_prev, w)[:, None, :] + _matmul(h, u))  # (B, S, A)
    dz = (de[..., None] * v * (1 - th * th)).astype(dt)  # (B, S, A)
    mag_de = _abs(alpha) * (_abs(c) + (_abs(alpha) * _abs(c)).sum(-1, keepdims=True))  # (B, S)
    mag_dz = mag_de[..., None] * _abs(v)  # (B, S, A): |1 - tanh^2| <= 1
    grads = {"s_prev": _matmul(dz.sum(1).astype(dt), w.T), "h": _matmul(dz, u.T)}
    return grads, {"s_prev": mag_dz.sum(1) @ _abs(w).T, "h": mag_dz @ _abs(u).T}


# Each component's same-precision VJPs: every standard algorithm, so the policy takes the largest
# error.
def grouped_query_attention_vjp(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    cotangent: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
    causal: str | None = None,
    algorithm: str = "softmax",
) -> Grads:
    """scaled_dot_product_attention_vjp on the key/value heads repeated for their groups, dK and dV
    summed over each group (the transpose of the repetition), their magnitudes too."""
    G = q.shape[1] // k.shape[1]
    B, Hkv, S = k.shape[:3]

    def fold(a: np.ndarray) -> np.ndarray:  # (B, Hq, S, .) -> (B, Hkv, S, .): the group's sum
        folded = a.astype(np.float64).reshape(B, Hkv, G, S, a.shape[-1]).sum(2)
        return folded.astype(a.dtype)

    kf, vf = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)  # (B, Hq, S, .)
    grads, mags = scaled_dot_product_attention_vjp(
        q, kf, vf, cotangent, mask, scale, causal, algorithm
    )
    return (
        {"q": grads["q"], "k": fold(grads["k"]), "v": fold(grads["v"])},
        {"q": mags["q"], "k": fold(mags["k"]), "v": fold(mags["v"])},
    )


VJPS = {
    "softmax": (softmax_vjp,),
    "scaled_dot_product_attention": (
        scaled_dot_product_attention_vjp,
        partial(scaled_dot_product_attention_vjp, algorithm="flash"),
    ),
    "grouped_query_attention": (
        grouped_query_attention_vjp,
        partial(grouped_query_attention_vjp, algorithm="flash"),
    ),
    "multi_head_attention": (multi_head_attention_vjp,),
    "grouped_multi_head_attention": (grouped_multi_head_attention_vjp,),
    "additive_attention_weights": (additive_attention_weights_vjp,),
}
