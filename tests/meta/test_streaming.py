"""The streaming oracle (reference/streaming.py) equals the plain reference where both run, for
every mask kind, causal alignment, scale and block size, including rows that see no key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from reference.streaming import rounded_attention, streaming_attention
from spec.dtypes import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, DType
from spec.strategies import AttentionShape, attention_scales, masks, seeds
from spec.tolerance import FLOOR_ULPS
from spec.variants import (
    EMPTY_VARIANTS,
    Variant,
    draw_variant,
    lse_error_scale,
    variant_error_scale,
)
from spec.variants import VARIANTS as SPEC_VARIANTS

VARIANT_DRAWS = SPEC_VARIANTS + EMPTY_VARIANTS

VARIANTS = (
    "none",
    "bool",
    "additive",
    "padding",
    "causal_top_left",
    "causal_bottom_right",
    "bool_empty_rows",
)


@given(
    shape=st.builds(
        AttentionShape,
        B=st.integers(1, 2),
        H=st.integers(1, 2),
        T=st.integers(1, 9),
        S=st.integers(1, 17),
        K=st.integers(1, 6),
        Kv=st.integers(1, 5),
    ),
    variant=st.sampled_from(VARIANTS),
    block=st.integers(1, 8),
    data=st.data(),
)
def test_streaming_equals_the_plain_reference(
    shape: AttentionShape, variant: str, block: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(data.draw(seeds(), label="seed"))
    q, k, v = (
        rng.standard_normal(s) * 3
        for s in [
            (shape.B, shape.H, shape.T, shape.K),
            (shape.B, shape.H, shape.S, shape.K),
            (shape.B, shape.H, shape.S, shape.Kv),
        ]
    )
    m = data.draw(masks(shape, variant, FLOAT64), label="mask")
    scale = data.draw(attention_scales(shape.K), label="scale")
    context, row_max, lse = streaming_attention(q, k, v, m.mask, scale, m.causal, block=block)
    plain = R.scaled_dot_product_attention(q, k, v, m.mask, scale, m.causal)
    np.testing.assert_allclose(
        context,
        plain,
        rtol=0,
        atol=1e-12 * (1 + np.abs(v).max()),
        err_msg=f"{variant}, block {block}",
    )
    # the row statistics: exp(logit - lse) are the plain reference's weights, max is the largest
    # visible logit
    weights = R.attention_weights(q, k, m.mask, scale, m.causal)  # (B, H, T, S)
    seen = m.allowed.any(-1)  # (B, H, T)
    assert (np.isneginf(lse) == ~seen).all() and (np.isneginf(row_max) == ~seen).all(), (
        "empty rows: lse and max are -inf"
    )
    s = 1 / np.sqrt(shape.K) if scale is None else scale
    logits = np.einsum("bhtk,bhsk->bhts", q, k) * s + (
        m.mask if m.mask is not None and m.mask.dtype != np.bool_ else 0
    )
    logits = np.where(m.allowed, logits, -np.inf)  # (B, H, T, S)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_allclose(
            np.where(seen[..., None], np.exp(logits - lse[..., None]), 0),
            weights,
            rtol=0,
            # lse is held to an ulp of itself: with a finfo.min bias (|lse| ~ 1.8e308) m + log l
            # rounds to m, so exp(logit - lse) is only as good as u |lse| (the row max still is)
            atol=1e-12 * (1 + np.abs(np.where(seen, lse, 0)).max()),
        )
    np.testing.assert_allclose(
        np.where(seen, row_max, 0), np.where(seen, logits.max(-1), 0), rtol=1e-13, atol=1e-12
    )


@pytest.mark.parametrize("variant", VARIANT_DRAWS, ids=str)
@given(block=st.integers(1, 8), data=st.data())
def test_streaming_equals_the_plain_variant_reference(
    variant: Variant, block: int, data: st.DataObject
) -> None:
    """Every variant the spec draws (grouped heads, windows in both alignments, soft-caps, ALiBi,
    sinks, rows that see no key): the streaming context is variant_attention's and its log-sum-exp
    attention_lse's, whatever the block size."""
    i = draw_variant(data, FLOAT64, variant)
    context, _, lse = streaming_attention(**i, block=block)
    np.testing.assert_allclose(
        context, R.variant_attention(**i), rtol=0, atol=1e-12 * (1 + np.abs(i["v"]).max())
    )
    want = R.attention_lse(**{n: x for n, x in i.items() if n not in ("v", "sinks")})
    assert (np.isneginf(lse) == np.isneginf(want)).all(), "empty rows: lse -inf"
    finite = np.isfinite(want)
    np.testing.assert_allclose(
        lse[finite], want[finite], rtol=0, atol=1e-12 * (1 + np.abs(want[finite]).max(initial=0))
    )


