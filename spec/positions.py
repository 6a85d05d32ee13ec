"""Spec entry: rotary_embedding (RoPE; reference/positions.py).

    rotary_embedding(x, positions=None, offset=0, base=10000.0, rotary_dim=None, layout="half")
        -> (B, H, T, K), x's dtype

x (B, H, T, K): queries or keys, heads before positions as everywhere in the spec. Pair i of the
first rotary_dim dims is rotated by p * base^(-2i / rotary_dim), p = positions + offset. Conventions
where implementations differ, each pinned here:
- layout: "half" pairs (i, i + r/2) (GPT-NeoX, HF Llama's rotate_half); "interleaved" pairs
  (2i, 2i + 1) (GPT-J, torchtune, Meta's complex view). Not a matter of taste: a checkpoint trained
  in one layout is wrong in the other.
- positions: None (0 .. T - 1), (T,) shared or (B, T) per row (a packed row restarts at 0), plus
  offset (an int or (B,)): HF's position_ids, torchtune's input_pos, flash-attention's
  seqlen_offsets.
- rotary_dim: even, <= K; the dims after it pass through unchanged (partial rotation).
- precision: the angle p * theta_i is exact in the oracle. Below float64 an implementation may form
  it in float32 (every library does: HF, flash-attention, torchtune): its error, <= 4 u32 p rad
  (theta_i's rounding and the product's), moves a rotated coordinate by <= 2 max|x| times that, and
  the floor carries it: error_scale = 2 max|x| (1 + p_max u32 / (2 u(d))) (2 max|x|: a coordinate
  is a sum of two products of |x| and |cos|, |sin| <= 1). An angle formed in float16 or bfloat16
  has no such allowance and fails past a few hundred positions. At float64 the angle must be formed
  in float64: error_scale = 2 max|x| (1 + p_max), the float64 angle's own u p.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import reference as R
from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, equals, region
from spec.dtypes import BFLOAT16, BY_NAME, FLOAT32, DType
from spec.strategies import arrays, seeds
from spec.tolerance import Bound, compare


@dataclass(frozen=True)
class Rope:
    """The discrete axis of rotary tests. str is the test id: "half", "interleaved+partial",
    "half+rows+offset", "interleaved+long" (positions >= 1e4)."""

    layout: str = "half"
    partial: bool = False
    positions: str = "none"  # "none" (0 .. T-1), "ids" (T,), "rows" (B, T), "long" (>= 1e4)
    offset: bool = False

    def __str__(self) -> str:
        parts = [self.layout] + ["partial"] * self.partial
        parts += [self.positions] * (self.positions != "none") + ["offset"] * self.offset
        return "+".join(parts)

    @classmethod
    def parse(cls, text: Rope | str | None) -> Rope:
        if isinstance(text, Rope):
            return text
        parts = (text or "half").split("+")
        known = {"half", "interleaved", "partial", "ids", "rows", "long", "offset"}
        if set(parts) - known:
            raise ValueError(f"unknown rotary variant parts {sorted(set(parts) - known)}")
        layout = "interleaved" if "interleaved" in parts else "half"
        kind = next((p for p in ("ids", "rows", "long") if p in parts), "none")
        return cls(layout, "partial" in parts, kind, "offset" in parts)


VARIANTS = (
    Rope(),
    Rope("interleaved"),
    Rope(partial=True),
    Rope("interleaved", partial=True, positions="rows"),
    Rope(positions="ids", offset=True),
    Rope("interleaved", positions="rows", offset=True),
    Rope(positions="long"),
    Rope("interleaved", partial=True, positions="long", offset=True),
)
SEMANTIC = (FLOAT32, BFLOAT16)  # the relations are about semantics: a 32- and a 16-bit dtype

# (B, H, T, K): one pair, one token, a few heads, the head sizes models use (64, 128)
SHAPES = ((1, 1, 1, 2), (2, 3, 5, 8), (1, 2, 9, 16), (2, 1, 4, 64), (1, 2, 3, 128), (3, 1, 6, 4))
# partial rotation: K odd too (only rotary_dim must be even)
PARTIAL_SHAPES = ((1, 2, 5, 7), (2, 1, 4, 8), (1, 1, 3, 9), (1, 2, 6, 64))
# Llama 1/2's 10^4 (twice as likely), Llama 3's 5e5, the default as an int, one close to 1
BASES = (10_000.0, 10_000.0, 500_000.0, 10_000, 1.5)
LONG = 10_000  # "long" positions start here


def _rows(rng: np.random.Generator, B: int, T: int) -> np.ndarray:
    """(B, T) positions of packed rows: each row a run of sequences, each restarting at 0."""
    out = np.empty((B, T), dtype=np.int64)
    for b in range(B):
        n_cuts = min(T - 1, int(rng.integers(0, 3)))
        cuts = np.sort(rng.permutation(np.arange(1, T))[:n_cuts])
        out[b] = np.concatenate([np.arange(n) for n in np.diff(np.r_[0, cuts, T])])
    return out


def _positions(data: st.DataObject, kind: str, B: int, T: int) -> np.ndarray | None:
    rng = np.random.default_rng(data.draw(seeds(), label="positions_seed"))
    if kind == "none":
        return None
    if kind == "ids":  # any ids: repeats, gaps, decreasing
        return rng.integers(0, 3 * T + 5, size=T)
    if kind == "rows":
        return _rows(rng, B, T)
    start = data.draw(st.sampled_from([LONG, 65_536, 500_000, 2**20]), label="long_start")
    return start + rng.integers(0, 4 * T, size=(B, T))  # (B, T), every row its own


def draw_rope(data: st.DataObject, dtype: DType, variant: Rope | str | None) -> dict[str, Any]:
    """x (B, H, T, K) and the variant's positions, offset, base, rotary_dim and layout."""
    v = Rope.parse(variant)
    B, H, T, K = data.draw(st.sampled_from(PARTIAL_SHAPES if v.partial else SHAPES), label="shape")
    x = data.draw(arrays((B, H, T, K), dtype), label="x")
    rotary_dim: int | None = None
    if v.partial:
        rotary_dim = data.draw(st.sampled_from(range(2, K - 1, 2)), label="rotary_dim")
    elif data.draw(st.booleans(), label="rotary_dim_given"):
        rotary_dim = K
    offset: int | np.ndarray = 0
    if v.offset:
        rng = np.random.default_rng(data.draw(seeds(), label="offset_seed"))
        per_row = data.draw(st.booleans(), label="offset_per_row")
        offset = rng.integers(0, 5000, size=B) if per_row else int(rng.integers(1, 5000))
    return {
        "x": x,
        "positions": _positions(data, v.positions, B, T),
        "offset": offset,
        "base": data.draw(st.sampled_from(BASES), label="base"),
        "rotary_dim": rotary_dim,
        "layout": v.layout,
    }


