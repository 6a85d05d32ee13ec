"""Spec entry: packed_attention (packed variable-length batches; reference/layouts.py).

    packed_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, scale=None, causal=None, window=None)
        -> (Nq, Hq, Kv)

q (Nq, Hq, K), k (Nk, Hkv, K), v (Nk, Hkv, Kv): N sequences end to end (tokens before heads, as
flash-attention's flash_attn_varlen_func and torch's varlen_attn take them), cu_seqlens_q and
cu_seqlens_k (N + 1,) their cumulative lengths. Each sequence attends within itself only. Pinned:
- causality and the window are per sequence, bottom-right aligned when its query and key lengths
  differ (flash-attention's varlen convention); causal="top_left" aligns them at the start;
- a sequence of length 0 is legal: no keys leave its queries with context 0 (the empty-row
  convention), no queries contribute no row;
- offsets start at 0, never decrease and end at the packed length exactly; both arrays name the
  same N sequences.
error_scale: the largest of scaled_dot_product_attention's context error scale over the sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.attention import context_error_scale
from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import BFLOAT16, FLOAT32, DType
from spec.grouped import GROUPS
from spec.strategies import arrays, attention_scales, qk_magnitude
from spec.tolerance import compare


@dataclass(frozen=True)
class Packing:
    """The discrete axis of packed tests. str is the test id: "cross", "self+causal",
    "cross+window+causal_top_left", "empty+cross" (zero-length sequences and rows with no key)."""

    causal: str | None = None
    window: bool = False
    same_lengths: bool = False  # self-attention: every sequence has as many keys as queries
    empty: bool = False  # zero-length sequences, and queries past the keys (rows that see none)

    def __str__(self) -> str:
        parts = ["self" if self.same_lengths else "cross"] + ["window"] * self.window
        if self.causal:
            parts.append("causal" if self.causal == "bottom_right" else "causal_top_left")
        return "+".join((["empty"] if self.empty else []) + parts)

    @classmethod
    def parse(cls, text: Packing | str | None) -> Packing:
        if isinstance(text, Packing):
            return text
        parts = set((text or "cross").split("+"))
        unknown = parts - {"self", "cross", "window", "causal", "causal_top_left", "empty"}
        if unknown:
            raise ValueError(f"unknown packing parts {sorted(unknown)}")
        causal = (
            "bottom_right"
            if "causal" in parts
            else "top_left"
            if "causal_top_left" in parts
            else None
        )
        return cls(causal, "window" in parts, "self" in parts, "empty" in parts)


VARIANTS = (
    Packing(),
    Packing(same_lengths=True, causal="bottom_right"),
    Packing(causal="bottom_right"),
    Packing(causal="top_left"),
    Packing(window=True),
    Packing(window=True, causal="bottom_right", same_lengths=True),
    Packing(empty=True),
    Packing(empty=True, window=True, causal="bottom_right"),
)
SEMANTIC = (FLOAT32, BFLOAT16)
LENGTHS = (1, 2, 3, 5, 8, 17)  # a sequence's length; 0 too in the "empty" variants
HEADS = (1, 2)  # key/value heads; query heads are a group of them
HEAD_SIZES = (4, 8, 16)


def _lengths(data: st.DataObject, v: Packing) -> tuple[list[int], list[int]]:
    """Per-sequence (query, key) lengths. Outside the empty variants every row sees a key: a
    sequence has at least one key, and under bottom-right causality or a window no more queries
    than keys."""
    N = data.draw(st.integers(1, 4), label="N")
    pick = st.sampled_from((0, *LENGTHS) if v.empty else LENGTHS)
    T = [data.draw(pick, label="T_i") for _ in range(N)]
    if v.same_lengths:
        S = list(T)
    else:
        S = [data.draw(pick, label="S_i") for _ in range(N)]
        if not v.empty and (v.causal == "bottom_right" or v.window):
            S = [max(s, t) for s, t in zip(S, T, strict=True)]  # T_i <= S_i: no empty row
    if sum(T) == 0:
        T[0] = 1  # the pack itself holds a query and a key
    if sum(S) == 0:
        S[-1] = 1
    return T, S


def _window(data: st.DataObject, S: int, v: Packing) -> tuple[int, int] | None:
    if not v.window:
        return None
    bounds = st.sampled_from([-1, 0, 1, 2, S - 1, S + 3])
    left = data.draw(bounds, label="window_left")
    right = data.draw(st.sampled_from([0, -1]) if v.causal else bounds, label="window_right")
    return left, right


def draw_packed(data: st.DataObject, dtype: DType, variant: Packing | str | None) -> dict[str, Any]:
    """q (Nq, Hq, K), k and v (Nk, Hkv, .), cu_seqlens_q / _k, a scale, causality and a window."""
    v = Packing.parse(variant)
    T, S = _lengths(data, v)
    Hkv = data.draw(st.sampled_from(HEADS), label="Hkv")
    Hq = Hkv * data.draw(st.sampled_from(GROUPS), label="group")
    K = data.draw(st.sampled_from(HEAD_SIZES), label="K")
    Kv = data.draw(st.sampled_from(HEAD_SIZES), label="Kv")
    Nq, Nk = sum(T), sum(S)
    scale = data.draw(attention_scales(K), label="scale")
    large = qk_magnitude(K, scale, dtype)  # "large" q and k aim the logits at the dtype's large
    return {
        "q": data.draw(arrays((Nq, Hq, K), dtype, large=large), label="q"),
        "k": data.draw(arrays((Nk, Hkv, K), dtype, large=large), label="k"),
        "v": data.draw(arrays((Nk, Hkv, Kv), dtype), label="v"),
        "cu_seqlens_q": np.cumsum([0, *T]).astype(np.int32),
        "cu_seqlens_k": np.cumsum([0, *S]).astype(np.int32),
        "scale": scale,
        "causal": v.causal,
        "window": _window(data, max(S), v),
    }


def sequences(i: Mapping[str, Any]) -> list[tuple[slice, slice]]:
    """(query rows, key rows) of every sequence of the pack."""
    cq, ck = i["cu_seqlens_q"], i["cu_seqlens_k"]
    return [
        (slice(int(cq[n]), int(cq[n + 1])), slice(int(ck[n]), int(ck[n + 1])))
        for n in range(len(cq) - 1)
    ]


def _as_batch(x: np.ndarray, rows: slice) -> np.ndarray:
    return np.swapaxes(x[rows], 0, 1)[None]  # (T_i, H, .) -> (1, H, T_i, .)


def packed_error_scale(i: Mapping[str, Any]) -> float:
    G = i["q"].shape[1] // i["k"].shape[1]
    scales = [0.0]
    for qs, ks in sequences(i):
        if qs.stop > qs.start and ks.stop > ks.start:
            one = {
                "q": _as_batch(i["q"], qs),
                "k": np.repeat(_as_batch(i["k"], ks), G, axis=1),
                "v": np.repeat(_as_batch(i["v"], ks), G, axis=1),
                "scale": i.get("scale"),
            }
            scales.append(context_error_scale(one))
    return max(scales)


def _lengths_of(i: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return np.diff(i["cu_seqlens_q"]), np.diff(i["cu_seqlens_k"])


def _moved_boundary(cu: np.ndarray, i: Any) -> np.ndarray | None:
    """The first inner offset moved by one token (still a valid pack), or None for one sequence."""
    if len(cu) < 3:
        return None
    out = np.array(cu)
    out[1] = out[1] + 1 if out[1] < out[2] else out[1] - 1 if out[1] > 0 else out[1]
    return None if np.array_equal(out, cu) else out


CU_Q_ARG = Arg(
    "cu_seqlens_q",
    "int array (N + 1,), N >= 1: 0, then non-decreasing, ending at Nq",
    kind="other",
    perturb=_moved_boundary,
    regions=(
        region("N = 1 (one sequence)", lambda v, i: len(v) == 2),
        region("N >= 3", lambda v, i: len(v) >= 4),
        region("a sequence with no query", lambda v, i: bool((np.diff(v) == 0).any())),
        region("a sequence of 17 queries", lambda v, i: bool((np.diff(v) == 17).any())),
    ),
)
CU_K_ARG = Arg(
    "cu_seqlens_k",
    "int array, cu_seqlens_q's shape: 0, then non-decreasing, ending at Nk",
    kind="other",
    perturb=_moved_boundary,
    regions=(
        region("a sequence with no key", lambda v, i: bool((np.diff(v) == 0).any())),
        region(
            "query and key lengths differ",
            lambda v, i: bool((np.diff(v) != _lengths_of(i)[0]).any()),
        ),
        region(
            "more queries than keys in a sequence",
            lambda v, i: bool((_lengths_of(i)[0] > np.diff(v)).any()),
        ),
    ),
)
Q_ARG = Arg(
    "q",
    "float array (Nq, Hq, K), Nq >= 1, Hq a multiple of k's Hkv",
    regions=(
        region("Hq > Hkv (grouped)", lambda v, i: v.shape[1] > i["k"].shape[1]),
        region("Hq = Hkv", lambda v, i: v.shape[1] == i["k"].shape[1]),
    ),
)
K_ARG = Arg("k", "float array (Nk, Hkv, K), Nk >= 1, q's K")
V_ARG = Arg("v", "float array (Nk, Hkv, Kv), k's Nk and Hkv")
SCALE_ARG = Arg(
    "scale",
    "None (1/sqrt(K)) or any finite real",
    kind="number",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region("negative", lambda v, i: v is not None and v < 0),
    ),
)
CAUSAL_ARG = Arg(
    "causal",
    "None, 'bottom_right' (flash-attention's varlen) or 'top_left', per sequence",
    kind="choice",
    default=None,
    choices=(None, "bottom_right", "top_left"),
    regions=(
        region("None", lambda v, i: v is None),
        region("bottom_right", lambda v, i: v == "bottom_right"),
        region("top_left", lambda v, i: v == "top_left"),
    ),
)


def _win(i: Mapping[str, Any]) -> tuple[int, int]:
    return i.get("window") or (-2, -2)


WINDOW_ARG = Arg(
    "window",
    "None or (left, right) ints >= -1 around each sequence's aligned diagonal, -1 unbounded",
    kind="other",
    default=None,
    perturb=lambda v, i: None if v is None else (v[0] + 1 if v[0] >= 0 else 0, v[1]),
    regions=(
        region("None", lambda v, i: v is None),
        region("left unbounded (-1)", lambda v, i: _win(i)[0] == -1),
        region("a bound of 0 to 2 keys", lambda v, i: 0 <= _win(i)[0] <= 2 or 0 <= _win(i)[1] <= 2),
    ),
)


def _bad(change: Any) -> Any:
    return lambda data, dtype: change(draw_packed(data, dtype, Packing()))


def _cu(i: dict[str, Any], key: str, fix: Any) -> dict[str, Any]:
    return {**i, key: fix(np.array(i[key]))}


def _decreasing(i: dict[str, Any]) -> dict[str, Any]:
    """Two empty sequences in front, the keys' offsets going Nk, Nk - 1 there: only the
    non-decreasing rule is broken (both still start at 0 and end at the packed lengths)."""
    cq, ck = i["cu_seqlens_q"], i["cu_seqlens_k"]
    Nk = int(ck[-1])
    return {
        **i,
        "cu_seqlens_q": np.r_[0, 0, cq].astype(cq.dtype),
        "cu_seqlens_k": np.r_[0, Nk, Nk - 1, ck[1:]].astype(ck.dtype),
    }


def _heads_not_divisible(i: dict[str, Any]) -> dict[str, Any]:
    Hkv = i["k"].shape[1]
    if Hkv > 1:
        return {**i, "q": np.repeat(i["q"][:, :1], Hkv + 1, axis=1)}
    return {**i, "k": np.repeat(i["k"], 2, 1), "v": np.repeat(i["v"], 2, 1), "q": i["q"][:, :1]}


def _one_more_key(i: dict[str, Any]) -> dict[str, Any]:
    return {
        **i,
        "k": np.concatenate([i["k"], i["k"][:1]]),
        "v": np.concatenate([i["v"], i["v"][:1]]),
    }


BAD = (
    (
        "cu_not_from_zero",
        "cu_seqlens_q from 1",
        lambda i: _cu(i, "cu_seqlens_q", lambda c: np.r_[1, c[1:]].astype(c.dtype)),
    ),
    ("cu_decreasing", "cu_seqlens_k decreasing", _decreasing),
    (
        "cu_past_the_pack",
        "cu_seqlens_q ending at Nq + 1",
        lambda i: _cu(i, "cu_seqlens_q", lambda c: np.r_[c[:-1], c[-1] + 1].astype(c.dtype)),
    ),
    (
        "cu_short_of_the_pack",
        "cu_seqlens_k ending before Nk",
        _one_more_key,
    ),
    (
        "cu_counts_differ",
        "cu_seqlens_k naming one more sequence",
        lambda i: _cu(i, "cu_seqlens_k", lambda c: np.r_[c, c[-1]].astype(c.dtype)),
    ),
    (
        "float_cu",
        "cu_seqlens_q a float array",
        lambda i: _cu(i, "cu_seqlens_q", lambda c: c.astype(np.float64)),
    ),
    (
        "heads_not_divisible",
        "Hq not a multiple of Hkv",
        _heads_not_divisible,
    ),
    ("kv_length_mismatch", "v one token short", lambda i: {**i, "v": i["v"][:-1]}),
    ("window_below_minus_one", "window (-2, 0)", lambda i: {**i, "window": (-2, 0)}),
    ("unknown_causal", "causal 'center'", lambda i: {**i, "causal": "center"}),
    ("nan_scale", "scale NaN", lambda i: {**i, "scale": float("nan")}),
)

PACKED_ATTENTION = Component(
    name="packed_attention",
    family="attention",
    shapes="q (Nq, Hq, K), k (Nk, Hkv, K), v (Nk, Hkv, Kv), cu_seqlens_q/_k (N + 1,) "
    "-> (Nq, Hq, Kv)",
    error_scale=packed_error_scale,
    args=(Q_ARG, K_ARG, V_ARG, CU_Q_ARG, CU_K_ARG, SCALE_ARG, CAUSAL_ARG, WINDOW_ARG),
    draw=draw_packed,
    variants=VARIANTS,
    bad_inputs=tuple(BadInput(n, d, _bad(c)) for n, d, c in BAD),
)


# Metamorphic properties: a pack against its own sequences, and against the padded batch.
@prop(PACKED_ATTENTION, variants=(Packing(causal="bottom_right"), Packing(empty=True, window=True)))
def pack_is_its_sequences(subject: Subject, data: st.DataObject, variant: Packing) -> None:
    """Each sequence's rows of the pack equal that sequence packed alone."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    for n, (qs, ks) in enumerate(sequences(inputs)):
        if qs.stop == qs.start or ks.stop == ks.start:
            continue
        alone = {
            **inputs,
            "q": inputs["q"][qs],
            "k": inputs["k"][ks],
            "v": inputs["v"][ks],
            "cu_seqlens_q": np.array([0, qs.stop - qs.start], np.int32),
            "cu_seqlens_k": np.array([0, ks.stop - ks.start], np.int32),
        }
        whole.assert_equivalent(whole.got[qs], subject.case(alone), f"sequence {n} alone")


