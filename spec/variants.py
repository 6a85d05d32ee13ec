"""Spec entries: the attention variants kernels implement today (reference/variants.py).

    variant_attention(q, k, v, mask=None, scale=None, causal=None, window=None,
                      align="bottom_right", softcap=None, alibi_slopes=None, sinks=None)
        -> context (B, Hq, T, Kv)
    attention_lse(q, k, mask=None, scale=None, causal=None, window=None, align="bottom_right",
                  softcap=None, alibi_slopes=None) -> lse (B, Hq, T)
    merge_attention_states(o_a, lse_a, o_b, lse_b) -> context (B, H, T, Kv)
    alibi_slopes(H) -> (H,) float64

q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv), Hq a multiple of Hkv (grouped heads, query
head h reads key/value head h // (Hq / Hkv)). The order the variants change the logits in is pinned
in reference/variants.py: scale, soft-cap, ALiBi, additive mask, then every hidden key -inf.
Conventions where libraries differ, each pinned here:
- window (left, right) around the aligned diagonal, -1 unbounded: flash-attention's window_size.
  Its alignment is ``align``: bottom_right (flash-attention, which aligns every window so) or
  top_left (jax.nn.dot_product_attention's local_window_size, which has no -1: an unbounded side
  is a bound >= S there).
- soft-cap cap * tanh(L / cap) on the scaled logits, before ALiBi and masks (Gemma 2;
  flash-attention PR #1025): a masked key stays exactly 0.
- ALiBi bias -slope_h |t + off - s| for every visible key, causal or not (flash-attention's form;
  under causality it equals Press et al.'s -slope (t - s)).
- a sink is a raw per-head logit in each row's denominator (gpt-oss): rows sum to less than 1.
- the log-sum-exp is of the final logits of the keys, without the sink; -inf for a row with none.
error_scale: scaled_dot_product_attention's with the logits' magnitude bounded by what the variant
leaves of it (a cap bounds it by the cap; ALiBi adds max|slope| (S + |T - S|)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from hypothesis import strategies as st

import reference as R
from reference.semantics import CANONICAL, semantics
from spec.attention import ATTENTION_BAD_INPUTS, logit_magnitude
from spec.core import BadInput, Component, Gradient
from spec.domains import Arg, region
from spec.dtypes import FLOAT64, DType
from spec.grouped import GROUPS, _distinct_heads
from spec.strategies import Masking, attention_inputs, masks, seeds


@dataclass(frozen=True)
class Variant:
    """Which variants a draw turns on (the discrete axis of these tests), and the alignment of the
    window, the ALiBi distances and causality. str is the test id: "window", "softcap+window",
    "alibi+causal_top_left", "sinks", "empty_rows" (a window or padding that hides every key of
    some row)."""

    window: bool = False
    softcap: bool = False
    alibi: bool = False
    sinks: bool = False
    causal: bool = False
    align: str = "bottom_right"
    mask: str = "none"  # "none", "bool", "additive" or "padding"
    empty: bool = False

    def __str__(self) -> str:
        parts = [n for n in ("softcap", "window", "alibi", "sinks") if getattr(self, n)]
        if self.mask != "none":
            parts.append(self.mask)
        if self.causal:
            parts.append("causal")
        if self.empty:
            parts.append("empty_rows")
        text = "+".join(parts) or "plain"
        return text if self.align == "bottom_right" else f"{text}_top_left"

    @classmethod
    def parse(cls, text: Variant | str | None) -> Variant:
        """The variant a test id names ("softcap+window", "plain_top_left")."""
        if isinstance(text, Variant):
            return text
        text = text or "plain"
        align = "top_left" if text.endswith("_top_left") else "bottom_right"
        parts = set(text.removesuffix("_top_left").split("+")) - {"plain"}
        flags = {"softcap", "window", "alibi", "sinks", "causal"}
        unknown = parts - flags - {"bool", "additive", "padding", "empty_rows"}
        if unknown:
            raise ValueError(f"unknown variant parts {sorted(unknown)} in {text!r}")
        mask = next((m for m in ("bool", "additive", "padding") if m in parts), "none")
        return cls(
            **{f: f in parts for f in flags}, align=align, mask=mask, empty="empty_rows" in parts
        )


VARIANTS = (
    Variant(),
    Variant(window=True),
    Variant(window=True, align="top_left"),
    Variant(window=True, causal=True, mask="bool"),
    Variant(softcap=True, window=True),  # Gemma 2's local layers
    Variant(softcap=True, mask="bool"),
    Variant(alibi=True, mask="padding"),
    Variant(alibi=True, causal=True, align="top_left"),
    # an additive mask with the bias a variant adds itself: the adapter has to sum the two (a
    # mutant of jax's adapter that subtracted ALiBi from the mask survived without it, `make
    # mutation`), after the cap (reference/variants.py's order)
    Variant(alibi=True, mask="additive"),
    Variant(softcap=True, mask="additive", causal=True),
    Variant(sinks=True, window=True, causal=True),  # gpt-oss's sliding layers
    Variant(softcap=True, window=True, alibi=True, sinks=True, mask="padding"),
)
EMPTY_VARIANTS = (Variant(window=True, empty=True), Variant(sinks=True, mask="padding", empty=True))
LSE_VARIANTS = tuple(v for v in VARIANTS if not v.sinks)


def _window(data: st.DataObject, S: int, v: Variant, allow_empty: bool) -> tuple[int, int]:
    """(left, right) over its domain: -1, 0, 1, a few keys, S and beyond; with causality the right
    side is 0 (a causal window) or -1."""
    bounds = st.sampled_from([-1, 0, 1, 2, 3, S - 1, S, S + 5])
    left = data.draw(bounds, label="window_left")
    right = data.draw(st.sampled_from([0, -1]) if v.causal else bounds, label="window_right")
    if v.empty and allow_empty:
        right = 0
    return left, right


def draw_variant(data: st.DataObject, dtype: DType, variant: Variant | None) -> dict[str, Any]:
    """q (B, Hq, T, K), k and v (B, Hkv, S, .), a mask, and the variant's window, cap, slopes and
    sinks."""
    v = Variant.parse(variant)
    # a row keeps a visible key unless the variant empties one: T <= S puts every aligned diagonal
    # on a key, and the mask below keeps the diagonal visible
    where = (lambda s: s.T > s.S) if v.empty and v.window else (lambda s: s.T <= s.S)
    x = data.draw(attention_inputs(dtype, where, scaled=True), label="qkv")
    G = data.draw(st.sampled_from(GROUPS), label="group")
    q = _distinct_heads(x.q, G)
    B, Hq, T, _ = q.shape
    S = x.k.shape[2]
    shape = x.shape._replace(H=Hq)
    # no finfo.min fill in an additive mask here: a row whose visible keys all carry it has a
    # log-sum-exp near finfo.min, which flex's exp2 (x log2 e) and a float16 sum with ALiBi take
    # past the range to -inf; that fill's conventions are scaled_dot_product_attention's tests
    masking = Masking(v.mask, empty=v.empty and v.mask == "padding")
    m = data.draw(masks(shape, masking, dtype, soft=False))
    mask = m.mask
    off = S - T if v.align == "bottom_right" else 0
    diagonal = np.arange(S)[None, :] == np.arange(T)[:, None] + off  # (T, S)
    if mask is not None and not v.empty:  # keep the diagonal key: the row stays non-empty
        mask = np.broadcast_to(mask, (B, Hq, T, S))  # (B, Hq, T, S)
        if mask.dtype == np.bool_:
            mask = mask | diagonal
        else:  # an additive mask: a hidden (-inf) diagonal key gets bias 0
            mask = np.where(diagonal & np.isneginf(mask.astype(np.float64)), 0, mask)
            mask = mask.astype(dtype.np_dtype)
    inputs: dict[str, Any] = {"q": q, "k": x.k, "v": x.v, "mask": mask, "scale": x.scale}
    inputs["causal"] = v.align if v.causal else None
    inputs["align"] = v.align
    inputs["window"] = _window(data, S, v, allow_empty=True) if v.window else None
    rng = np.random.default_rng(data.draw(seeds(), label="variant_seed"))
    if v.softcap:
        inputs["softcap"] = data.draw(st.sampled_from([0.5, 1.0, 5.0, 30.0, 50.0]), label="cap")
    if v.alibi:
        standard = data.draw(st.booleans(), label="press_slopes")
        slopes = np.asarray(R.alibi_slopes(Hq) if standard else rng.standard_normal(Hq))
        inputs["alibi_slopes"] = slopes.astype(dtype.np_dtype)
    if v.sinks:
        size = data.draw(st.sampled_from([1.0, 5.0, 30.0]), label="sink_size")
        inputs["sinks"] = np.asarray(size * rng.standard_normal(Hq)).astype(dtype.np_dtype)
    return inputs


def draw_lse(data: st.DataObject, dtype: DType, variant: Variant | None) -> dict[str, Any]:
    """draw_variant's inputs without v and sinks."""
    return {k: x for k, x in draw_variant(data, dtype, variant).items() if k not in ("v", "sinks")}


