"""Spec entries: attention_weights and scaled_dot_product_attention.

    attention_weights(q, k, mask=None, scale=None, causal=None) -> A        (B, H, T, S)
    scaled_dot_product_attention(q, k, v, mask=None, scale=None, causal=None) -> context (B, H, T,
    Kv)

q (B, H, T, K), k (B, H, S, K), v (B, H, S, Kv); scale defaults to 1/sqrt(K).
mask: bool (True = may attend) or additive float (-inf masks a key), broadcastable to (B, H, T, S).
causal: None, "top_left" (s <= t) or "bottom_right" (s <= t + S - T); combined with mask by AND.
A query row with no visible key gets zero weights and a zero context.
Dtypes: float64, float32, float16, bfloat16; outputs in the input dtype.
error_scale: weights 1 + L, context max|v| (1 + L), with L the largest |scale| sum_k |q_k k_k| of a
logit plus the largest finite additive mask entry: a logit is a dot product whose rounding error is
at most a few u times that sum, and a weight moves by at most a quarter of its logit's error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from reference.masks import causal_mask
from spec.core import BadInput, Component, Gradient, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.gradients import GRAD_DTYPES, call_vjp, cotangent
from spec.strategies import (
    EMPTY_ROW_VARIANTS,
    MASK_VARIANTS,
    Masking,
    attention_inputs,
    masks,
    seeds,
)
from spec.tolerance import compare


def logit_magnitude(inputs: Mapping[str, Any]) -> float:
    """L: the largest |scale| * sum_k |q_k k_k| over all (query, key) pairs, plus the largest finite
    bias."""
    q, k = np.abs(inputs["q"].astype(np.float64)), np.abs(inputs["k"].astype(np.float64))
    scale = inputs.get("scale")
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else abs(float(scale))
    L = float((q @ np.swapaxes(k, -1, -2)).max()) * scale  # (B, H, T, S) -> max
    mask = inputs.get("mask")
    if mask is not None and mask.dtype != np.bool_:
        # finite biases shift the logits; a fill near the dtype's most negative value masks a key as
        # -inf does (its weight is 0), so it is no magnitude a visible logit is rounded at
        bias = np.abs(mask.astype(np.float64))
        moderate = bias[bias < 0.5 * float(ml_dtypes.finfo(mask.dtype).max)]
        L += float(moderate.max()) if moderate.size else 0.0
    return L


def weights_error_scale(inputs: Mapping[str, Any]) -> float:
    return 1.0 + logit_magnitude(inputs)


def context_error_scale(inputs: Mapping[str, Any]) -> float:
    return float(np.abs(inputs["v"].astype(np.float64)).max()) * (1.0 + logit_magnitude(inputs))


def visible(inputs: Mapping[str, Any]) -> np.ndarray:
    """(B, H, T, S) bool: where each query may attend under the mask and the causal alignment
    together."""
    B, H, T, _ = inputs["q"].shape
    S = inputs["k"].shape[2]
    allowed = np.ones((B, H, T, S), dtype=bool)
    mask = inputs.get("mask")
    if mask is not None:
        allowed &= mask if mask.dtype == np.bool_ else np.isfinite(mask.astype(np.float64))
    if inputs.get("causal") is not None:
        allowed &= causal_mask(T, S, inputs["causal"])
    return allowed


def _draw(values: bool) -> Any:
    def draw(data: st.DataObject, dtype: DType, variant: Masking | str | None) -> dict[str, Any]:
        """q, k[, v], mask, scale, causal for one mask variant."""
        v = Masking.parse(variant)
        # bottom-right causality with T > S empties the first rows: only its empty-row variant draws
        # that
        where = (
            None
            if v.causal != "bottom_right"
            else (lambda s: s.T > s.S)
            if v.empty
            else (lambda s: s.T <= s.S)
        )
        x = data.draw(attention_inputs(dtype, where, scaled=True), label="qkv")
        m = data.draw(masks(x.shape, v, dtype), label="mask")
        inputs: dict[str, Any] = {"q": x.q, "k": x.k} | ({"v": x.v} if values else {})
        inputs.update(mask=m.mask, scale=x.scale, causal=m.causal)
        return inputs

    return draw


draw_weights, draw_sdpa = _draw(values=False), _draw(values=True)


# Argument domains (spec/domains.py): what each argument may be and the regions every run draws.
def _dims(i: Any) -> tuple[int, int, int, int, int]:
    B, H, T, K = i["q"].shape
    return B, H, T, i["k"].shape[2], K


def _logits(i: Any) -> float:
    return logit_magnitude(i)


def _bias(i: Any) -> np.ndarray:
    m = i.get("mask")
    return m.astype(np.float64) if m is not None and m.dtype != np.bool_ else np.zeros(0)


def _rows(i: Any) -> np.ndarray:
    """(B, H, T) whether a query row sees at least one key under mask and causal."""
    from reference.attention import _allowed

    B, H, T, S, _ = _dims(i)
    allowed = _allowed(
        B,
        H,
        T,
        S,
        i.get("mask") if i.get("mask") is None or i["mask"].dtype == np.bool_ else None,
        i.get("causal"),
    )
    bias = i.get("mask")
    if bias is not None and bias.dtype != np.bool_:
        allowed = allowed & np.isfinite(np.broadcast_to(bias.astype(np.float64), allowed.shape))
    return cast(np.ndarray, allowed.any(-1))  # numpy types any(axis) as "bool | array"


Q_ARG = Arg(
    "q",
    "float array (B, H, T, K), every axis >= 1; finite values",
    regions=(
        region("T = 1 (one query, a decoding step)", lambda v, i: _dims(i)[2] == 1),
        region("T < S", lambda v, i: _dims(i)[2] < _dims(i)[3]),
        region("T > S", lambda v, i: _dims(i)[2] > _dims(i)[3]),
        region("B > 1 and H > 1", lambda v, i: _dims(i)[0] > 1 and _dims(i)[1] > 1),
        region("large logits (|scale q.k| >= 1e3)", lambda v, i: _logits(i) >= 1e3),
        region(
            "ties (equal logits in a row)",
            lambda v, i: bool(np.isin(v.astype(np.float64), [-2, -1, 0, 1, 2]).all()),
        ),
        region("tiny logits (|scale q.k| < 1e-3)", lambda v, i: _logits(i) < 1e-3),
    ),
)
K_ARG = Arg(
    "k",
    "float array (B, H, S, K) like q's B, H, K; S >= 1",
    regions=(
        region("S = 1", lambda v, i: v.shape[2] == 1),
        region("K = 2", lambda v, i: v.shape[3] == 2),
    ),
)
V_ARG = Arg(
    "v",
    "float array (B, H, S, Kv), Kv >= 1 may differ from K; finite values",
    regions=(
        region("Kv != K", lambda v, i: v.shape[3] != i["q"].shape[3]),
        region(
            "large values (|v| >= 1e3)",
            lambda v, i: float(np.abs(v.astype(np.float64)).max()) >= 1e3,
        ),
    ),
)
MASK_ARG = Arg(
    "mask",
    "None, bool (True = may attend) or additive float (-inf masks a key), any shape that "
    "broadcasts to "
    "(B, H, T, S) with at most 4 axes",
    kind="mask",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("bool", lambda v, i: v is not None and v.dtype == np.bool_),
        region(
            "additive with finite biases",
            lambda v, i: bool((np.isfinite(_bias(i)) & (_bias(i) != 0)).any()),
        ),
        region("additive with -inf", lambda v, i: bool(np.isneginf(_bias(i)).any())),
        region(
            "additive with the dtype's most negative value",
            lambda v, i: bool((_bias(i) < -6e4).any()),
        ),
        region(
            "4-D per head (B, H, T, S)",
            lambda v, i: v is not None and v.ndim == 4 and v.shape[1] > 1 and v.shape[2] > 1,
        ),
        region(
            "key padding (B, 1, 1, S)",
            lambda v, i: v is not None and v.ndim == 4 and v.shape[1:3] == (1, 1),
        ),
        region("2-D (T, S)", lambda v, i: v is not None and v.ndim == 2 and v.shape[0] > 1),
        region("1-D (S,)", lambda v, i: v is not None and v.ndim == 1),
        region(
            "per-query rows (..., T, 1)",
            lambda v, i: v is not None and v.ndim >= 2 and v.shape[-1] == 1 and v.shape[-2] > 1,
        ),
        region("a fully masked query row", lambda v, i: not _rows(i).all()),
    ),
)
SCALE_ARG = Arg(
    "scale",
    "None (1/sqrt(K)) or any finite real: 0 gives uniform weights, a negative scale prefers "
    "dissimilar keys",
    kind="number",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "1/sqrt(K) written out",
            lambda v, i: v is not None and np.isclose(v, 1 / np.sqrt(i["q"].shape[-1])),
        ),
        region("0", lambda v, i: v == 0),
        region("negative", lambda v, i: v is not None and v < 0),
        region("non-dyadic (0.3)", lambda v, i: v == 0.3),
        region("large (4)", lambda v, i: v is not None and v >= 4),
        region("tiny (1e-3)", lambda v, i: v is not None and 0 < v <= 1e-3),
    ),
)
CAUSAL_ARG = Arg(
    "causal",
    "None, 'top_left' (s <= t) or 'bottom_right' (s <= t + S - T); ANDed with the mask",
    kind="choice",
    default=None,
    choices=(None, "top_left", "bottom_right"),
    regions=(
        region("None", lambda v, i: v is None),
        region("top_left with T < S", lambda v, i: v == "top_left" and _dims(i)[2] < _dims(i)[3]),
        region("top_left with T > S", lambda v, i: v == "top_left" and _dims(i)[2] > _dims(i)[3]),
        region(
            "bottom_right with T < S",
            lambda v, i: v == "bottom_right" and _dims(i)[2] < _dims(i)[3],
        ),
        region(
            "bottom_right with T > S (first rows empty)",
            lambda v, i: v == "bottom_right" and _dims(i)[2] > _dims(i)[3],
        ),
    ),
)


# Bad inputs: each starts from valid inputs and breaks one rule.
def _valid(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    x = data.draw(attention_inputs(dtype), label="qkv")
    return {"q": x.q, "k": x.k, "v": x.v}


def _bad(change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(_valid(data, dtype))

    return draw


def _grow(a: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate([a, np.take(a, [0], axis=axis)], axis=axis)


ATTENTION_BAD_INPUTS = (
    BadInput(
        "head_dim_mismatch", "k's K differs from q's", _bad(lambda i: {**i, "k": _grow(i["k"], -1)})
    ),
    BadInput(
        "kv_length_mismatch", "v's S differs from k's", _bad(lambda i: {**i, "v": _grow(i["v"], 2)})
    ),
    BadInput(
        "mask_not_broadcastable",
        "mask (T, S + 1)",
        _bad(lambda i: {**i, "mask": np.ones((i["q"].shape[2], i["k"].shape[2] + 1), bool)}),
    ),
    BadInput("nan_scale", "scale = NaN", _bad(lambda i: {**i, "scale": float("nan")})),
    BadInput(
        "empty_keys", "S = 0", _bad(lambda i: {**i, "k": i["k"][:, :, :0], "v": i["v"][:, :, :0]})
    ),
    BadInput(
        "empty_head_dim", "K = 0", _bad(lambda i: {**i, "q": i["q"][..., :0], "k": i["k"][..., :0]})
    ),
)


def _without_v(bad: BadInput) -> BadInput:
    return BadInput(
        bad.name,
        bad.doc,
        lambda data, dtype: {k: v for k, v in bad.draw(data, dtype).items() if k != "v"},
    )


ATTENTION_WEIGHTS = Component(
    name="attention_weights",
    family="attention",
    shapes="q (B, H, T, K), k (B, H, S, K) -> A (B, H, T, S)",
    error_scale=weights_error_scale,
    args=(Q_ARG, K_ARG, MASK_ARG, SCALE_ARG, CAUSAL_ARG),
    draw=draw_weights,
    variants=MASK_VARIANTS,
    bad_inputs=tuple(_without_v(b) for b in ATTENTION_BAD_INPUTS if b.name != "kv_length_mismatch"),
)

SCALED_DOT_PRODUCT_ATTENTION = Component(
    name="scaled_dot_product_attention",
    family="attention",
    shapes="q (B, H, T, K), k (B, H, S, K), v (B, H, S, Kv) -> context (B, H, T, Kv)",
    error_scale=context_error_scale,
    args=(Q_ARG, K_ARG, V_ARG, MASK_ARG, SCALE_ARG, CAUSAL_ARG),
    draw=draw_sdpa,
    variants=MASK_VARIANTS,
    bad_inputs=ATTENTION_BAD_INPUTS,
    # the additive mask is differentiated too: a learned bias (ALiBi, relative positions) is one
    gradient=Gradient(
        wrt=lambda v: ("q", "k", "v", "mask") if str(v) == "additive" else ("q", "k", "v"),
        variants=(Masking(), Masking("additive"), Masking("padding"), Masking(causal="top_left")),
    ),
)
# the variants that hide keys from some query: masks and causality
HIDING = (
    Masking("bool"),
    Masking("additive"),
    Masking("padding"),
    Masking(causal="top_left"),
    Masking(causal="bottom_right"),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(ATTENTION_WEIGHTS, variants=MASK_VARIANTS)
def weights_are_distributions(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """Weights lie in [0, 1], every row with a visible key sums to 1, masked keys get exactly 0."""
    inputs = subject.draw(data, variant)
    allowed = visible(inputs)
    case = subject.case(inputs)
    w = case.got.astype(np.float64)
    if (w < 0).any() or (w > 1).any():
        subject.fail(inputs, f"weights outside [0, 1]: min {w.min():.6g}, max {w.max():.6g}")
    leaked = (w != 0) & ~allowed
    if leaked.any():
        i = tuple(int(t) for t in np.argwhere(leaked)[0])
        subject.fail(inputs, f"masked key has weight {w[i]:.6g} at {i}; expected exactly 0")
    sums = w.sum(-1, keepdims=True)  # (B, H, T, 1)
    subject.check(
        compare(sums, np.ones_like(sums), case.bound.times(w.shape[-1]), "row sums vs 1"), inputs
    )


@prop(ATTENTION_WEIGHTS, SCALED_DOT_PRODUCT_ATTENTION, variants=EMPTY_ROW_VARIANTS)
def fully_masked_rows_are_zero(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """A query row that sees no key gets zero weights / a zero context (ONNX, flash-attention);
    under the fully_masked_row=uniform or nan profile, 1/S weights / the mean of V, or NaN."""
    inputs = subject.draw(data, variant)
    empty = cast(np.ndarray, ~visible(inputs).any(-1, keepdims=True))  # (B, H, T, 1)
    case = subject.case(inputs)
    case.assert_rows_without_keys(np.broadcast_to(empty, case.got.shape))
    case.assert_matches_oracle("rows with visible keys", select=~empty)


@prop(
    SCALED_DOT_PRODUCT_ATTENTION, variants=(Masking(), Masking("bool"), Masking(causal="top_left"))
)
def context_is_weighted_sum(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """context == (the adapter's own attention_weights) @ V, and lies in the per-coordinate range of
    the attended values."""
    inputs = subject.draw(data, variant)
    allowed = visible(inputs)
    case = subject.case(inputs)
    v = inputs["v"].astype(np.float64)  # (B, H, S, Kv)
    lo = np.where(allowed[..., None], v[:, :, None], np.inf).min(-2)  # (B, H, T, Kv)
    hi = np.where(allowed[..., None], v[:, :, None], -np.inf).max(-2)  # (B, H, T, Kv)
    got = case.got.astype(np.float64)
    slack = case.bound.allowed
    outside = (got < lo - slack) | (got > hi + slack)
    if outside.any():
        i = tuple(int(t) for t in np.argwhere(outside)[0])
        subject.fail(
            inputs,
            f"context {got[i]:.6g} at {i} outside the attended values' range [{lo[i]:.6g}, "
            f"{hi[i]:.6g}] (slack {slack:.3g})",
        )
    weights = subject.sibling("attention_weights").case(
        {k: v_ for k, v_ in inputs.items() if k != "v"}
    )
    combined = weights.got.astype(np.float64) @ v  # (B, H, T, Kv)
    # |A_got V - A V| <= S max|v| bound(A); |ctx - A V| <= bound(ctx)
    bound = case.bound + weights.bound.times(v.shape[2] * float(np.abs(v).max()))
    subject.check(compare(case.got, combined, bound, "context vs own weights @ V"), inputs)


def _permute(inputs: dict[str, Any], axis_name: str, perm: np.ndarray) -> dict[str, Any]:
    """Permute keys (axis_name='S': k, v, mask columns) or queries ('T': q, mask rows)."""
    out = dict(inputs)
    if axis_name == "S":
        out["k"] = inputs["k"][:, :, perm]
        if "v" in inputs:
            out["v"] = inputs["v"][:, :, perm]
        mask_axis = -1
    else:
        out["q"] = inputs["q"][:, :, perm]
        mask_axis = -2
    mask = inputs.get("mask")
    if mask is not None and mask.ndim >= -mask_axis and mask.shape[mask_axis] == len(perm):
        out["mask"] = np.take(mask, perm, axis=mask_axis)
    return out


@prop(
    ATTENTION_WEIGHTS,
    SCALED_DOT_PRODUCT_ATTENTION,
    variants=(Masking(), Masking("bool"), Masking("additive")),
)
def permutation_equivariant(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """Permuting key/value pairs together leaves the context unchanged (permutes the weights);
    permuting queries permutes the output rows."""
    inputs = subject.draw(data, variant)
    axis_name = data.draw(st.sampled_from(["S", "T"]), label="permuted_axis")
    n = inputs["k"].shape[2] if axis_name == "S" else inputs["q"].shape[2]
    perm = np.random.default_rng(data.draw(seeds(), label="perm_seed")).permutation(n)
    base, permuted = subject.case(inputs), subject.case(_permute(inputs, axis_name, perm))
    if axis_name == "T":
        expected = base.got[:, :, perm]
    elif "v" not in inputs:  # the weights: their key axis moves with the keys
        expected = base.got[..., perm]
    else:
        expected = base.got
    base.assert_equivalent(
        expected, permuted, f"output after permuting axis {axis_name} by {perm.tolist()}"
    )


@prop(ATTENTION_WEIGHTS, SCALED_DOT_PRODUCT_ATTENTION, variants=HIDING)
def hidden_keys_do_not_matter(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """Changing keys and values a query cannot see (masked, or in its future under causality)
    leaves that query's output unchanged."""
    inputs = subject.draw(data, variant)
    allowed = visible(inputs)
    S = inputs["k"].shape[2]
    rng = np.random.default_rng(data.draw(seeds(), label="change_seed"))
    changed = rng.random(S) < 0.5  # (S,) key positions to rewrite
    unaffected = ~(allowed & changed).any(
        -1, keepdims=True
    )  # (B, H, T, 1): rows that see none of them
    other = dict(inputs)
    for name in ("k", "v"):
        if name in inputs:
            noise = (10 * rng.standard_normal(inputs[name].shape)).astype(inputs[name].dtype)
            other[name] = np.where(changed[:, None], noise, inputs[name])  # (B, H, S, K)
    base, moved = subject.case(inputs), subject.case(other)
    base.assert_equivalent(
        base.got,
        moved,
        f"rows that cannot see changed keys {np.flatnonzero(changed).tolist()}",
        select=unaffected,
    )


@prop(
    ATTENTION_WEIGHTS,
    SCALED_DOT_PRODUCT_ATTENTION,
    variants=(Masking(), Masking("padding"), Masking("bool")),
)
def batch_equals_items(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """A batch equals its items computed one at a time."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    for b in range(inputs["q"].shape[0]):
        item = {key: _batch_item(key, value, b) for key, value in inputs.items()}
        whole.assert_equivalent(
            whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch"
        )


def _batch_item(key: str, value: Any, b: int) -> Any:
    """Item b of a batched argument; a mask without a batch axis (or with batch 1) is shared."""
    if not isinstance(value, np.ndarray) or (
        key == "mask" and (value.ndim < 4 or value.shape[0] == 1)
    ):
        return value
    return value[b : b + 1]


@prop(SCALED_DOT_PRODUCT_ATTENTION, dtypes=GRAD_DTYPES, kind="gradient")
def masked_keys_get_no_gradient(subject: Subject, data: st.DataObject, variant: None) -> None:
    """Keys and values a query may not attend to (key padding) receive exactly zero gradient."""
    inputs = draw_sdpa(data, subject.dtype, Masking("padding"))
    c = cotangent(data, subject.case(inputs).expected.shape, subject.dtype)
    grads = call_vjp(subject, inputs, c, ("k", "v"))
    padded = ~inputs["mask"][:, :, 0, :, None]  # (B, 1, 1, S) key-padding mask -> (B, 1, S, 1)
    for name in ("k", "v"):
        leaked = (
            np.abs(grads[name].astype(np.float64)) * padded
        )  # (B, H, S, K), nonzero only at padded keys
        if leaked.max() != 0:
            where = tuple(int(i) for i in np.unravel_index(np.argmax(leaked), leaked.shape))
            subject.fail(
                inputs,
                f"gradient leaks into masked key position: d{name}{list(where)} = "
                f"{grads[name][where]}",
            )


@prop(SCALED_DOT_PRODUCT_ATTENTION, dtypes=GRAD_DTYPES, kind="gradient")
def causal_future_gets_no_gradient(subject: Subject, data: st.DataObject, variant: None) -> None:
    """Under top-left causality, a cotangent on outputs before t sends exactly zero gradient to q,
    k, v at >= t."""
    inputs = draw_sdpa(data, subject.dtype, Masking(causal="top_left"))
    shape = subject.case(inputs).expected.shape  # (B, H, T, Kv)
    t = data.draw(st.integers(0, min(shape[2], inputs["k"].shape[2]) - 1), label="t")
    c = cotangent(data, shape, subject.dtype)
    c[:, :, t:] = 0  # only outputs before t are differentiated
    grads = call_vjp(subject, inputs, c, ("q", "k", "v"))
    for name in ("q", "k", "v"):
        later = np.abs(grads[name][:, :, t:].astype(np.float64))
        if later.size and later.max() != 0:
            where = tuple(int(i) for i in np.unravel_index(np.argmax(later), later.shape))
            subject.fail(
                inputs,
                f"outputs before t={t} send gradient to {name} at position {where[2] + t}: "
                f"{later[where]:.3g}",
            )
