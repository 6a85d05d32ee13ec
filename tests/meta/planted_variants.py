"""Deliberately broken attention variants (spec/variants.py): each is the reference with one bug
that kernels have had, and the property that must catch it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

import reference as R
from reference.attention import softmax
from reference.masks import causal_mask


def _logits(q, k, mask, scale, causal, window, align, softcap, alibi_slopes, bug: str) -> Any:
    """The variant logits (B, Hq, T, S), -inf where hidden, with one bug turned on."""
    B, Hq, T, K = q.shape
    S = k.shape[2]
    G = Hq // k.shape[1]
    if bug == "interleaved_groups":  # query head h reads key head h % Hkv
        k = np.tile(k, (1, G, 1, 1))
    else:
        k = np.repeat(k, G, axis=1)
    dt = q.dtype.type
    s = dt(1 / np.sqrt(K) if scale is None else scale)
    logits = (q @ np.swapaxes(k, -1, -2)).astype(q.dtype)  # (B, Hq, T, S)
    if bug == "cap_before_scale" and softcap is not None:  # capped, then scaled
        logits = dt(softcap) * np.tanh(logits / dt(softcap)) * s
    else:
        logits = logits * s
        if softcap is not None and bug != "cap_after_mask":
            logits = dt(softcap) * np.tanh(logits / dt(softcap))
    off = S - T if align == "bottom_right" and bug != "alibi_unaligned" else 0
    if alibi_slopes is not None:
        d = np.abs(np.arange(T)[:, None] + off - np.arange(S)[None, :])  # (T, S)
        logits = logits - alibi_slopes.astype(q.dtype)[None, :, None, None] * d.astype(q.dtype)
    if mask is not None and mask.dtype != np.bool_:
        logits = logits + mask.astype(q.dtype)
    allowed = np.ones(logits.shape, bool)
    if mask is not None and mask.dtype == np.bool_:
        allowed &= mask
    if causal is not None:
        allowed &= causal_mask(T, S, causal)
    if window is not None:
        left, right = window
        pos = np.arange(T)[:, None] + (S - T if align == "bottom_right" else 0)
        keys = np.arange(S)[None, :]
        if bug == "minus_one_literal" or left >= 0:  # -1 taken as a bound of -1 keys
            allowed &= keys >= pos - left
        if right >= 0:
            allowed &= keys < pos + right if bug == "right_exclusive" else keys <= pos + right
    logits = np.where(allowed, logits, dt(-np.inf))
    if bug == "cap_after_mask" and softcap is not None:  # a masked -inf becomes -cap
        logits = dt(softcap) * np.tanh(logits / dt(softcap))
    return logits


def _adapter(name: str, bug: str) -> SimpleNamespace:
    def variant_attention(
        q,
        k,
        v,
        mask=None,
        scale=None,
        causal=None,
        window=None,
        align="bottom_right",
        softcap=None,
        alibi_slopes=None,
        sinks=None,
    ):
        L = _logits(q, k, mask, scale, causal, window, align, softcap, alibi_slopes, bug)
        S = k.shape[2]
        if sinks is not None:
            sink = sinks.astype(q.dtype)
            if bug == "sink_scaled":  # the sink taken as a q.k product: scaled too
                sink = sink * q.dtype.type(1 / np.sqrt(q.shape[-1]) if scale is None else scale)
            col = np.broadcast_to(sink[None, :, None, None], (*L.shape[:3], 1))
            L = np.concatenate([L, col], axis=-1)  # (B, Hq, T, S + 1)
        if bug == "empty_rows_uniform":  # a row of -inf averages V (a finite fill)
            L = np.where(np.isneginf(L), q.dtype.type(-1e30), L)
        w = softmax(L, axis=-1)[..., :S]
        G = q.shape[1] // k.shape[1]
        vf = np.tile(v, (1, G, 1, 1)) if bug == "interleaved_groups" else np.repeat(v, G, axis=1)
        return (w @ vf).astype(q.dtype)

    def attention_lse(
        q,
        k,
        mask=None,
        scale=None,
        causal=None,
        window=None,
        align="bottom_right",
        softcap=None,
        alibi_slopes=None,
    ):
        L = _logits(q, k, mask, scale, causal, window, align, softcap, alibi_slopes, bug)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m = np.max(L, axis=-1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            lse = np.log(np.exp(L - m).sum(-1)) + m[..., 0]
            if bug == "lse_base_2":  # flash kernels keep lse in base 2 internally
                lse = lse / np.log(2)
        return lse.astype(q.dtype)

    return SimpleNamespace(
        name=name,
        variant_attention=variant_attention,
        attention_lse=attention_lse,
        merge_attention_states=R.merge_attention_states,
    )


def _geometric_slopes(H: int) -> np.ndarray:
    """2^(-8 h / H) for every H: Press et al.'s rule only for powers of two."""
    return 2.0 ** (-8.0 * np.arange(1, H + 1) / H)


