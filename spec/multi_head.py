"""Spec entry: multi_head_attention(query, key, value, params, num_heads, mask=None, causal=None).

query (B, T, D), key and value (B, S, D) -> (B, T, D); H = num_heads, K = D / H (D % H != 0 is
refused). Canonical weights, acting on the right (y = x W + b), as in the paper's Q W^Q:
    params = {"w_q", "w_k", "w_v", "w_o": (D, D), optional "b_q", "b_k", "b_v", "b_o": (D,)}
Head h owns columns h*K:(h+1)*K of W_q, W_k, W_v and rows h*K:(h+1)*K of W_o.
torch's nn.MultiheadAttention stores the transposes (in_proj_weight = [W_q; W_k; W_v]^T stacked,
y = x W^T); flax stores kernels (D, H, K) and (H, K, D). Adapters map; the spec does not move.
mask and causal as in scaled_dot_product_attention, the mask broadcastable to (B, H, T, S).
error_scale: (1 + L) max|V W_v + b_v| * max_j sum_d |W_o[d, j]| + the projections' own sums of
|x_d W_dj| + |b| + max|b_o|, with L the logit magnitude of the projected queries and keys (the seed
sweep found the output bias missing: a bias-dominated output rounds at |b_o|).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
from hypothesis import strategies as st

from reference.attention import scaled_dot_product_attention
from spec.attention import logit_magnitude, visible
from spec.core import BadInput, Component, Gradient, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.strategies import (
    MHA_BUCKETS,
    AttentionShape,
    Masking,
    MhaShape,
    arrays,
    masks,
    mha_params,
)


@dataclass(frozen=True)
class Attending:
    """A multi-head attention variant: which arrays the query, key and value are (``self``: one
    array; ``memory``: cross-attention over one encoder memory, key is value, as encoder-decoder
    models call it; ``cross``: three arrays), the mask variant, and whether H is forced to 1. Its
    str is the test id's ("self+causal_top_left", "memory+padding")."""

    kind: str = "self"
    masking: Masking = Masking()
    single_head: bool = False

    def __str__(self) -> str:
        return self.kind if self.masking == Masking() else f"{self.kind}+{self.masking}"

    @classmethod
    def parse(cls, text: Attending | str | None) -> Attending:
        if isinstance(text, Attending):
            return text
        kind, _, masking = (text or "self").partition("+")
        return cls(kind, Masking.parse(masking or "none"))


def _variants(*names: str) -> tuple[Attending, ...]:
    return tuple(Attending.parse(n) for n in names)


MHA_VARIANTS = _variants(
    "self",
    "cross",
    "memory",
    "self+causal_top_left",
    "self+padding",
    "cross+padding",
    "memory+padding",
    "self+bool",
    "cross+additive",
    "cross+causal_top_left",
    "cross+causal_bottom_right",
    # a mask combined with causality, which the adapter has to merge (found by `make mutation`)
    "self+bool+causal_top_left",
    "self+additive+causal_top_left",
)