def _expanded(i: Mapping[str, Any]) -> dict[str, Any]:
    G = i["q"].shape[1] // i["k"].shape[1]
    out = {**i, "k": np.repeat(i["k"], G, axis=1)}
    if "v" in i:
        out["v"] = np.repeat(i["v"], G, axis=1)
    return out


def variant_logit_magnitude(i: Mapping[str, Any]) -> float:
    """The magnitude a visible logit is rounded at: |scale q.k| and the additive mask (a cap's tanh
    has slope <= 1, so the error of the product before it passes through undiminished at worst),
    plus the cap, the ALiBi distances times the slopes, and the sinks."""
    e = _expanded(i)
    L = logit_magnitude({k: x for k, x in e.items() if k in ("q", "k", "mask", "scale")})
    if i.get("softcap") is not None:
        L += float(i["softcap"])
    T, S = i["q"].shape[2], i["k"].shape[2]
    if i.get("alibi_slopes") is not None:
        L += float(np.abs(i["alibi_slopes"].astype(np.float64)).max()) * (S + abs(T - S))
    if i.get("sinks") is not None:
        L += float(np.abs(i["sinks"].astype(np.float64)).max())
    return L


def variant_error_scale(i: Mapping[str, Any]) -> float:
    return float(np.abs(i["v"].astype(np.float64)).max()) * (1.0 + variant_logit_magnitude(i))


