"""The streaming oracle (reference/streaming.py) equals the plain reference where both run, for
every mask kind, causal alignment, scale and block size, including rows that see no key."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from reference.streaming import streaming_attention
from spec.dtypes import FLOAT64
from spec.strategies import AttentionShape, attention_scales, masks, seeds

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