def _positions_of(i: Mapping[str, Any]) -> np.ndarray:
    """(B, T) the positions p the inputs give every token."""
    B, _, T, _ = i["x"].shape
    pos = np.arange(T) if i.get("positions") is None else i["positions"]
    return np.broadcast_to(pos, (B, T)) + np.reshape(i.get("offset", 0), (-1, 1))


def rope_error_scale(i: Mapping[str, Any]) -> float:
    dtype = i["x"].dtype
    p = float(_positions_of(i).max())
    if dtype == np.float64 or dtype == np.longdouble:  # the float64 angle is off by u p
        return 2.0 * float(np.abs(i["x"].astype(np.float64)).max()) * (1.0 + p)
    angle = p * FLOAT32.unit_roundoff / (2 * BY_NAME[dtype.name].unit_roundoff)  # float32 angles
    return 2.0 * float(np.abs(i["x"].astype(np.float64)).max()) * (1.0 + angle)


# Argument domains (spec/domains.py).
def _K(i: Mapping[str, Any]) -> int:
    return int(i["x"].shape[3])


X_ARG = Arg(
    "x",
    "float array (B, H, T, K), every axis >= 1, K >= 2 (even unless rotary_dim is given)",
    regions=(
        region("K = 2 (one pair)", lambda v, i: v.shape[3] == 2),
        region("K odd (partial rotation)", lambda v, i: v.shape[3] % 2 == 1),
        region("T = 1", lambda v, i: v.shape[2] == 1),
        region("K = 128", lambda v, i: v.shape[3] == 128),
        region("|x| >= 1e3", lambda v, i: float(np.abs(v.astype(np.float64)).max()) >= 1e3),
    ),
)
POSITIONS_ARG = Arg(
    "positions",
    "None (0 .. T - 1), or ints >= 0 of shape (T,) (every row) or (B, T) (per row)",
    kind="other",
    default=None,
    perturb=lambda v, i: None if v is None else v + 1,
    regions=(
        region("None", lambda v, i: v is None),
        region("(T,) ids with repeats or descents", lambda v, i: v is not None and v.ndim == 1),
        region(
            "(B, T) restarting at 0 (packed rows)",
            lambda v, i: v is not None and v.ndim == 2 and bool((v[:, 1:] < v[:, :-1]).any()),
        ),
        region(">= 1e4 (long context)", lambda v, i: v is not None and int(v.min()) >= LONG),
    ),
)
OFFSET_ARG = Arg(
    "offset",
    "an int >= 0 or ints >= 0 of shape (B,), added to every row's positions (a cache position)",
    kind="other",
    default=0,
    perturb=lambda v, i: v + 1,
    regions=(
        region("0", lambda v, i: np.ndim(v) == 0 and v == 0),
        region("an int > 0", lambda v, i: np.ndim(v) == 0 and v > 0),
        region("(B,) per row", lambda v, i: np.ndim(v) == 1),
    ),
)
BASE_ARG = Arg(
    "base",
    "a finite real > 1 (an int too): theta_i = base^(-2i / rotary_dim)",
    kind="number",
    default=10000.0,
    regions=(
        region("10000", lambda v, i: v == 10_000),
        region("an int", lambda v, i: isinstance(v, int)),
        region("5e5 (Llama 3)", lambda v, i: v == 500_000.0),
        region("close to 1 (1.5)", lambda v, i: v == 1.5),
    ),
)
ROTARY_DIM_ARG = Arg(
    "rotary_dim",
    "None (K) or an even int in [2, K]: the dims rotated; the rest pass through",
    kind="other",
    default=None,
    perturb=lambda v, i: v - 2 if v is not None and v > 2 else None,
    regions=(
        region("None", lambda v, i: v is None),
        region("K given", lambda v, i: v == _K(i)),
        region("< K (partial)", lambda v, i: v is not None and v < _K(i)),
        region("2 (one pair) < K", lambda v, i: v == 2 < _K(i)),
    ),
)
LAYOUT_ARG = Arg(
    "layout",
    "'half' (pairs i, i + r/2: GPT-NeoX, HF Llama) or 'interleaved' (pairs 2i, 2i + 1: GPT-J)",
    kind="choice",
    default="half",
    choices=R.positions.ROTARY_LAYOUTS,
    regions=tuple(region(c, equals(c)) for c in R.positions.ROTARY_LAYOUTS),
)