def _as_accurate(got, plain, exact, floor: float, what: str) -> None:
    """got and plain are equally accurate against exact: neither error over twice the other's plus
    the floor (an emulation that skipped a rounding would be more accurate than the reference it
    stands for, one that added one less)."""
    finite = np.isfinite(exact)
    e_got, e_plain = (
        float(np.abs(x.astype(np.float64) - exact)[finite].max(initial=0)) for x in (got, plain)
    )
    assert e_got <= 2 * e_plain + floor and e_plain <= 2 * e_got + floor, (
        f"{what}: error {e_got:.3g} against the plain reference's {e_plain:.3g} (floor {floor:.3g})"
    )


@pytest.mark.parametrize("dtype", [FLOAT32, FLOAT16, BFLOAT16], ids=str)
@pytest.mark.parametrize("variant", SPEC_VARIANTS, ids=str)
@given(data=st.data())
def test_rounded_variants_are_the_plain_reference_in_the_dtype(
    dtype: DType, variant: Variant, data: st.DataObject
) -> None:
    """rounded_attention, the kernel scale's same-precision term, is variant_attention and
    attention_lse evaluated in the dtype: the same roundings, only the order of the float32 sums
    differs. So its error against the float64 reference is the plain reference's to within a
    factor of 2 and a floor: FLOOR_ULPS rounding units of the output in the 16-bit dtypes (where the
    roundings to the dtype dominate), the policy's floor in float32 (where the logits' rounding,
    amplified by exp, does: seed 104 had the plain reference 4.5x less accurate). Its
    left-to-right order shares every operation but the two sums (test_kernel_scale.py checks those
    bit for bit)."""
    i = draw_variant(data, dtype, variant)
    exact = {n: x.astype(np.float64) if n in ("q", "k", "v") else x for n, x in i.items()}
    context, lse = rounded_attention(**i, block=3)
    unit = FLOOR_ULPS * dtype.unit_roundoff
    want = R.variant_attention(**exact)
    no_v = {n: x for n, x in i.items() if n not in ("v", "sinks")}
    lse_exact = R.attention_lse(**{n: x for n, x in exact.items() if n not in ("v", "sinks")})
    finite = np.isfinite(lse_exact)
    if dtype == FLOAT32:  # the policy's own floor: the logits' rounding, as exp amplifies it
        floors = unit * variant_error_scale(i), unit * lse_error_scale(no_v)
    else:  # the roundings to the dtype dominate: a few of the output's own
        floors = (
            unit * (np.abs(want).max(initial=0) + 1),
            unit * (np.abs(lse_exact[finite]).max(initial=0) + 1),
        )
    _as_accurate(context, R.variant_attention(**i), want, floors[0], "context")
    lse_plain = R.attention_lse(**no_v).astype(np.float64)
    assert (np.isneginf(lse.astype(np.float64)) == np.isneginf(lse_plain)).all(), "empty rows"
    _as_accurate(lse, lse_plain, lse_exact, floors[1], "log-sum-exp")
