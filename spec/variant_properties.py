"""Properties of the attention variants (spec/variants.py) beside the differential ones: the
metamorphic relations between variants, which hold whatever the oracle says, so an implementation is
checked against itself too (a window against causality, ALiBi against an additive mask, sinks
against an extra key, a merge of a split against the whole)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from reference.semantics import convention
from spec.core import Subject, prop
from spec.dtypes import BFLOAT16, FLOAT32
from spec.tolerance import compare
from spec.variants import (
    ATTENTION_LSE,
    EMPTY_VARIANTS,
    MERGE_ATTENTION_STATES,
    VARIANT_ATTENTION,
    Variant,
    _visible_rows,
    draw_variant,
    variant_logit_magnitude,
)

WINDOWED = (Variant(window=True), Variant(window=True, mask="bool", align="top_left"))
POSITIONAL = (Variant(), Variant(mask="bool", align="top_left"))
CAPPED = (Variant(softcap=True, mask="bool"),)
# splittable: no variant that reads key positions (a part's alignment would move)
# the relations are about semantics, not precision: checked at float32 and at a 16-bit dtype (the
# differential test runs all four)
SEMANTIC = (FLOAT32, BFLOAT16)
SPLITTABLE = (Variant(softcap=True, mask="bool"),)


def _two(subject: Subject, inputs: dict[str, Any], other: dict[str, Any], what: str) -> None:
    """The adapter's outputs for two inputs with one exact answer agree within both bounds."""
    base, moved = subject.case(inputs), subject.case(other)
    base.assert_equivalent(base.got, moved, what)