def lse_error_scale(i: Mapping[str, Any]) -> float:
    return 1.0 + variant_logit_magnitude(i)


# Argument domains (spec/domains.py).
def _T_S(i: Mapping[str, Any]) -> tuple[int, int]:
    return i["q"].shape[2], i["k"].shape[2]


def _heads(i: Mapping[str, Any]) -> tuple[int, int]:
    return i["q"].shape[1], i["k"].shape[1]


def _visible_rows(i: Mapping[str, Any]) -> np.ndarray:
    """(B, Hq, T) whether each query row sees a key: the reference's logits, finite somewhere."""
    args = {k: x for k, x in i.items() if k not in ("v", "sinks")}
    return cast(np.ndarray, np.isfinite(R.attention_lse(**args).astype(np.float64)))


Q_ARG = Arg(
    "q",
    "float array (B, Hq, T, K), every axis >= 1; finite values",
    regions=(
        region("T = 1 (a decoding step)", lambda v, i: _T_S(i)[0] == 1),
        region("T < S", lambda v, i: _T_S(i)[0] < _T_S(i)[1]),
        region("T > S (empty-row variants)", lambda v, i: _T_S(i)[0] > _T_S(i)[1]),
        region(
            "large logits (|scale q.k| >= 1e3)", lambda v, i: logit_magnitude(_expanded(i)) >= 1e3
        ),
    ),
)
K_ARG = Arg(
    "k",
    "float array (B, Hkv, S, K), Hkv >= 1 dividing Hq; q's B and K; S >= 1",
    regions=(
        region("Hkv = 1 < Hq (multi-query)", lambda v, i: _heads(i)[1] == 1 < _heads(i)[0]),
        region("1 < Hkv < Hq (grouped)", lambda v, i: 1 < _heads(i)[1] < _heads(i)[0]),
        region("Hkv = Hq", lambda v, i: _heads(i)[1] == _heads(i)[0]),
        region("S = 1", lambda v, i: v.shape[2] == 1),
    ),
)
V_ARG = Arg("v", "float array (B, Hkv, S, Kv), k's B, Hkv, S; finite values")
MASK_ARG = Arg(
    "mask",
    "None, bool (True = may attend) or additive float, broadcastable to (B, Hq, T, S); ANDed with "
    "causal and the window",
    kind="mask",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("bool", lambda v, i: v is not None and v.dtype == np.bool_),
        region("additive float", lambda v, i: v is not None and v.dtype != np.bool_),
        region("a row that sees no key", lambda v, i: not _visible_rows(i).all()),
    ),
)
SCALE_ARG = Arg(
    "scale",
    "None (1/sqrt(K)) or any finite real",
    kind="number",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("0", lambda v, i: v == 0),
        region("negative", lambda v, i: v is not None and v < 0),
    ),
)
CAUSAL_ARG = Arg(
    "causal",
    "None, 'top_left' or 'bottom_right' (scaled_dot_product_attention's); ANDed with the window",
    kind="choice",
    default=None,
    choices=(None, "top_left", "bottom_right"),
    regions=(
        region("None", lambda v, i: v is None),
        region("top_left with T < S", lambda v, i: v == "top_left" and _T_S(i)[0] < _T_S(i)[1]),
        region("bottom_right", lambda v, i: v == "bottom_right"),
    ),
)