def _bad(change: Any) -> Any:
    return lambda data, dtype: change(draw_rope(data, dtype, Rope(positions="ids")))


def _at(i: dict[str, Any], key: str, n: int) -> np.ndarray:
    """positions with entry n set to -1 (or one too many)."""
    p = np.array(i[key])
    p[n] = -1
    return p


ROTARY_EMBEDDING = Component(
    name="rotary_embedding",
    family="embeddings",
    shapes="x (B, H, T, K), positions (T,) or (B, T), offset () or (B,) -> (B, H, T, K)",
    error_scale=rope_error_scale,
    args=(X_ARG, POSITIONS_ARG, OFFSET_ARG, BASE_ARG, ROTARY_DIM_ARG, LAYOUT_ARG),
    draw=draw_rope,
    variants=VARIANTS,
    bad_inputs=tuple(
        BadInput(name, doc, _bad(change))
        for name, doc, change in (
            ("odd_rotary_dim", "rotary_dim odd (K - 1)", lambda i: {**i, "rotary_dim": _K(i) - 1}),
            ("rotary_dim_above_K", "rotary_dim K + 2", lambda i: {**i, "rotary_dim": _K(i) + 2}),
            ("zero_rotary_dim", "rotary_dim 0", lambda i: {**i, "rotary_dim": 0}),
            (
                "odd_K_without_rotary_dim",
                "K odd and rotary_dim None",
                lambda i: {**i, "x": i["x"][..., :-1].copy(), "rotary_dim": None},
            ),
            (
                "negative_position",
                "a position -1",
                lambda i: {**i, "positions": _at(i, "positions", -1)},
            ),
            (
                "positions_wrong_length",
                "positions (T + 1,)",
                lambda i: {**i, "positions": np.r_[i["positions"], 0]},
            ),
            (
                "float_positions",
                "positions a float array",
                lambda i: {**i, "positions": i["positions"].astype(np.float64) + 0.5},
            ),
            ("negative_offset", "offset -3", lambda i: {**i, "offset": -3}),
            ("unknown_layout", "layout 'gptj'", lambda i: {**i, "layout": "gptj"}),
            ("base_one", "base 1", lambda i: {**i, "base": 1.0}),
            ("negative_base", "base -10000", lambda i: {**i, "base": -10_000.0}),
            ("nan_base", "base NaN", lambda i: {**i, "base": float("nan")}),
        )
    ),
)


# Metamorphic properties: relations every rotary embedding satisfies whatever the oracle says.
def _norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x.astype(np.float64), axis=-1)  # (B, H, T)