@prop(
    PACKED_ATTENTION,
    variants=(Packing(), Packing(empty=True, causal="bottom_right")),
    dtypes=SEMANTIC,
)
def sequence_order_is_free(subject: Subject, data: st.DataObject, variant: Packing) -> None:
    """Packing the sequences in another order permutes the output rows the same way."""
    inputs = subject.draw(data, variant)
    seqs = sequences(inputs)
    order = data.draw(st.permutations(range(len(seqs))), label="order")
    q_rows = np.concatenate([np.arange(seqs[n][0].start, seqs[n][0].stop) for n in order])
    k_rows = np.concatenate([np.arange(seqs[n][1].start, seqs[n][1].stop) for n in order])
    T, S = _lengths_of(inputs)
    moved = {
        **inputs,
        "q": inputs["q"][q_rows],
        "k": inputs["k"][k_rows],
        "v": inputs["v"][k_rows],
        "cu_seqlens_q": np.cumsum([0, *T[list(order)]]).astype(np.int32),
        "cu_seqlens_k": np.cumsum([0, *S[list(order)]]).astype(np.int32),
    }
    base, other = subject.case(inputs), subject.case(moved)
    base.assert_equivalent(base.got[q_rows], other, f"sequences packed in order {list(order)}")


def _padded(inputs: Mapping[str, Any], left: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The pack as a padded batch for variant_attention: (N, H, Tmax, .) with a key-padding mask
    (N, 1, 1, Smax); padded at the start (left) for bottom-right alignment, at the end for top-left,
    so each sequence's diagonal stays where the pack puts it. Returns the batch and, per pack row,
    its (n, t) place in the batch."""
    seqs = sequences(inputs)
    T, S = _lengths_of(inputs)
    Tm, Sm, N = max(int(T.max()), 1), max(int(S.max()), 1), len(seqs)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    qb = np.zeros((N, q.shape[1], Tm, q.shape[2]), q.dtype)  # (N, Hq, Tmax, K)
    kb = np.zeros((N, k.shape[1], Sm, k.shape[2]), k.dtype)  # (N, Hkv, Smax, K)
    vb = np.zeros((N, v.shape[1], Sm, v.shape[2]), v.dtype)  # (N, Hkv, Smax, Kv)
    keep = np.zeros((N, 1, 1, Sm), bool)
    place = np.zeros((q.shape[0], 2), int)
    for n, (qs, ks) in enumerate(seqs):
        t0, s0 = (Tm - T[n], Sm - S[n]) if left else (0, 0)
        qb[n, :, t0 : t0 + T[n]] = np.swapaxes(q[qs], 0, 1)
        kb[n, :, s0 : s0 + S[n]] = np.swapaxes(k[ks], 0, 1)
        vb[n, :, s0 : s0 + S[n]] = np.swapaxes(v[ks], 0, 1)
        keep[n, ..., s0 : s0 + S[n]] = True
        place[qs] = np.stack([np.full(T[n], n), np.arange(t0, t0 + T[n])], axis=1)
    align = "top_left" if inputs.get("causal") == "top_left" else "bottom_right"
    batch = {"q": qb, "k": kb, "v": vb, "mask": keep, "scale": inputs.get("scale")}
    return {
        **batch,
        "causal": inputs.get("causal"),
        "window": inputs.get("window"),
        "align": align,
    }, place


@prop(
    PACKED_ATTENTION,
    variants=(Packing(), Packing(causal="bottom_right"), Packing(causal="top_left", window=True)),
    dtypes=SEMANTIC,
)
def pack_equals_the_padded_batch(subject: Subject, data: st.DataObject, variant: Packing) -> None:
    """The pack equals the same adapter's variant_attention over the padded batch with a
    key-padding mask (padding placed so each sequence keeps its alignment)."""
    inputs = subject.draw(data, variant)
    batch, place = _padded(inputs, left=inputs.get("causal") != "top_left")
    padded = subject.sibling("variant_attention").case(batch)
    rows = np.swapaxes(padded.got, 1, 2)[place[:, 0], place[:, 1]]  # (Nq, Hq, Kv)
    pack = subject.case(inputs)
    # both bounds: the pack's, and the padded batch's (its case carries variant_attention's)
    what = "pack vs the padded batch's rows"
    subject.check(compare(pack.got, rows, pack.bound + padded.bound, what), inputs)
