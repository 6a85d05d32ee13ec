"""Spec entry: grouped_multi_head_attention (GQA with its projections, as Llama, Mistral, Gemma).

    grouped_multi_head_attention(query, key, value, params, num_heads, num_kv_heads, mask=None,
                                 causal=None) -> (B, T, D)

query (B, T, D), key and value (B, S, D); H = num_heads query heads, Hkv = num_kv_heads key/value
heads, Hkv dividing H (refused otherwise). Canonical weights, acting on the right (y = x W + b):
    params = {"w_q": (D, H K), "w_k": (D, Hkv K), "w_v": (D, Hkv Kv), "w_o": (H Kv, D),
              optional "b_q", "b_k", "b_v" (their projections' widths), "b_o": (D,)}
K and Kv are the widths per head, free of D (Gemma's head_dim: H K != D). Query head h reads
key/value head h // (H / Hkv), contiguous groups (grouped_query_attention's map). HF's q_proj,
k_proj, v_proj, o_proj hold W^T. mask and causal as in multi_head_attention, the mask broadcastable
to (B, H, T, S). With Hkv = H and K = Kv = D / H it is multi_head_attention (a property).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

import reference
from spec.attention import logit_magnitude
from spec.core import BadInput, Component, Gradient, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.multi_head import _KEY_BIAS, MHA_ARGS, Attending, _variants, draw_attending
from spec.strategies import AttentionShape, Masking, masks, seeds


class GmhaShape(NamedTuple):
    B: int
    T: int
    S: int
    D: int
    H: int
    Hkv: int
    K: int
    Kv: int


# Self-attention needs T == S. Every ratio H / Hkv (1, 2, 3, H: multi-query), K = D / H and not.
GMHA_BUCKETS = (
    GmhaShape(B=1, T=1, S=1, D=4, H=2, Hkv=1, K=2, Kv=2),
    GmhaShape(B=2, T=3, S=5, D=8, H=4, Hkv=2, K=2, Kv=2),
    GmhaShape(B=1, T=4, S=4, D=6, H=3, Hkv=1, K=4, Kv=4),  # H K = 12 != D (head_dim free of D)
    GmhaShape(B=2, T=5, S=5, D=8, H=4, Hkv=4, K=2, Kv=2),  # Hkv = H: multi_head_attention
    GmhaShape(B=2, T=6, S=2, D=6, H=6, Hkv=2, K=1, Kv=3),  # Kv != K
    GmhaShape(B=1, T=3, S=3, D=4, H=2, Hkv=2, K=3, Kv=2),
    GmhaShape(B=1, T=4, S=4, D=8, H=4, Hkv=2, K=2, Kv=2),  # grouped self-attention
)

GMHA_VARIANTS = _variants(
    "self",
    "memory",
    "cross",
    "self+causal_top_left",
    "self+padding",
    "memory+padding",
    "cross+bool",
    "cross+additive",
    "cross+causal_top_left",
    "cross+causal_bottom_right",
    "self+bool+causal_top_left",
)


def gmha_params(
    data: st.DataObject, s: GmhaShape, dtype: DType, biases: str | None = None
) -> dict[str, np.ndarray]:
    """The canonical weights, W ~ N(0, 1 / fan-in), biases all, none or some of them."""
    rng = np.random.default_rng(data.draw(seeds(), label="params_seed"))
    shapes = {
        "w_q": (s.D, s.H * s.K),
        "w_k": (s.D, s.Hkv * s.K),
        "w_v": (s.D, s.Hkv * s.Kv),
        "w_o": (s.H * s.Kv, s.D),
    }
    out = {
        n: (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(dtype.np_dtype)
        for n, shape in shapes.items()
    }
    kind = biases or data.draw(st.sampled_from(["all", "none", "some"]), label="biases")
    names = ("b_q", "b_k", "b_v", "b_o")
    chosen = names if kind == "all" else () if kind == "none" else names[rng.integers(4) :: 2]
    for b in chosen:
        width = s.D if b == "b_o" else shapes["w" + b[1:]][1]
        out[b] = (0.5 * rng.standard_normal(width)).astype(dtype.np_dtype)
    return out


def draw_gmha(
    data: st.DataObject, dtype: DType, variant: Attending | str | None, square: bool = False
) -> dict[str, Any]:
    """Kwargs for grouped_multi_head_attention under one variant (square: only the buckets whose
    head widths are D / H, which multi_head_attention can express)."""
    v = Attending.parse(variant)
    fits = (
        (lambda b: b.T <= b.S) if v.masking == Masking(causal="bottom_right") else (lambda b: True)
    )
    buckets = [
        b
        for b in GMHA_BUCKETS
        if (v.kind != "self" or b.T == b.S) and fits(b) and (_square(b) or not square)
    ]
    s: GmhaShape = data.draw(st.sampled_from(buckets), label="shape")
    query, key, value = draw_attending(data, dtype, v.kind, s.B, s.T, s.S, s.D)
    shape = AttentionShape(s.B, s.H, s.T, s.S, s.K, s.Kv)
    m = data.draw(masks(shape, v.masking, dtype), label="mask")
    return dict(
        query=query,
        key=key,
        value=value,
        params=gmha_params(data, s, dtype),
        num_heads=s.H,
        num_kv_heads=s.Hkv,
        mask=m.mask,
        causal=m.causal,
    )


def _square(s: GmhaShape) -> bool:
    return s.H * s.K == s.D and s.K == s.Kv


def _project(x: np.ndarray, params: Mapping[str, Any], w: str, b: str, heads: int) -> np.ndarray:
    """x W + b split into heads, in float64: (B, L, D) -> (B, heads, L, width)."""
    y = x.astype(np.float64) @ params[w].astype(np.float64)  # (B, L, heads width)
    if params.get(b) is not None:
        y = y + params[b].astype(np.float64)
    B, L, W = y.shape
    return y.reshape(B, L, heads, W // heads).transpose(0, 2, 1, 3)  # (B, heads, L, width)


def gmha_error_scale(inputs: Mapping[str, Any]) -> float:
    """multi_head_attention's scale with the key/value heads repeated for their groups: (1 + L)
    max|V W_v + b_v| max_j sum |W_o[:, j]| + the projections' sums of |x W| + |b| + max|b_o|."""
    p, H, Hkv = inputs["params"], inputs["num_heads"], inputs["num_kv_heads"]
    q = _project(inputs["query"], p, "w_q", "b_q", H)  # (B, H, T, K)
    k = np.repeat(_project(inputs["key"], p, "w_k", "b_k", Hkv), H // Hkv, axis=1)  # (B, H, S, K)
    v = _project(inputs["value"], p, "w_v", "b_v", Hkv)  # (B, Hkv, S, Kv)
    L = logit_magnitude({"q": q, "k": k, "mask": inputs.get("mask")})

    def bias(name: str) -> float:
        return float(np.abs(p[name].astype(np.float64)).max()) if p.get(name) is not None else 0.0

    proj = max(
        float((np.abs(inputs[x].astype(np.float64)) @ np.abs(p[w].astype(np.float64))).max())
        + bias(b)
        for x, w, b in (("query", "w_q", "b_q"), ("key", "w_k", "b_k"), ("value", "w_v", "b_v"))
    )
    w_o = np.abs(p["w_o"].astype(np.float64))
    return (1.0 + L) * float(np.abs(v).max()) * float(w_o.sum(0).max()) + proj + bias("b_o")


_MHA = {a.name: a for a in MHA_ARGS}
_W = "float array, acting on the right (y = x W + b)"
GMHA_ARGS = (
    _MHA["query"],
    _MHA["key"],
    _MHA["value"],
    Arg(
        "params",
        "dict: w_q (D, H K), w_k (D, Hkv K), w_v (D, Hkv Kv), w_o (H Kv, D); optional b_q (H K,), "
        "b_k (Hkv K,), b_v (Hkv Kv,), b_o (D,)",
        kind="params",
        regions=(
            region(
                "H K != D (head width free of D)",
                lambda v, i: v["w_q"].shape[1] != v["w_q"].shape[0],
            ),
            region(
                "Kv != K",
                lambda v, i: v["w_v"].shape[1] != v["w_k"].shape[1],  # Hkv Kv vs Hkv K
            ),
            region(
                "every bias present", lambda v, i: all(b in v for b in ("b_q", "b_k", "b_v", "b_o"))
            ),
            region("no bias", lambda v, i: not any(b in v for b in ("b_q", "b_k", "b_v", "b_o"))),
        ),
        entries=tuple(Arg(w, _W) for w in ("w_q", "w_k", "w_v", "w_o"))
        + tuple(
            Arg(
                b,
                "float array of its projection's width, or absent (0)",
                default=None,
                invisible=_KEY_BIAS if b == "b_k" else {},
            )
            for b in ("b_q", "b_k", "b_v", "b_o")
        ),
    ),
    Arg(
        "num_heads",
        "int H >= 1, a multiple of num_kv_heads; W_q's width is H K",
        kind="int",
        regions=(
            region("H = 2", lambda v, i: v == 2),
            region("H = 6", lambda v, i: v == 6),
        ),
    ),
    Arg(
        "num_kv_heads",
        "int Hkv >= 1 dividing num_heads; W_k's width is Hkv K, W_v's Hkv Kv",
        kind="int",
        regions=(
            region("Hkv = 1 < H (multi-query)", lambda v, i: v == 1 < i["num_heads"]),
            region("1 < Hkv < H (grouped)", lambda v, i: 1 < v < i["num_heads"]),
            region("Hkv = H (multi-head)", lambda v, i: v == i["num_heads"]),
        ),
    ),
    _MHA["mask"],
    _MHA["causal"],
)


def as_multi_head(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """multi_head_attention's inputs for the same function: W_k and W_v with each key/value head's
    columns repeated for its group (H K = H Kv = D required)."""
    p, H, Hkv = inputs["params"], inputs["num_heads"], inputs["num_kv_heads"]
    G = H // Hkv
    repeated = dict(p)
    for w, b in (("w_k", "b_k"), ("w_v", "b_v")):
        D, W = p[w].shape
        blocks = p[w].reshape(D, Hkv, W // Hkv)  # (D, Hkv, width)
        repeated[w] = np.repeat(blocks, G, axis=1).reshape(D, H * (W // Hkv))  # (D, H width)
        if p.get(b) is not None:
            repeated[b] = np.repeat(p[b].reshape(Hkv, -1), G, axis=0).reshape(-1)  # (H width,)
    out = {k: v for k, v in inputs.items() if k != "num_kv_heads"}
    return {**out, "params": repeated}


def _mha_of_repeated(query, key, value, params, num_heads, num_kv_heads, mask=None, causal=None):
    args = dict(query=query, key=key, value=value, params=params, num_heads=num_heads)
    full = as_multi_head({**args, "num_kv_heads": num_kv_heads})
    return reference.multi_head_attention(**full, mask=mask, causal=causal)


def repeated_kv_heads_are_multi_head(
    subject: Subject, data: st.DataObject, variant: Attending
) -> None:
    """With K = Kv = D / H, the output equals multi_head_attention with W_k's and W_v's head
    columns repeated for their groups: the group map is contiguous, h // (H / Hkv)."""
    inputs = draw_gmha(data, subject.dtype, variant, square=True)
    subject.case(inputs, expected_fn=_mha_of_repeated).assert_matches_oracle(
        "vs multi_head_attention with repeated key/value heads"
    )


def _bad(change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(draw_gmha(data, dtype, Attending("cross")))

    return draw


def _kv_heads_not_dividing(i: dict[str, Any]) -> dict[str, Any]:
    """Hkv the smallest count > 1 not dividing H (3 for H = 2 or 4), with W_k, W_v and their biases
    of that many heads (key/value head 0 repeated): only the divisibility is wrong."""
    H, Hkv, p = i["num_heads"], i["num_kv_heads"], dict(i["params"])
    d = next(n for n in range(2, H + 2) if H % n)
    for w, b in (("w_k", "b_k"), ("w_v", "b_v")):
        width = p[w].shape[1] // Hkv
        p[w] = np.tile(p[w][:, :width], (1, d))  # (D, d width)
        if p.get(b) is not None:
            p[b] = np.tile(p[b][:width], d)  # (d width,)
    return {**i, "num_kv_heads": d, "params": p}


def _widen(name: str) -> Any:
    def change(i: dict[str, Any]) -> dict[str, Any]:
        w = i["params"][name]
        return {**i, "params": {**i["params"], name: np.concatenate([w, w[:, :1]], axis=1)}}

    return change


GROUPED_MULTI_HEAD_ATTENTION = Component(
    name="grouped_multi_head_attention",
    family="attention",
    shapes="query (B, T, D), key/value (B, S, D), W_q (D, H K), W_k (D, Hkv K), W_v (D, Hkv Kv), "
    "W_o (H Kv, D) -> out (B, T, D)",
    error_scale=gmha_error_scale,
    args=GMHA_ARGS,
    draw=draw_gmha,
    variants=GMHA_VARIANTS,
    gradient=Gradient(
        wrt=lambda v: (
            {
                "self": ("query",),
                "memory": ("query", "key"),
                "cross": ("query", "key", "value"),
            }[Attending.parse(v).kind]
            + ("params.w_q", "params.w_k", "params.w_v", "params.w_o")
        ),
        variants=_variants("self", "cross+padding", "memory+causal_top_left"),
    ),
    bad_inputs=(
        BadInput(
            "kv_heads_do_not_divide_heads",
            "Hkv > 1 not dividing H, W_k and W_v of Hkv heads",
            _bad(_kv_heads_not_dividing),
        ),
        BadInput("zero_kv_heads", "Hkv = 0", _bad(lambda i: {**i, "num_kv_heads": 0})),
        BadInput("w_k_width_not_hkv_k", "W_k one column wider", _bad(_widen("w_k"))),
        BadInput(
            "w_o_rows_not_h_kv",
            "W_o with one row fewer",
            _bad(lambda i: {**i, "params": {**i["params"], "w_o": i["params"]["w_o"][:-1]}}),
        ),
        BadInput(
            "key_value_length_mismatch",
            "value with S + 1 positions",
            _bad(lambda i: {**i, "value": np.concatenate([i["value"], i["value"][:, :1]], 1)}),
        ),
    ),
)
prop(
    GROUPED_MULTI_HEAD_ATTENTION,
    variants=_variants("self", "cross+padding", "memory+causal_bottom_right"),
)(repeated_kv_heads_are_multi_head)
