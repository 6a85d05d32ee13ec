"""Hypothesis strategies for valid inputs: all in one place, one-line docstrings, NamedTuple draws.

Values come from NumPy generators seeded by Hypothesis, in named distributions that aim at the cases
that break real code (ties, large logits, outliers, tiny values), rather than element by element:
shrinking then works on the shape and the distribution, and a failure prints the seed it needs.
Shapes come from a short list of buckets, not free integers: JAX compiles once per shape, so a
finite menu bounds the programs it compiles (its cost per example is still several times torch's,
nearly all compilations: README, "Cost of the default run").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from reference.masks import causal_mask, key_padding_mask
from spec.dtypes import DType


class AttentionShape(NamedTuple):
    B: int
    H: int
    T: int
    S: int
    K: int
    Kv: int


# Each bucket is there for a reason: lengths of 1, T < S, T > S, T == S (both causal alignments
# agree), one query over many keys (a decoding step), K != Kv, and K = 2 (1/K vs 1/sqrt(K) differ).
ATTENTION_BUCKETS = (
    AttentionShape(B=1, H=1, T=1, S=1, K=4, Kv=4),
    AttentionShape(B=2, H=2, T=3, S=5, K=8, Kv=8),
    AttentionShape(B=1, H=3, T=6, S=4, K=8, Kv=3),
    AttentionShape(B=2, H=1, T=5, S=5, K=16, Kv=16),
    AttentionShape(B=3, H=2, T=1, S=7, K=4, Kv=6),
    AttentionShape(B=1, H=2, T=8, S=8, K=2, Kv=2),
)

# Shapes past the tiles kernels cut the problem into (16 to 256 rows or keys, head dims specialised
# up to 64, 128 or 256): the last partial key block, a running maximum carried across blocks, a
# causal boundary inside a block, head dims past a specialisation, one past a power of two. Drawn in
# a share of the examples (TILE_SHARE), so the default run reaches them within its time budget.
TILE_BUCKETS = (
    AttentionShape(B=1, H=1, T=65, S=129, K=80, Kv=80),  # one past 64 and 128; K = 80
    AttentionShape(
        B=1, H=2, T=1, S=257, K=96, Kv=96
    ),  # a decoding step over one past 256 keys; K = 96
    AttentionShape(
        B=2, H=1, T=127, S=33, K=16, Kv=16
    ),  # T > S, one below 128 queries, one past 32 keys
    AttentionShape(B=1, H=1, T=33, S=1025, K=128, Kv=128),  # one past 1024 keys; K = 128
    AttentionShape(
        B=1, H=1, T=17, S=255, K=160, Kv=64
    ),  # one below 256 keys; K = 160 past a 128 specialisation
    AttentionShape(B=1, H=1, T=113, S=113, K=192, Kv=192),  # T = S, odd; K = 192
    AttentionShape(
        B=1, H=4, T=16, S=16, K=256, Kv=256
    ),  # exact tiles; K = 256, the largest specialisation
)
TILE_SHARE = 5  # one example in TILE_SHARE draws a tile shape

FREE_SHAPES = os.environ.get("TCS_FREE_SHAPES") == "1"  # the `thorough` profile adds free shapes


ShapeFilter = Callable[[AttentionShape], bool]


@st.composite
def attention_shapes(draw: Any, where: ShapeFilter | None = None) -> AttentionShape:
    """Return a strategy for (B, H, T, S, K, Kv): the small buckets, a share of tile shapes (and
    free sizes when thorough)."""
    keep = where or (lambda s: True)
    tiles = [s for s in TILE_BUCKETS if keep(s)]
    # the last choice of the index means a tile shape: Hypothesis starts from, and shrinks to, small
    # ones
    if tiles and draw(st.integers(0, TILE_SHARE - 1), label="tile") == TILE_SHARE - 1:
        return draw(st.sampled_from(tiles), label="tile_shape")
    strategy = st.sampled_from([s for s in ATTENTION_BUCKETS if keep(s)])
    if FREE_SHAPES:
        dim = st.integers(1, 9)
        free = st.builds(AttentionShape, B=dim, H=dim, T=dim, S=dim, K=dim, Kv=dim)
        strategy = st.one_of(strategy, free.filter(keep))
    return draw(strategy, label="bucket")


# Named value distributions. "large" reaches logits of ~1e4 (~6e4 in float16 for softmax).
VALUE_KINDS = ("normal", "outliers", "ties", "tiny", "large")


def value_kinds(allow_large: bool = True) -> st.SearchStrategy[str]:
    """Return a strategy for the name of a value distribution."""
    return st.sampled_from(VALUE_KINDS if allow_large else VALUE_KINDS[:-1])


def seeds() -> st.SearchStrategy[int]:
    """Return a strategy for a NumPy generator seed (printed with any failure)."""
    return st.integers(0, 2**32 - 1)


def make_values(
    shape: tuple[int, ...], kind: str, seed: int, dtype: DType, large: float = 1e4
) -> np.ndarray:
    """An array of ``shape`` in ``dtype`` from the named distribution (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "outliers":  # mostly N(0, 1), about 5% from N(0, 10^2)
        x = rng.standard_normal(shape) * np.where(rng.random(shape) < 0.05, 10.0, 1.0)
    elif kind == "ties":  # few distinct values: equal logits, equal rows
        x = rng.integers(-2, 3, shape).astype(np.float64)
    elif kind == "tiny":
        x = rng.standard_normal(shape) * 1e-3
    elif kind == "large":  # |x| <= large, so 0.9 * max(float16) stays finite
        x = rng.uniform(-1.0, 1.0, shape) * large
    else:
        raise ValueError(f"unknown value kind {kind!r}; expected one of {VALUE_KINDS}")
    return x.astype(dtype.np_dtype)


def large_logit(dtype: DType) -> float:
    """The 'large' logit magnitude for a dtype: 1e4, or near the float16 range for float16."""
    return 0.9 * dtype.max if dtype.name == "float16" else 1e4


@st.composite
def arrays(
    draw: Any, shape: tuple[int, ...], dtype: DType, allow_large: bool = True, large: float = 1e4
) -> np.ndarray:
    """Return a strategy for an array of a given shape and dtype from a drawn distribution."""
    kind = draw(value_kinds(allow_large), label="kind")
    return make_values(shape, kind, draw(seeds(), label="seed"), dtype, large)


class AttentionInputs(NamedTuple):
    shape: AttentionShape
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scale: float | None  # None (1/sqrt(K)) unless the strategy was asked to draw one


def attention_scales(K: int) -> st.SearchStrategy[float | None]:
    """Return a strategy for ``scale`` over its domain (None or any finite real): the default, the
    default written out, 0 (uniform weights), negative, non-dyadic, large, tiny, and 1/K (the
    classic slip)."""
    return st.sampled_from([None, None, 1.0 / np.sqrt(K), 0.5, 0.0, -0.7, 0.3, 4.0, 1e-3, 1.0 / K])


def qk_magnitude(K: int, scale: float | None, dtype: DType) -> float:
    """The "large" magnitude of queries and keys: it aims the logits q.k * scale at
    large_logit(dtype). q, k ~ N(0, sigma^2) give logits ~ sigma^2 sqrt(K) at the default scale
    1/sqrt(K); another scale moves sigma so the logits stay at that magnitude, and q.k itself
    (before the scale) stays finite in the dtype: |q.k| <= K sigma^2."""
    default = 1.0 / np.sqrt(K)
    effective = abs(scale) if scale else default
    sigma2 = min(large_logit(dtype), 1e4) / np.sqrt(K) * default / effective
    return float(np.sqrt(min(sigma2, 0.25 * min(dtype.max, 1e30) / K)))


@st.composite
def attention_inputs(
    draw: Any, dtype: DType, where: ShapeFilter | None = None, scaled: bool = False
) -> AttentionInputs:
    """Return a strategy for q (B, H, T, K), k (B, H, S, K), v (B, H, S, Kv) in dtype (and a scale,
    if scaled)."""
    s = draw(attention_shapes(where), label="shape")
    scale = draw(attention_scales(s.K), label="scale") if scaled else None
    kind = draw(value_kinds(), label="qk_kind")
    sigma = qk_magnitude(s.K, scale, dtype)
    q = make_values((s.B, s.H, s.T, s.K), kind, draw(seeds(), label="q_seed"), dtype, sigma)
    k = make_values((s.B, s.H, s.S, s.K), kind, draw(seeds(), label="k_seed"), dtype, sigma)
    v = draw(arrays((s.B, s.H, s.S, s.Kv), dtype), label="v")
    return AttentionInputs(s, q, k, v, scale)


@dataclass(frozen=True)
class Masking:
    """A mask variant, the discrete axis of attention tests: the mask's kind ("none", "bool",
    "additive", "padding"), the causal alignment, and whether some query row sees no key
    (``empty``). Its str is the test id's ("bool+causal_top_left", "padding_zero_length",
    "causal_bottom_right_T>S"). A variant never empties a query row unless it says so (that
    convention has a property of its own)."""

    mask: str = "none"
    causal: str | None = None
    empty: bool = False

    def __str__(self) -> str:
        if self.mask == "none":
            return (
                f"causal_{self.causal}" + ("_T>S" if self.empty else "") if self.causal else "none"
            )
        base = (
            ("padding_zero_length" if self.mask == "padding" else f"{self.mask}_empty_rows")
            if self.empty
            else self.mask
        )
        return f"{base}+causal_{self.causal}" if self.causal else base

    @classmethod
    def parse(cls, text: str | Masking | None) -> Masking:
        """The variant a test id names (the strings of earlier versions and deviation keys)."""
        if isinstance(text, Masking):
            return text
        known = {str(v): v for v in MASK_VARIANTS + EMPTY_ROW_VARIANTS}
        if (text or "none") not in known:
            raise ValueError(f"unknown mask variant {text!r}; expected one of {sorted(known)}")
        return known[text or "none"]


MASK_VARIANTS = (
    Masking(),
    Masking("bool"),
    Masking("additive"),
    Masking("padding"),
    Masking(causal="top_left"),
    Masking(causal="bottom_right"),
    Masking("bool", causal="top_left"),
    # an additive mask combined with causality: an adapter has to merge the two itself (torch's
    # SDPA takes attn_mask or is_causal, not both); found by `make mutation` (docs/MUTATION.md)
    Masking("additive", causal="top_left"),
)
EMPTY_ROW_VARIANTS = (
    Masking("bool", empty=True),
    Masking("additive", empty=True),
    Masking("padding", empty=True),
    Masking(causal="bottom_right", empty=True),  # T > S: the first rows see no key
)


class MaskDraw(NamedTuple):
    mask: np.ndarray | None
    causal: str | None
    allowed: (
        np.ndarray
    )  # (B, H, T, S) bool: where a query may attend under mask and causal together


def _mask_shape(draw: Any, s: AttentionShape) -> tuple[int, ...]:
    """Any shape that broadcasts to (B, H, T, S): each axis full or 1, leading axes dropped (1 to 4
    axes), so per-head, per-batch, per-query-row (..., T, 1), key-only (..., 1, S) and 1-D (S,)
    masks all come."""
    full = (s.B, s.H, s.T, s.S)
    kept = draw(st.tuples(*[st.booleans()] * 4), label="mask_full_axes")
    ndim = draw(st.sampled_from([4, 2, 3, 1]), label="mask_ndim")
    shape = tuple(n if keep else 1 for n, keep in zip(full, kept, strict=True))
    return shape[4 - ndim :]


def _keep_one_per_row(allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Allow one random key in every row that has none."""
    allowed = allowed.copy()
    pick = rng.integers(0, allowed.shape[-1], allowed.shape[:-1])
    np.put_along_axis(allowed, pick[..., None], True, axis=-1)
    return allowed


@st.composite
def masks(
    draw: Any, s: AttentionShape, variant: Masking | str, dtype: DType, soft: bool = True
) -> MaskDraw:
    """Return a strategy for a mask of the given variant for attention of shape s (soft: additive
    masks may use the most negative finite value, HuggingFace's fill, as well as -inf)."""
    v = Masking.parse(variant)
    rng = np.random.default_rng(draw(seeds(), label="mask_seed"))
    full = (s.B, s.H, s.T, s.S)
    mask: np.ndarray | None = None
    if v.mask in ("bool", "additive") and v.causal is None:
        shape = _mask_shape(draw, s)
        allowed = rng.random(shape) < draw(st.sampled_from([0.3, 0.7]), label="keep_fraction")
        if v.empty and allowed.ndim >= 2:
            allowed[..., rng.integers(0, allowed.shape[-2]), :] = False
        elif v.empty:  # a 1-D (S,) mask is every row: all of them empty
            allowed[:] = False
        # every row keeps a key: a row of a broadcast mask stands for every row it is broadcast to
        else:
            allowed = _keep_one_per_row(allowed, rng)
        mask = allowed
        if v.mask == "additive":
            # additive: 0, a finite bias (N(0, 1), or the most negative finite value, HuggingFace's
            # "soft" fill) where allowed, -inf where not
            bias = np.where(rng.random(shape) < 0.5, 0.0, rng.standard_normal(shape))
            if soft:
                fill = draw(st.booleans(), label="finfo_min_bias")
                bias = np.where(fill & (rng.random(shape) < 0.3), dtype.min, bias)
            mask = np.where(allowed, bias, -np.inf).astype(dtype.np_dtype)
    elif v.mask == "padding":
        lengths = rng.integers(0 if v.empty else 1, s.S + 1, s.B)
        if v.empty:
            lengths[rng.integers(0, s.B)] = 0
        mask = key_padding_mask(lengths, s.S)  # (B, 1, 1, S)
    elif v.mask in ("bool", "additive"):  # with a causal alignment: a full per-head mask
        allowed = rng.random(full) < 0.6
        allowed[..., 0] = True  # key 0 is visible to every query under top-left causality
        mask = allowed
        if v.mask == "additive":  # a finite N(0, 1) bias or 0 where allowed, -inf where not
            bias = np.where(rng.random(full) < 0.5, 0.0, rng.standard_normal(full))
            mask = np.where(allowed, bias, -np.inf).astype(dtype.np_dtype)
    allowed_all = np.ones(full, dtype=bool)
    if mask is not None:
        allowed_all &= mask if mask.dtype == np.bool_ else np.isfinite(mask.astype(np.float64))
    if v.causal is not None:
        allowed_all &= causal_mask(s.T, s.S, v.causal)
    return MaskDraw(mask, v.causal, allowed_all)


class MhaShape(NamedTuple):
    B: int
    T: int
    S: int
    D: int
    H: int


# Self-attention needs T == S; cross-attention uses the T != S buckets as well.
MHA_BUCKETS = (
    MhaShape(B=1, T=1, S=1, D=4, H=1),
    MhaShape(B=2, T=3, S=5, D=8, H=2),
    MhaShape(B=1, T=4, S=4, D=12, H=3),
    MhaShape(B=2, T=5, S=5, D=8, H=4),
    MhaShape(B=2, T=6, S=2, D=6, H=1),
    MhaShape(B=1, T=3, S=3, D=4, H=4),  # H = D: one dimension per head
)


@st.composite
def mha_params(
    draw: Any, D: int, dtype: DType, biases: bool | None = None
) -> dict[str, np.ndarray]:
    """Return a strategy for the canonical MHA weights: W_* (D, D) ~ N(0, 1/D), biases (D,) or
    absent."""
    rng = np.random.default_rng(draw(seeds(), label="params_seed"))
    names = ("b_q", "b_k", "b_v", "b_o")
    if biases is None:  # all, none, or some of the biases (absent = 0)
        present = draw(st.sampled_from(["all", "none", "some"]), label="biases")
        chosen = (
            names
            if present == "all"
            else ()
            if present == "none"
            else tuple(b for b in names if rng.random() < 0.5)
        )
    else:
        chosen = names if biases else ()
    params = {
        w: (rng.standard_normal((D, D)) / np.sqrt(D)).astype(dtype.np_dtype)
        for w in ("w_q", "w_k", "w_v", "w_o")
    }
    params.update({b: (0.1 * rng.standard_normal(D)).astype(dtype.np_dtype) for b in chosen})
    return params


class SeqShape(NamedTuple):
    B: int
    T: int
    D: int


# (B, T, D) for position-wise layers: one position, a short batch, a longer single sequence.
SEQ_BUCKETS = (SeqShape(1, 1, 4), SeqShape(2, 5, 8), SeqShape(1, 9, 16))
VOCAB = 11


def seq_shapes() -> st.SearchStrategy[SeqShape]:
    """Return a strategy for (B, T, D) from the buckets."""
    return st.sampled_from(SEQ_BUCKETS)


@st.composite
def normal_params(
    draw: Any,
    shapes: dict[str, tuple[int, ...]],
    dtype: DType,
    scale: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Return a strategy for a dict of N(0, scale^2) weights with the given shapes (1/sqrt(fan-in)
    by default)."""
    rng = np.random.default_rng(draw(seeds(), label="params_seed"))
    scale = scale or {}
    return {
        name: (rng.standard_normal(shape) * scale.get(name, 1 / np.sqrt(shape[0]))).astype(
            dtype.np_dtype
        )
        for name, shape in shapes.items()
    }


@st.composite
def token_ids(draw: Any, B: int, T: int, V: int = VOCAB) -> np.ndarray:
    """Return a strategy for int64 token ids (B, T) in [0, V)."""
    rng = np.random.default_rng(draw(seeds(), label="tokens_seed"))
    return rng.integers(0, V, (B, T)).astype(np.int64)