def _merge_weights_swapped(o_a, lse_a, o_b, lse_b):
    """Each part weighted by the other's share."""
    return R.merge_attention_states(o_b, lse_a, o_a, lse_b)


minus_one_literal = _adapter("window_minus_one_literal", "minus_one_literal")
right_exclusive = _adapter("window_right_exclusive", "right_exclusive")
cap_after_mask = _adapter("cap_after_mask", "cap_after_mask")
cap_before_scale = _adapter("cap_before_scale", "cap_before_scale")
alibi_unaligned = _adapter("alibi_unaligned", "alibi_unaligned")
sink_scaled = _adapter("sink_scaled", "sink_scaled")
interleaved_groups = _adapter("variant_interleaved_groups", "interleaved_groups")
empty_rows_uniform = _adapter("variant_empty_rows_uniform", "empty_rows_uniform")
lse_base_2 = _adapter("lse_base_2", "lse_base_2")
geometric_slopes = SimpleNamespace(name="geometric_slopes", alibi_slopes=_geometric_slopes)
merge_weights_swapped = SimpleNamespace(
    name="merge_weights_swapped",
    variant_attention=R.variant_attention,
    attention_lse=R.attention_lse,
    merge_attention_states=_merge_weights_swapped,
)

VA, LSE, MERGE = "variant_attention", "attention_lse", "merge_attention_states"
# (adapter, component, property, variant id, dtype): where each bug must be caught
CAUGHT_BY = [
    (minus_one_literal, VA, "unbounded_window_is_no_window", "window", "float32"),
    (minus_one_literal, LSE, "matches_reference", "window_top_left", "float32"),
    (right_exclusive, VA, "causal_window_is_causal", "bool_top_left", "float32"),
    (right_exclusive, VA, "matches_reference", "window+bool+causal", "float32"),
    (cap_after_mask, VA, "hidden_keys_weigh_exactly_zero", "softcap+window+alibi+bool", "float32"),
    (cap_before_scale, LSE, "capped_lse_stays_below_cap", "softcap+bool", "float32"),
    (alibi_unaligned, VA, "alibi_is_an_additive_bias", "alibi", "float32"),
    (sink_scaled, VA, "sink_is_a_key_without_value", "sinks+bool", "float32"),
    (interleaved_groups, VA, "grouped_heads_equal_repeated_heads", "softcap+window", "float32"),
    (interleaved_groups, LSE, "grouped_heads_equal_repeated_heads", "softcap+window", "float32"),
    (empty_rows_uniform, VA, "empty_rows_follow_the_convention", "window+empty_rows", "float32"),
    (lse_base_2, LSE, "matches_reference", "plain", "float32"),
    (lse_base_2, MERGE, "merge_of_a_split_is_the_whole", "softcap+bool", "float32"),
    (geometric_slopes, "alibi_slopes", "matches_reference", None, "float64"),
    (merge_weights_swapped, MERGE, "matches_reference", None, "float32"),
    (merge_weights_swapped, MERGE, "merge_of_a_split_is_the_whole", "softcap+bool", "float32"),
]

# the same code with no bug turned on: it must pass wherever a bug above is caught, so a catch is
# the bug's and not the planting's (tests/meta/test_planted_bugs.py)
clean = _adapter("variant_clean", "none")
clean.alibi_slopes = R.alibi_slopes