def _win(i: Mapping[str, Any]) -> tuple[int, int]:
    return i.get("window") or (-2, -2)


WINDOW_ARG = Arg(
    "window",
    "None or (left, right) ints >= -1: keys s with t + off - left <= s <= t + off + right, -1 "
    "unbounded (flash-attention's window_size)",
    kind="other",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("left unbounded (-1)", lambda v, i: _win(i)[0] == -1),
        region("right 0 (a causal window)", lambda v, i: _win(i)[1] == 0),
        region("left 0 (no key before the diagonal)", lambda v, i: _win(i)[0] == 0),
        region("a bound of 1 to 3 keys", lambda v, i: 1 <= _win(i)[0] <= 3 or 1 <= _win(i)[1] <= 3),
        region("a bound >= S (wider than the keys)", lambda v, i: min(_win(i)) >= _T_S(i)[1]),
    ),
)
ALIGN_ARG = Arg(
    "align",
    "'bottom_right' (off = S - T: flash-attention) or 'top_left' (off = 0: jax's "
    "local_window_size); places the window's and ALiBi's diagonal",
    kind="choice",
    default="bottom_right",
    choices=("bottom_right", "top_left"),
    regions=(
        region(
            "bottom_right with T < S", lambda v, i: v == "bottom_right" and _T_S(i)[0] < _T_S(i)[1]
        ),
        region("top_left with T < S", lambda v, i: v == "top_left" and _T_S(i)[0] < _T_S(i)[1]),
    ),
)
SOFTCAP_ARG = Arg(
    "softcap",
    "None or a finite number > 0: logits become cap * tanh(logits / cap)",
    kind="number",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("below 1 (0.5)", lambda v, i: v is not None and v < 1),
        region("Gemma 2's 50", lambda v, i: v == 50.0),
        region(
            "binding (the cap below the largest logit)",
            lambda v, i: v is not None and v < logit_magnitude(_expanded(i)),
        ),
    ),
)
ALIBI_ARG = Arg(
    "alibi_slopes",
    "None or a finite float array (Hq,), one slope per query head; bias -slope |t + off - s|",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "Press et al.'s slopes",
            lambda v, i: (
                v is not None and np.array_equal(v, R.alibi_slopes(len(v)).astype(v.dtype))
            ),
        ),
        region("a negative slope", lambda v, i: v is not None and bool((v < 0).any())),
    ),
)
SINKS_ARG = Arg(
    "sinks",
    "None or a finite float array (Hq,): one raw logit per query head in every row's denominator",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "a sink that dominates (|s| >= 10)",
            lambda v, i: v is not None and bool((np.abs(v.astype(np.float64)) >= 10).any()),
        ),
    ),
)


# Bad inputs: valid variant inputs with one rule broken.
def _bad(change: Any, without: tuple[str, ...] = ()) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = draw_variant(data, dtype, Variant())
        return {k: x for k, x in change(inputs).items() if k not in without}

    return draw


def _odd_kv_heads(i: dict[str, Any]) -> dict[str, Any]:
    Hq = i["q"].shape[1]
    kv = Hq + 1 if Hq > 1 else 2  # never a divisor of Hq
    return {**i, "k": np.repeat(i["k"][:, :1], kv, 1), "v": np.repeat(i["v"][:, :1], kv, 1)}


def _per_head(i: dict[str, Any], n: int) -> np.ndarray:
    return np.zeros(i["q"].shape[1] + n, dtype=i["q"].dtype)