def _project(x: np.ndarray, params: Mapping[str, Any], w: str, b: str, H: int) -> np.ndarray:
    """x W + b split into heads: (B, L, D) -> (B, H, L, K), in float64."""
    y = x.astype(np.float64) @ params[w].astype(np.float64)  # (B, L, D)
    if params.get(b) is not None:
        y = y + params[b].astype(np.float64)
    B, L, D = y.shape
    return y.reshape(B, L, H, D // H).transpose(0, 2, 1, 3)  # (B, H, L, K)


def mha_error_scale(inputs: Mapping[str, Any]) -> float:
    p, H = inputs["params"], inputs["num_heads"]
    q = _project(inputs["query"], p, "w_q", "b_q", H)
    k = _project(inputs["key"], p, "w_k", "b_k", H)
    v = _project(inputs["value"], p, "w_v", "b_v", H)
    L = logit_magnitude({"q": q, "k": k, "mask": inputs.get("mask")})
    w_o = np.abs(p["w_o"].astype(np.float64))

    def bias(name: str) -> float:
        return float(np.abs(p[name].astype(np.float64)).max()) if p.get(name) is not None else 0.0

    # each projection rounds at |x| |W| + |b|; the output adds b_o, so it rounds at |context W_o| +
    # |b_o|
    proj = max(
        float((np.abs(inputs[x].astype(np.float64)) @ np.abs(p[w].astype(np.float64))).max())
        + bias(b)
        for x, w, b in (("query", "w_q", "b_q"), ("key", "w_k", "b_k"), ("value", "w_v", "b_v"))
    )
    return (1.0 + L) * float(np.abs(v).max()) * float(w_o.sum(0).max()) + proj + bias("b_o")


def draw_attending(
    data: st.DataObject, dtype: DType, kind: str, B: int, T: int, S: int, D: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """query (B, T, D), key and value (B, S, D) as the kind passes them: self (one array object,
    so libraries take their self-attention path), memory (key is value) or cross (three)."""
    query = data.draw(arrays((B, T, D), dtype, allow_large=False), label="query")
    if kind == "self":
        return query, query, query
    if kind == "memory":
        memory = data.draw(arrays((B, S, D), dtype, allow_large=False), label="memory")
        return query, memory, memory
    key = data.draw(arrays((B, S, D), dtype, allow_large=False), label="key")
    return query, key, data.draw(arrays((B, S, D), dtype, allow_large=False), label="value")


def draw_mha(data: st.DataObject, dtype: DType, variant: Attending | str | None) -> dict[str, Any]:
    """Kwargs for multi_head_attention under one variant."""
    v = Attending.parse(variant)
    # bottom-right causality with T > S would empty the first rows: that has its own property
    fits = (
        (lambda b: b.T <= b.S) if v.masking == Masking(causal="bottom_right") else (lambda b: True)
    )
    buckets = [b for b in MHA_BUCKETS if (v.kind != "self" or b.T == b.S) and fits(b)]
    s: MhaShape = data.draw(st.sampled_from(buckets), label="shape")
    heads = 1 if v.single_head else s.H
    query, key, value = draw_attending(data, dtype, v.kind, s.B, s.T, s.S, s.D)
    shape = AttentionShape(s.B, heads, s.T, s.S, s.D // heads, s.D // heads)
    m = data.draw(masks(shape, v.masking, dtype), label="mask")
    params = data.draw(mha_params(s.D, dtype), label="params")
    return dict(
        query=query,
        key=key,
        value=value,
        params=params,
        num_heads=heads,
        mask=m.mask,
        causal=m.causal,
    )


def _visible(inputs: Mapping[str, Any]) -> np.ndarray:
    """(B, H, T, S) bool: where each query may attend."""
    B, T, _ = inputs["query"].shape
    q = np.zeros((B, inputs["num_heads"], T, 1))
    k = np.zeros((B, inputs["num_heads"], inputs["key"].shape[1], 1))
    return visible({"q": q, "k": k, "mask": inputs["mask"], "causal": inputs["causal"]})


def _projected_single_head(query, key, value, params, num_heads, mask=None, causal=None):
    """H = 1 multi-head attention written as single-head attention with the projections applied."""
    dtype = query.dtype
    q, k, v = (
        _project(x, params, w, b, 1).astype(dtype)
        for x, w, b in ((query, "w_q", "b_q"), (key, "w_k", "b_k"), (value, "w_v", "b_v"))
    )  # (B, 1, L, D)
    context = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)[:, 0]  # (B, T, D)
    out = context @ params["w_o"].astype(dtype)
    return out + params["b_o"].astype(dtype) if params.get("b_o") is not None else out


def single_head_is_projected_attention(
    subject: Subject, data: st.DataObject, variant: Attending
) -> None:
    """H = 1 multi-head attention equals single-head attention on the projected inputs, then W_o."""
    inputs = draw_mha(data, subject.dtype, replace(Attending.parse(variant), single_head=True))
    subject.case(inputs, expected_fn=_projected_single_head).assert_matches_oracle(
        "H=1 vs projected single-head attention"
    )


def batch_equals_items(subject: Subject, data: st.DataObject, variant: Attending) -> None:
    """A batch equals its items computed one at a time."""
    inputs = draw_mha(data, subject.dtype, variant)
    whole = subject.case(inputs)
    for b in range(inputs["query"].shape[0]):
        item = dict(inputs)
        item["query"] = inputs["query"][b : b + 1]
        item["key"] = (
            item["query"] if inputs["key"] is inputs["query"] else inputs["key"][b : b + 1]
        )
        item["value"] = (
            item["query"]
            if inputs["value"] is inputs["query"]
            else item["key"]
            if inputs["value"] is inputs["key"]
            else inputs["value"][b : b + 1]
        )
        mask = inputs["mask"]
        if mask is not None and mask.ndim == 4 and mask.shape[0] > 1:
            item["mask"] = mask[b : b + 1]
        whole.assert_equivalent(
            whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch"
        )


def fully_masked_rows_are_zero(subject: Subject, data: st.DataObject, variant: Attending) -> None:
    """A query row that sees no key gets a zero context, so its output is b_o (0 without biases)."""
    inputs = draw_mha(data, subject.dtype, variant)
    # (B, T): rows no head can see anything from (numpy types any(axis) as "bool | array")
    empty = ~cast(np.ndarray, _visible(inputs).any(-1)).any(1)
    case = subject.case(inputs)
    case.assert_matches_oracle("output (fully masked rows give b_o)")
    if not empty.any():
        subject.fail(inputs, "strategy produced no fully masked row")


# Argument domains (spec/domains.py).
def _next_divisor(H: int, inputs: Any) -> int | None:
    """Another head count that divides D: the nearest one above H, else below (None if D has only
    H)."""
    D = inputs["query"].shape[-1]
    others = [h for h in range(1, D + 1) if D % h == 0 and h != H]
    above = [h for h in others if h > H]
    return above[0] if above else (others[-1] if others else None)


def _is(a: str, b: str) -> Any:
    return lambda v, i: i[a] is i[b]


# The key bias adds q . b_k to every logit of a query's row: softmax is shift-invariant, so no
# output (and no gradient but b_k's own, which is 0) depends on it.
_KEY_BIAS = {
    kind: "the key bias shifts every logit of a row by the same q . b_k; softmax is invariant to "
    "that shift"
    for kind in ("default", "perturbed")
}
_WEIGHT = (
    "float array (D, D), acting on the right (y = x W + b); head h owns columns h K .. (h + "
    "1) K - 1"
)
_BIAS = "float array (D,), or absent (0)"
MHA_ARGS = (
    Arg(
        "query",
        "float array (B, T, D), every axis >= 1",
        regions=(
            region(
                "self-attention (query is key is value)",
                lambda v, i: i["key"] is v and i["value"] is v,
            ),
            region("T = 1", lambda v, i: v.shape[1] == 1),
            region("T != S", lambda v, i: v.shape[1] != i["key"].shape[1]),
        ),
    ),
    Arg(
        "key",
        "float array (B, S, D), S >= 1; may be the very array passed as query (self-attention) or "
        "as value",
        regions=(
            region(
                "one memory (key is value, not query)",
                lambda v, i: i["value"] is v and i["query"] is not v,
            ),
            region(
                "distinct key and value", lambda v, i: i["value"] is not v and i["query"] is not v
            ),
        ),
    ),
    Arg("value", "float array (B, S, D) like key"),
    Arg(
        "params",
        "dict of the canonical weights w_q, w_k, w_v, w_o and optional biases b_q, b_k, b_v, b_o",
        kind="params",
        regions=(
            region(
                "every bias present", lambda v, i: all(b in v for b in ("b_q", "b_k", "b_v", "b_o"))
            ),
            region("no bias", lambda v, i: not any(b in v for b in ("b_q", "b_k", "b_v", "b_o"))),
            region(
                "some biases",
                lambda v, i: 0 < sum(b in v for b in ("b_q", "b_k", "b_v", "b_o")) < 4,
            ),
        ),
        entries=tuple(Arg(w, _WEIGHT) for w in ("w_q", "w_k", "w_v", "w_o"))
        + tuple(
            Arg(b, _BIAS, default=None, invisible=_KEY_BIAS if b == "b_k" else {})
            for b in ("b_q", "b_k", "b_v", "b_o")
        ),
    ),
    Arg(
        "num_heads",
        "int H >= 1 dividing D",
        kind="int",
        perturb=_next_divisor,
        regions=(
            region("H = 1", lambda v, i: v == 1),
            region("H = D (K = 1)", lambda v, i: v == i["query"].shape[-1]),
            region("1 < H < D", lambda v, i: 1 < v < i["query"].shape[-1]),
        ),
    ),
    Arg(
        "mask",
        "None, bool (True = may attend) or additive float, broadcastable to (B, H, T, S)",
        kind="mask",
        default=None,
        regions=(
            region("None", lambda v, i: v is None),
            region("bool", lambda v, i: v is not None and v.dtype == np.bool_),
            region("additive", lambda v, i: v is not None and v.dtype != np.bool_),
            region(
                "key padding (B, 1, 1, S)",
                lambda v, i: v is not None and v.ndim == 4 and v.shape[1:3] == (1, 1),
            ),
        ),
    ),
    Arg(
        "causal",
        "None, 'top_left' or 'bottom_right' (as in scaled_dot_product_attention)",
        kind="choice",
        default=None,
        choices=(None, "top_left", "bottom_right"),
        regions=(
            region(
                "top_left with T = S",
                lambda v, i: v == "top_left" and i["query"].shape[1] == i["key"].shape[1],
            ),
            region(
                "top_left with T != S",
                lambda v, i: v == "top_left" and i["query"].shape[1] != i["key"].shape[1],
            ),
            region(
                "bottom_right with T < S",
                lambda v, i: v == "bottom_right" and i["query"].shape[1] < i["key"].shape[1],
            ),
        ),
    ),
)


_WEIGHTS_WRT = ("params.w_q", "params.w_k", "params.w_v", "params.w_o")
_MHA_WRT = {
    "self": ("query", *_WEIGHTS_WRT),
    "memory": ("query", "key", *_WEIGHTS_WRT),
    "cross": ("query", "key", "value", *_WEIGHTS_WRT),
}


def _bad(change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(draw_mha(data, dtype, Attending("cross")))

    return draw


def _heads_not_dividing(inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "num_heads": inputs["query"].shape[-1] + 1}


MULTI_HEAD_ATTENTION = Component(
    name="multi_head_attention",
    family="attention",
    shapes="query (B, T, D), key/value (B, S, D), W_* (D, D), b_* (D,) -> out (B, T, D)",
    error_scale=mha_error_scale,
    args=MHA_ARGS,
    draw=draw_mha,
    variants=MHA_VARIANTS,
    # self: one array (query is key is value, one gradient for its three uses); memory: key is value
    gradient=Gradient(
        wrt=lambda v: _MHA_WRT[Attending.parse(v).kind],
        variants=_variants("self", "cross", "cross+padding", "memory+padding"),
    ),
    bad_inputs=(
        BadInput("heads_do_not_divide_D", "D % H != 0", _bad(_heads_not_dividing)),
        BadInput(
            "weight_shape_mismatch",
            "W_q (D, D + 1)",
            _bad(
                lambda i: {
                    **i,
                    "params": {
                        **i["params"],
                        "w_q": np.concatenate([i["params"]["w_q"], i["params"]["w_q"][:, :1]], 1),
                    },
                }
            ),
        ),
        BadInput(
            "key_value_length_mismatch",
            "value with S + 1 positions",
            _bad(lambda i: {**i, "value": np.concatenate([i["value"], i["value"][:, :1]], 1)}),
        ),
        BadInput(
            "mask_not_broadcastable",
            "mask (T, S + 1)",
            _bad(
                lambda i: {**i, "mask": np.ones((i["query"].shape[1], i["key"].shape[1] + 1), bool)}
            ),
        ),
    ),
)

# Properties beside the differential one, registered once the record they belong to exists.
prop(MULTI_HEAD_ATTENTION, variants=_variants("self", "cross", "memory+causal_bottom_right"))(
    single_head_is_projected_attention
)
prop(MULTI_HEAD_ATTENTION, variants=_variants("self", "cross+padding", "memory+padding"))(
    batch_equals_items
)
prop(
    MULTI_HEAD_ATTENTION,
    variants=_variants(
        "cross+padding_zero_length",
        "memory+padding_zero_length",
        "self+padding_zero_length",
        "self+bool_empty_rows",
    ),
)(fully_masked_rows_are_zero)