@prop(VARIANT_ATTENTION, ATTENTION_LSE, variants=WINDOWED, dtypes=SEMANTIC)
def unbounded_window_is_no_window(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """window (-1, -1), or one at least T + S wide on both sides, equals no window."""
    inputs = subject.draw(data, variant)
    T, S = inputs["q"].shape[2], inputs["k"].shape[2]
    wide = data.draw(st.sampled_from([(-1, -1), (T + S, T + S), (-1, T + S)]), label="wide")
    _two(subject, {**inputs, "window": wide}, {**inputs, "window": None}, f"window {wide} vs none")


@prop(VARIANT_ATTENTION, ATTENTION_LSE, variants=POSITIONAL, dtypes=SEMANTIC)
def causal_window_is_causal(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """window (-1, 0) in an alignment equals causal in the same alignment, without a window."""
    inputs = {**subject.draw(data, variant), "causal": None}
    align = inputs["align"]
    _two(
        subject,
        {**inputs, "window": (-1, 0)},
        {**inputs, "window": None, "causal": align},
        f"window (-1, 0) aligned {align} vs causal={align!r}",
    )


@prop(
    VARIANT_ATTENTION,
    variants=(Variant(window=True, softcap=True, alibi=True, mask="bool"),),
    dtypes=SEMANTIC,
)
def hidden_keys_weigh_exactly_zero(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """Values of keys a query cannot see (window, mask, causality) set to 1e4 leave its output as
    it was: a hidden key weighs exactly 0 with a cap (capping after masking would give it
    e^(-2 cap)) and with ALiBi."""
    inputs = subject.draw(data, variant)
    hidden = ~_key_visible(inputs)  # (B, Hq, T, S)
    G = inputs["q"].shape[1] // inputs["k"].shape[1]
    # a key/value head is hidden from a row of query head h if hidden there; rewrite the value of
    # keys hidden from every query of the head's group, for every row of the group
    B, Hq, T, S = hidden.shape
    grouped = hidden.reshape(B, Hq // G, G, T, S)  # (B, Hkv, G, T, S)
    group_hidden: np.ndarray = np.all(grouped, axis=(2, 3))  # (B, Hkv, S)
    assume(group_hidden.any())
    loud = np.where(group_hidden[..., None], inputs["v"].dtype.type(1e4), inputs["v"])
    _two(subject, inputs, {**inputs, "v": loud}, "output after setting hidden keys' values to 1e4")


def _key_visible(inputs: dict[str, Any]) -> np.ndarray:
    """(B, Hq, T, S): where each query sees each key under mask, causality and the window."""
    from reference.masks import causal_mask
    from reference.variants import window_allowed

    B, Hq, T, _ = inputs["q"].shape
    S = inputs["k"].shape[2]
    seen = np.ones((B, Hq, T, S), bool)
    mask = inputs.get("mask")
    if mask is not None:
        seen &= mask if mask.dtype == np.bool_ else np.isfinite(mask.astype(np.float64))
    if inputs.get("causal") is not None:
        seen &= causal_mask(T, S, inputs["causal"])
    if inputs.get("window") is not None:
        seen &= window_allowed(T, S, inputs["window"], inputs["align"])
    return seen


@prop(
    VARIANT_ATTENTION,
    ATTENTION_LSE,
    variants=(Variant(softcap=True, window=True),),
    dtypes=SEMANTIC,
)
def huge_cap_is_no_cap(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """A cap far above every logit changes nothing: cap * tanh(L / cap) -> L as cap -> infinity."""
    inputs = subject.draw(data, variant)
    L = variant_logit_magnitude({**inputs, "softcap": None})
    cap = min(2.0**30 * (1.0 + L), float(subject.dtype.max) / 4)
    # cap tanh(L / cap) differs from L by about L^3 / (3 cap^2): below the dtype's rounding of L
    assume(L**3 / (3 * cap**2) <= subject.dtype.unit_roundoff * (1.0 + L))
    _two(subject, {**inputs, "softcap": cap}, {**inputs, "softcap": None}, f"cap {cap:.3g} vs none")


@prop(ATTENTION_LSE, variants=CAPPED, dtypes=SEMANTIC)
def capped_lse_stays_below_cap(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """With a cap and no bias every logit lies in [-cap, cap]: lse <= cap + log(visible keys)."""
    inputs = subject.draw(data, variant)
    case = subject.case(inputs)
    n = _key_visible(inputs).sum(-1)  # (B, Hq, T)
    top = float(inputs["softcap"]) + np.log(np.maximum(n, 1))  # (B, Hq, T)
    got = case.got.astype(np.float64)
    over = got - top
    worst = int(np.argmax(over))
    where = tuple(int(i) for i in np.unravel_index(worst, over.shape))
    if over.flat[worst] > case.bound.allowed:
        subject.fail(
            inputs,
            f"lse {got[where]:.6g} at {where} exceeds cap + log(keys) = {top[where]:.6g} by "
            f"more than the bound: {case.bound.explain()}",
        )


@prop(VARIANT_ATTENTION, variants=(Variant(alibi=True),), dtypes=SEMANTIC)
def alibi_is_an_additive_bias(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """ALiBi equals the additive mask -slope_h |t + off - s| (per query head) and no slopes."""
    inputs = subject.draw(data, variant)
    B, Hq, T, _ = inputs["q"].shape
    S = inputs["k"].shape[2]
    off = S - T if inputs["align"] == "bottom_right" else 0
    distance = np.abs(np.arange(T)[:, None] + off - np.arange(S)[None, :])  # (T, S)
    slopes = inputs["alibi_slopes"].astype(np.float64)[None, :, None, None]  # (1, Hq, 1, 1)
    bias = -slopes * distance  # (1, Hq, T, S)
    if inputs.get("mask") is not None:  # a boolean mask joins the bias as -inf
        bias = np.where(inputs["mask"], bias, -np.inf)
    other = {**inputs, "alibi_slopes": None, "mask": bias.astype(inputs["q"].dtype)}
    _two(subject, inputs, other, "ALiBi vs its bias given as an additive mask")


@prop(VARIANT_ATTENTION, variants=(Variant(sinks=True, mask="bool"),), dtypes=SEMANTIC)
def sink_is_a_key_without_value(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """A sink s_h equals one more key whose logit is s_h and whose value is 0: a zero key (logit 0)
    with the additive mask s_h on its column (on every row), without sinks."""
    inputs = subject.draw(data, variant)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    B, Hq, T, _ = q.shape
    S = k.shape[2]
    zero_k = np.zeros((*k.shape[:2], 1, k.shape[3]), k.dtype)
    zero_v = np.zeros((*v.shape[:2], 1, v.shape[3]), v.dtype)
    bias = np.zeros((B, Hq, T, S + 1))
    if inputs.get("mask") is not None:
        bias[..., :S] = np.where(np.broadcast_to(inputs["mask"], (B, Hq, T, S)), 0.0, -np.inf)
    bias[..., S] = inputs["sinks"].astype(np.float64)[None, :, None]
    other = {
        **inputs,
        "k": np.concatenate([k, zero_k], axis=2),  # (B, Hkv, S + 1, K)
        "v": np.concatenate([v, zero_v], axis=2),
        "mask": bias.astype(q.dtype),
        "sinks": None,
    }
    _two(subject, inputs, other, "sinks vs one more key of logit s and value 0")


@prop(
    VARIANT_ATTENTION,
    ATTENTION_LSE,
    variants=(Variant(window=True, softcap=True),),
    dtypes=SEMANTIC,
)
def grouped_heads_equal_repeated_heads(
    subject: Subject, data: st.DataObject, variant: Variant
) -> None:
    """Hkv < Hq equals the same call with each key/value head repeated for its group (Hkv = Hq)."""
    inputs = subject.draw(data, variant)
    G = inputs["q"].shape[1] // inputs["k"].shape[1]
    assume(G > 1)
    other = {**inputs, "k": np.repeat(inputs["k"], G, axis=1)}
    if "v" in inputs:
        other["v"] = np.repeat(inputs["v"], G, axis=1)
    _two(subject, inputs, other, f"groups of {G} query heads vs key/value heads repeated {G} times")


@prop(VARIANT_ATTENTION, ATTENTION_LSE, variants=EMPTY_VARIANTS, dtypes=SEMANTIC)
def empty_rows_follow_the_convention(
    subject: Subject, data: st.DataObject, variant: Variant
) -> None:
    """A row that sees no key (a window beside the keys, a length-0 item) has context exactly 0 and
    log-sum-exp -inf, sinks or not; the other rows match the oracle. Under the fully_masked_row
    profiles a row without sinks has the profile's context; the log-sum-exp stays -inf."""
    inputs = subject.draw(data, variant)
    if subject.component.name == "attention_lse":
        inputs = {k: x for k, x in inputs.items() if k not in ("v", "sinks")}
    empty = ~_visible_rows(inputs)  # (B, Hq, T)
    assume(empty.any())
    case = subject.case(inputs)
    got = case.got.astype(np.float64)
    want = 0.0 if got.ndim == 4 else -np.inf
    rows = np.broadcast_to(empty[..., None] if got.ndim == 4 else empty, got.shape)
    if got.ndim == 4 and inputs.get("sinks") is None:  # the context: the profile's convention
        case.assert_rows_without_keys(rows)
        rows = np.zeros_like(rows)
    wrong = rows & (got != want)
    if wrong.any():
        i = tuple(int(t) for t in np.argwhere(wrong)[0])
        subject.fail(
            inputs, f"row {i[:3]} sees no key and returned {got[i]:.6g}; the spec says {want}"
        )
    keep = ~empty[..., None] if got.ndim == 4 else ~empty
    case.assert_matches_oracle("rows that see a key", select=keep)


def _split(inputs: dict[str, Any], cut: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The inputs over keys [0, cut) and [cut, S), a mask cut with them."""
    S = inputs["k"].shape[2]
    parts = []
    for keys in (slice(0, cut), slice(cut, S)):
        part = {**inputs, "k": inputs["k"][:, :, keys], "v": inputs["v"][:, :, keys]}
        if inputs.get("mask") is not None:
            full = (*inputs["q"].shape[:3], S)
            part["mask"] = np.ascontiguousarray(np.broadcast_to(inputs["mask"], full)[..., keys])
        parts.append(part)
    return parts[0], parts[1]


@prop(MERGE_ATTENTION_STATES, variants=SPLITTABLE, dtypes=SEMANTIC)
def merge_of_a_split_is_the_whole(subject: Subject, data: st.DataObject, variant: Variant) -> None:
    """Splitting the keys in two, attending over each part (the adapter's variant_attention and
    attention_lse) and merging the states (its merge_attention_states), in either order, equals
    attention over all the keys (flash-decoding's split-KV)."""
    inputs = draw_variant(data, subject.dtype, variant)
    S = inputs["k"].shape[2]
    assume(S >= 2)
    cut = data.draw(st.integers(1, S - 1), label="split")
    a, b = _split(inputs, cut)
    if convention("fully_masked_row") == "nan":  # a part's empty row is NaN: no merge can use it
        assume(all(_visible_rows(part).all() for part in (a, b)))
    attend, lse = subject.sibling("variant_attention"), subject.sibling("attention_lse")
    states = []
    for part in (a, b):
        o = attend.case(part)
        ell = lse.case({k: x for k, x in part.items() if k != "v"})
        states.append((o, ell))
    if data.draw(st.booleans(), label="b_first"):
        states.reverse()
    (oa, la), (ob, lb) = states
    merge_inputs = {"o_a": oa.got, "lse_a": la.got, "o_b": ob.got, "lse_b": lb.got}
    merged = subject.case(merge_inputs)
    whole = attend.case(inputs)
    # each part's context and lse within its bound; a merge weight moves by at most its lse's error
    v_max = float(np.abs(inputs["v"].astype(np.float64)).max())
    bound = (
        merged.bound + whole.bound + oa.bound + ob.bound + (la.bound + lb.bound).times(2 * v_max)
    )
    subject.check(
        compare(merged.got, whole.got, bound, f"merge of keys split at {cut} vs all keys"), inputs
    )


@prop(MERGE_ATTENTION_STATES, dtypes=SEMANTIC)
def merge_is_symmetric(subject: Subject, data: st.DataObject, variant: None) -> None:
    """merge(a, b) equals merge(b, a)."""
    inputs = subject.draw(data, variant)
    swapped = {
        "o_a": inputs["o_b"],
        "lse_a": inputs["lse_b"],
        "o_b": inputs["o_a"],
        "lse_b": inputs["lse_a"],
    }
    _two(subject, inputs, swapped, "merge(b, a) vs merge(a, b)")
