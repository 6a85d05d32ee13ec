"""Spec entry: grouped_query_attention (GQA; multi-query attention when Hkv = 1).

    grouped_query_attention(q, k, v, mask=None, scale=None, causal=None) -> context (B, Hq, T, Kv)

q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv), Hq a multiple of Hkv; query head h attends
with key/value head h // (Hq / Hkv): contiguous groups, as torch's
F.scaled_dot_product_attention(enable_gqa=True), jax.nn.dot_product_attention (it reshapes the
query heads to (Hkv, G)) and flash-attention do. Hq not a multiple of Hkv is refused. Everything
else is scaled_dot_product_attention's (masks broadcast to (B, Hq, T, S), causal alignments, the
empty-row convention, the error scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.attention import (
    ATTENTION_BAD_INPUTS,
    CAUSAL_ARG,
    MASK_ARG,
    Q_ARG,
    SCALE_ARG,
    V_ARG,
    context_error_scale,
)
from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.strategies import Masking, attention_inputs, masks, seeds
from spec.tolerance import compare

# fewer mask variants than scaled_dot_product_attention: the masking code is that component's; what
# is new here is the head map, under each way of hiding keys
VARIANTS = (
    Masking(),
    Masking("bool"),
    Masking("padding"),
    Masking(causal="top_left"),
    Masking(causal="bottom_right"),
)
GROUPS = (1, 2, 3, 4)  # query heads per key/value head


def _distinct_heads(q: np.ndarray, G: int) -> np.ndarray:
    """(B, H, T, K) -> (B, H G, T, K): G copies of q's heads, each rolled along T and sign-flipped
    by its copy, so every query head differs (a wrong head map cannot hide behind equal heads) while
    the drawn magnitudes (large logits, ties) stay."""
    copies = [np.roll(q, g, axis=2) * q.dtype.type(-1 if g % 2 else 1) for g in range(G)]
    return np.concatenate(copies, axis=1)  # (B, H G, T, K): copy g holds heads g H .. g H + H - 1


def draw_grouped(
    data: st.DataObject, dtype: DType, variant: Masking | str | None
) -> dict[str, Any]:
    """q (B, Hq, T, K), k and v (B, Hkv, S, .) with Hq = G Hkv, and a mask of the variant."""
    v = Masking.parse(variant)
    where = None if v.causal != "bottom_right" else (lambda s: s.T <= s.S)
    x = data.draw(attention_inputs(dtype, where, scaled=True), label="qkv")
    G = data.draw(st.sampled_from(GROUPS), label="group")
    q = _distinct_heads(x.q, G)
    m = data.draw(masks(x.shape._replace(H=q.shape[1]), v, dtype), label="mask")
    return {"q": q, "k": x.k, "v": x.v, "mask": m.mask, "scale": x.scale, "causal": m.causal}


def _regions(arg: Arg, names: tuple[str, ...]) -> Arg:
    """arg with only the named regions: GQA draws no additive mask and no empty row (those are
    scaled_dot_product_attention's)."""
    kept = tuple(r for r in arg.regions if r.name in names)
    return Arg(arg.name, arg.domain, arg.kind, arg.default, arg.choices, kept)


MASK_GROUPED = _regions(
    MASK_ARG,
    ("None", "bool", "4-D per head (B, H, T, S)", "key padding (B, 1, 1, S)", "2-D (T, S)"),
)
CAUSAL_GROUPED = _regions(
    CAUSAL_ARG,
    ("None", "top_left with T < S", "top_left with T > S", "bottom_right with T < S"),
)


def expanded(i: Any) -> dict[str, Any]:
    """The inputs with each key/value head repeated for its group: scaled_dot_product_attention's
    (the reference's own definition)."""
    G = i["q"].shape[1] // i["k"].shape[1]
    return {**i, "k": np.repeat(i["k"], G, axis=1), "v": np.repeat(i["v"], G, axis=1)}


def grouped_error_scale(i: Any) -> float:
    return context_error_scale(expanded(i))


def _heads(i: Any) -> tuple[int, int]:
    return i["q"].shape[1], i["k"].shape[1]


K_GROUPED = Arg(
    "k",
    "float array (B, Hkv, S, K), Hkv >= 1 dividing q's Hq, q's B and K; S >= 1",
    regions=(
        region("Hkv = 1 < Hq (multi-query)", lambda v, i: _heads(i)[1] == 1 < _heads(i)[0]),
        region("1 < Hkv < Hq (grouped)", lambda v, i: 1 < _heads(i)[1] < _heads(i)[0]),
        region("Hkv = Hq (multi-head)", lambda v, i: _heads(i)[1] == _heads(i)[0]),
        region("S = 1", lambda v, i: v.shape[2] == 1),
    ),
)
Q_GROUPED = Arg(
    "q", "float array (B, Hq, T, K), every axis >= 1; finite values", regions=Q_ARG.regions
)
V_GROUPED = Arg(
    "v", "float array (B, Hkv, S, Kv), k's B, Hkv and S; finite values", regions=V_ARG.regions
)


def _fewer_kv_heads(i: dict[str, Any]) -> dict[str, Any]:
    """Hq = 2, Hkv = 3 style: key/value heads that do not divide the query heads."""
    q, k, v = i["q"], i["k"], i["v"]
    Hq = q.shape[1]
    kv = Hq + 1 if Hq > 1 else 2  # never a divisor of Hq
    return {**i, "k": np.repeat(k[:, :1], kv, axis=1), "v": np.repeat(v[:, :1], kv, axis=1)}


def _v_heads_differ(i: dict[str, Any]) -> dict[str, Any]:
    v = i["v"]
    return {**i, "v": np.concatenate([v, v[:, :1]], axis=1)}


GROUPED_QUERY_ATTENTION = Component(
    name="grouped_query_attention",
    family="attention",
    shapes="q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv), Hq = G Hkv -> (B, Hq, T, Kv)",
    error_scale=grouped_error_scale,
    args=(Q_GROUPED, K_GROUPED, V_GROUPED, MASK_GROUPED, SCALE_ARG, CAUSAL_GROUPED),
    draw=draw_grouped,
    variants=VARIANTS,
    bad_inputs=(
        *ATTENTION_BAD_INPUTS,
        BadInput(
            "heads_not_divisible",
            "Hkv does not divide Hq",
            lambda data, dtype: _fewer_kv_heads(_valid(data, dtype)),
        ),
        BadInput(
            "kv_heads_mismatch",
            "v's Hkv differs from k's",
            lambda data, dtype: _v_heads_differ(_valid(data, dtype)),
        ),
    ),
    gradient=Gradient(wrt=paths("q", "k", "v"), variants=(Masking(), Masking(causal="top_left"))),
)


def _valid(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    x = data.draw(attention_inputs(dtype), label="qkv")
    return {"q": _distinct_heads(x.q, 2), "k": x.k, "v": x.v}


@prop(GROUPED_QUERY_ATTENTION, variants=VARIANTS)
def kv_head_feeds_its_group(subject: Subject, data: st.DataObject, variant: Masking) -> None:
    """Changing key/value head j changes the output of query heads j G .. j G + G - 1 and of no
    other: the groups are contiguous (an interleaved map, h % Hkv, fails), whatever the oracle."""
    inputs = draw_grouped(data, subject.dtype, variant)
    Hq, Hkv = _heads(inputs)
    G = Hq // Hkv
    j = data.draw(st.integers(0, Hkv - 1), label="kv_head")
    rng = np.random.default_rng(data.draw(seeds(), label="change_seed"))
    changed = {**inputs, "v": inputs["v"].copy()}
    changed["v"][:, j] = rng.standard_normal(changed["v"][:, j].shape).astype(inputs["v"].dtype)
    base, after = subject.case(inputs), subject.case(changed)
    others = np.ones(Hq, bool)
    others[j * G : (j + 1) * G] = False  # the group of kv head j
    # the other groups' outputs are computed from identical inputs: equal, exactly
    exact = base.bound.times(0.0)
    what = f"query heads outside kv head {j}'s group after changing v[:, {j}]"
    subject.check(
        compare(after.got, base.got, exact, what, select=others[None, :, None, None]), inputs
    )
    group_moved = not np.array_equal(after.got[:, ~others], base.got[:, ~others])
    if not group_moved and not np.array_equal(
        after.expected[:, ~others], base.expected[:, ~others]
    ):
        subject.fail(
            inputs, f"changing v[:, {j}] left query heads {j * G}..{j * G + G - 1} as they were"
        )


# what an adapter's scaled_dot_product_attention declarations may carry over to this component
# (adapters.carried_over): its checks and its variants' ids
CHECKS = {"*", "matches_reference", "kv_head_feeds_its_group", "vjp_matches_finite_differences"}
CHECKS |= {"refuses"}
VARIANT_IDS = {str(v) for v in VARIANTS}