@prop(ROTARY_EMBEDDING, variants=(Rope(), Rope("interleaved", partial=True)), dtypes=SEMANTIC)
def preserves_norms(subject: Subject, data: st.DataObject, variant: Rope) -> None:
    """Every token's vector keeps its Euclidean norm (each pair is rotated)."""
    case = subject.case(subject.draw(data, variant))
    x = case.inputs["x"]
    # | |y| - |x| | <= |y - y*|_2 <= sqrt(K) max|y - y*|, y* the exact rotation (|y*| = |x|)
    bound = case.bound.times(math.sqrt(_K(case.inputs)))
    subject.check(compare(_norms(case.got), _norms(x), bound, "per-token norm"), case.inputs)


@prop(ROTARY_EMBEDDING, variants=(Rope(positions="ids"), Rope("interleaved", positions="rows")))
def position_zero_is_the_identity(subject: Subject, data: st.DataObject, variant: Rope) -> None:
    """At position 0 (ids all 0, offset 0) the output is x."""
    inputs = subject.draw(data, variant)
    inputs = {**inputs, "positions": np.zeros_like(inputs["positions"]), "offset": 0}
    case = subject.case(inputs)
    subject.check(compare(case.got, inputs["x"], case.bound, "rope(x, 0) vs x"), inputs)


@prop(ROTARY_EMBEDDING, variants=(Rope(positions="ids"), Rope("interleaved", positions="ids")))
def offset_shifts_positions(subject: Subject, data: st.DataObject, variant: Rope) -> None:
    """offset c gives what positions + c give."""
    inputs = subject.draw(data, variant)
    B = inputs["x"].shape[0]
    c = data.draw(st.sampled_from([1, 17, LONG]), label="shift")
    per_row = np.arange(B) * 3 + c  # (B,)
    shifted = {**inputs, "positions": inputs["positions"][None, :] + per_row[:, None]}
    base, moved = subject.case({**inputs, "offset": per_row}), subject.case(shifted)
    base.assert_equivalent(base.got, moved, f"offset {per_row.tolist()} vs positions + offset")


@prop(ROTARY_EMBEDDING, variants=(Rope(partial=True), Rope(positions="ids")), dtypes=SEMANTIC)
def layouts_are_one_rotation(subject: Subject, data: st.DataObject, variant: Rope) -> None:
    """interleaved(x) is half(x with its rotated dims permuted 2i -> i, 2i + 1 -> i + r/2), the
    permutation undone: the two layouts rotate the same pairs, stored differently."""
    inputs = subject.draw(data, variant)
    K = _K(inputs)
    r = inputs["rotary_dim"] or K
    perm = np.r_[0:r:2, 1:r:2, r:K]  # half's dim j holds interleaved's dim perm[j]
    inv = np.argsort(perm)
    interleaved = subject.case({**inputs, "layout": "interleaved"})
    half = subject.case({**inputs, "x": inputs["x"][..., perm], "layout": "half"})
    half.assert_equivalent(half.got[..., inv], interleaved, "half(x permuted), unpermuted")


def _l1(x: np.ndarray) -> float:
    """max over tokens of sum_j |x_j| (sqrt 2 for a rotation of each pair)."""
    return math.sqrt(2) * float(np.abs(x.astype(np.float64)).sum(-1).max())


@prop(ROTARY_EMBEDDING, variants=(Rope(positions="ids"), Rope("interleaved", partial=True)))
def scores_depend_on_distance_only(subject: Subject, data: st.DataObject, variant: Rope) -> None:
    """<rope(q, m), rope(k, n)> is unchanged when m and n both move by c: relative positions."""
    inputs = subject.draw(data, variant)
    B, H, T, K = inputs["x"].shape
    q = inputs["x"]
    k = q[:, :, ::-1] * q.dtype.type(-1)  # a key set that differs from the queries, same magnitudes
    rng = np.random.default_rng(data.draw(seeds(), label="key_positions_seed"))
    m = _positions_of(inputs)  # (B, T)
    n = rng.integers(0, int(m.max()) + 8, size=(B, T))
    c = data.draw(st.sampled_from([1, 31, LONG]), label="shift")
    scores: list[np.ndarray] = []
    bound: Bound | None = None
    for shift in (0, c):
        cq = subject.case({**inputs, "x": q, "positions": m + shift, "offset": 0})
        ck = subject.case({**inputs, "x": k, "positions": n + shift, "offset": 0})
        # |q^ . k^ - q* . k*| <= b_q |k^|_1 + b_k |q*|_1 per score (sums over K)
        part = cq.bound.times(_l1(k)) + ck.bound.times(_l1(q))
        bound = part if bound is None else bound + part
        g = [c_.got.astype(np.float64) for c_ in (cq, ck)]
        scores.append(np.einsum("bhtk,bhsk->bhts", *g))  # (B, H, T, T)
    assert bound is not None
    subject.check(
        compare(scores[1], scores[0], bound, f"scores at positions + {c} vs at positions"), inputs
    )