_VARIANT_BAD = (
    ("heads_not_divisible", "Hkv does not divide Hq", _odd_kv_heads),
    ("window_below_minus_one", "window (-2, 0)", lambda i: {**i, "window": (-2, 0)}),
    ("window_not_a_pair", "window (3,)", lambda i: {**i, "window": (3,)}),
    ("unknown_align", "align 'center'", lambda i: {**i, "align": "center"}),
    ("zero_softcap", "softcap 0", lambda i: {**i, "softcap": 0.0}),
    ("negative_softcap", "softcap -5", lambda i: {**i, "softcap": -5.0}),
    ("nan_softcap", "softcap NaN", lambda i: {**i, "softcap": float("nan")}),
    ("alibi_wrong_length", "Hq + 1 slopes", lambda i: {**i, "alibi_slopes": _per_head(i, 1)}),
)
_SINK_BAD = (("sinks_wrong_length", "Hq - 1 sinks", lambda i: {**i, "sinks": _per_head(i, -1)}),)


def _dropping(bad: BadInput, without: tuple[str, ...]) -> BadInput:
    """bad with the inputs named in without left out."""

    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return {k: x for k, x in bad.draw(data, dtype).items() if k not in without}

    return BadInput(bad.name, bad.doc, draw)


def _attention_bad(without: tuple[str, ...]) -> tuple[BadInput, ...]:
    carried = tuple(
        _dropping(b, without)
        for b in ATTENTION_BAD_INPUTS
        if not ("v" in without and b.name == "kv_length_mismatch")
    )
    return carried + tuple(BadInput(n, d, _bad(c, without)) for n, d, c in _VARIANT_BAD)


# what both entry points take after q, k (and v): everything that shapes the logits
_LOGIT_ARGS = (MASK_ARG, SCALE_ARG, CAUSAL_ARG, WINDOW_ARG, ALIGN_ARG, SOFTCAP_ARG, ALIBI_ARG)

VARIANT_ATTENTION = Component(
    name="variant_attention",
    family="attention",
    shapes="q (B, Hq, T, K), k (B, Hkv, S, K), v (B, Hkv, S, Kv), Hq = G Hkv -> (B, Hq, T, Kv)",
    error_scale=variant_error_scale,
    args=(Q_ARG, K_ARG, V_ARG, *_LOGIT_ARGS, SINKS_ARG),
    draw=draw_variant,
    variants=VARIANTS,
    bad_inputs=_attention_bad(()) + tuple(BadInput(n, d, _bad(c)) for n, d, c in _SINK_BAD),
    gradient=Gradient(
        wrt=lambda v: ("q", "k", "v") + (("sinks",) if v.sinks else ()),
        variants=(
            Variant(window=True, align="top_left"),
            Variant(softcap=True, window=True),
            Variant(alibi=True),
            Variant(sinks=True),
        ),
    ),
)

ATTENTION_LSE = Component(
    name="attention_lse",
    family="attention",
    shapes="q (B, Hq, T, K), k (B, Hkv, S, K), Hq = G Hkv -> lse (B, Hq, T), -inf for an empty row",
    error_scale=lse_error_scale,
    args=(Q_ARG, K_ARG, *_LOGIT_ARGS),
    draw=draw_lse,
    variants=LSE_VARIANTS,
    bad_inputs=_attention_bad(("v", "sinks")),
)


def draw_merge(data: st.DataObject, dtype: DType, variant: None) -> dict[str, Any]:
    """Two partial attention states of one set of queries over a split of the keys, each the
    reference's in the test dtype: a part may hold no key (o 0, lse -inf), and a soft-cap or a mask
    may make one part's log-sum-exp far larger than the other's."""
    v = data.draw(st.sampled_from([Variant(), Variant(softcap=True), Variant(mask="bool")]))
    i = draw_variant(data, dtype, v)
    S = i["k"].shape[2]
    cut = data.draw(st.integers(0, S), label="split")
    parts = []
    for keys in (slice(0, cut), slice(cut, S)):
        part = {**i, "k": i["k"][:, :, keys], "v": i["v"][:, :, keys]}
        if part["mask"] is not None:
            part["mask"] = np.broadcast_to(i["mask"], (*i["q"].shape[:3], S))[..., keys]
        B, Hq, T = i["q"].shape[:3]
        if keys.stop == keys.start:  # no key in this part
            o = np.zeros((B, Hq, T, i["v"].shape[3]), dtype.np_dtype)
            lse = np.full((B, Hq, T), -np.inf, dtype.np_dtype)
        else:
            # a partial state is the merge's input, in flash-decoding's convention whatever the
            # profile: a row that sees no key of its part is o 0, lse -inf
            with semantics(fully_masked_row=CANONICAL["fully_masked_row"]):
                o = R.variant_attention(**part)
            lse = R.attention_lse(**{k: x for k, x in part.items() if k != "v"})
        parts.append((o, lse))
    if data.draw(st.booleans(), label="swap_parts"):
        parts.reverse()
    (o_a, lse_a), (o_b, lse_b) = parts
    return {"o_a": o_a, "lse_a": lse_a, "o_b": o_b, "lse_b": lse_b}


def merge_error_scale(i: Mapping[str, Any]) -> float:
    o = max(float(np.abs(i[n].astype(np.float64)).max()) for n in ("o_a", "o_b"))
    gap = np.abs(i["lse_a"].astype(np.float64) - i["lse_b"].astype(np.float64))
    finite = gap[np.isfinite(gap)]
    return o * (1.0 + (float(finite.max()) if finite.size else 0.0))


def _lse_gap(i: Mapping[str, Any]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(i["lse_a"].astype(np.float64) - i["lse_b"].astype(np.float64))


O_A = Arg("o_a", "float array (B, H, T, Kv): the context over keys A")
O_B = Arg("o_b", "float array (B, H, T, Kv), o_a's shape and dtype: the context over keys B")
LSE_A = Arg(
    "lse_a",
    "float array (B, H, T), o_a's dtype: the log-sum-exp over keys A, finite or -inf",
    regions=(
        region(
            "-inf (a part with no key)", lambda v, i: bool(np.isneginf(v.astype(np.float64)).any())
        ),
        region("parts 10 apart in lse", lambda v, i: bool((_lse_gap(i) >= 10).any())),
    ),
)
LSE_B = Arg("lse_b", "float array (B, H, T), o_a's dtype: the log-sum-exp over keys B, or -inf")


def _merge_bad(change: Any) -> Any:
    return lambda data, dtype: change(draw_merge(data, dtype, None))


MERGE_ATTENTION_STATES = Component(
    name="merge_attention_states",
    family="attention",
    shapes="o_a, o_b (B, H, T, Kv), lse_a, lse_b (B, H, T) -> (B, H, T, Kv)",
    error_scale=merge_error_scale,
    args=(O_A, LSE_A, O_B, LSE_B),
    draw=draw_merge,
    bad_inputs=(
        BadInput(
            "lse_shape_mismatch",
            "lse_a (B, H, T + 1)",
            _merge_bad(
                lambda i: {**i, "lse_a": np.concatenate([i["lse_a"], i["lse_a"][..., :1]], -1)}
            ),
        ),
        BadInput(
            "outputs_differ",
            "o_b with one more value column",
            _merge_bad(lambda i: {**i, "o_b": np.concatenate([i["o_b"], i["o_b"][..., :1]], -1)}),
        ),
        BadInput(
            "nan_lse",
            "lse_a NaN",
            _merge_bad(lambda i: {**i, "lse_a": np.full_like(i["lse_a"], np.nan)}),
        ),
    ),
)


def _slopes_inputs(data: st.DataObject, dtype: DType, variant: None) -> dict[str, Any]:
    """H from 1 to 16 and a few larger head counts, powers of two and not."""
    return {"H": data.draw(st.sampled_from([*range(1, 17), 24, 32, 40, 64]), label="H")}


ALIBI_SLOPES = Component(
    name="alibi_slopes",
    family="attention",
    shapes="H -> (H,) float64",
    error_scale=lambda i: 1.0,
    args=(
        Arg(
            "H",
            "int >= 1: the number of (query) heads",
            kind="int",
            regions=(
                region("1", lambda v, i: v == 1),
                region("a power of two > 1", lambda v, i: v > 1 and v & (v - 1) == 0),
                region("not a power of two", lambda v, i: v & (v - 1) != 0),
            ),
        ),
    ),
    draw=_slopes_inputs,
    dtypes=(FLOAT64,),
    bad_inputs=(
        BadInput(
            "no_heads",
            "H = 0 or negative",
            lambda data, dtype: {"H": data.draw(st.sampled_from([0, -1, -4]), label="H")},
        ),
        BadInput(
            "float_heads",
            "H a float (2.0, 3.5)",
            lambda data, dtype: {"H": data.draw(st.sampled_from([2.0, 3.5, 8.0]), label="H")},
        ),
    ),
)
