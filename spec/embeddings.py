"""Spec entries: sinusoidal_positional_encoding, token_embedding, embed_with_positions,
tied_output_logits.

    sinusoidal_positional_encoding(T, D, base=10000.0, dtype="float32") -> PE (T, D) in dtype
        PE[pos, 2i] = sin(pos / base^(2i/D)), PE[pos, 2i+1] = cos(same); odd D keeps the last sine.
        Precision must hold at every position up to 10^4 in float32: the angle may not be formed
        as a float32 product (an error of ~1e-3 rad at pos 1e4). dtype defaults to float32, the
        libraries' default float (the reference said float64 until the argument domains were
        stated).
    token_embedding(tokens (B, T) int, table (V, D)) -> E[tokens] * sqrt(D)          (B, T, D)
    embed_with_positions(tokens, table, base=10000.0) -> E[tokens] sqrt(D) + PE[:T]  (B, T, D)
    tied_output_logits(h (..., D), table (V, D)) -> h E^T                            (..., V)
Token ids outside [0, V) are refused, and so is an empty token array. error_scale: for PE 1 below
float64 (the angle must be formed in float64, so only the output's rounding is allowed) and T at
float64 (the float64 angle itself is off by u * pos); sqrt(D) max|E| (+ 1) for embeddings, max_t
sum_d |h_d E_vd| for tied logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, equals, region
from spec.dtypes import DType
from spec.strategies import VOCAB, arrays, token_ids
from spec.tolerance import compare

# (T, D): one position, D = 7 odd, D = 128 wide, D = 1 (a single sine column) and D = 2 (one pair)
PE_SIZES = st.sampled_from([(1, 4), (7, 8), (33, 16), (12, 7), (50, 128), (5, 1), (3, 2)])
# base: the default (twice as likely), another (500), one close to 1 and the default written as an
# int
PE_BASES = (10_000.0, 10_000.0, 500.0, 1.5, 10_000)
FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")


def _pe_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """T, D, base and dtype; the "long" variant runs every position up to 1e4."""
    T, D = data.draw(PE_SIZES, label="T, D")
    if variant == "long":
        T = 10_001  # every position up to 1e4
    base = data.draw(st.sampled_from(PE_BASES), label="base")
    return {"T": T, "D": D, "base": base, "dtype": dtype.name}


def _pe_bad(change: dict[str, Any]) -> Any:
    return lambda data, dtype: {**_pe_inputs(data, dtype, None), **change}


_BASE_DOMAIN = "finite real > 1 (an int too): base = 1 makes every frequency 1, below 1 they grow"
PE_ARGS = (
    Arg(
        "T",
        "int >= 1, the number of positions",
        kind="int",
        regions=(
            region("T = 1", lambda v, i: v == 1),
            region("T > 10^4 (every position up to 1e4)", lambda v, i: v > 10_000),
            region("T < D", lambda v, i: v < i["D"]),
            region("T > D", lambda v, i: v > i["D"]),
        ),
    ),
    Arg(
        "D",
        "int >= 1, the model dim: odd D ends with the sine of the next pair "
        "(its cosine is dropped)",
        kind="int",
        regions=(
            region("D = 1 (one sine column)", lambda v, i: v == 1),
            region("D = 2 (one pair)", lambda v, i: v == 2),
            region("odd D > 1", lambda v, i: v % 2 == 1 and v > 1),
            region("D = 128", lambda v, i: v == 128),
        ),
    ),
    Arg(
        "base",
        _BASE_DOMAIN,
        kind="number",
        default=10000.0,
        regions=(
            region("the default 10000.0", lambda v, i: v == 10000.0 and isinstance(v, float)),
            region("another (500)", lambda v, i: v == 500),
            region("close to 1 (1.5)", lambda v, i: v == 1.5),
            region("an int (10000)", lambda v, i: isinstance(v, int)),
        ),
    ),
    Arg(
        "dtype",
        f"name of the output's floating dtype, one of {FLOAT_NAMES}; float32 by default",
        kind="choice",
        default="float32",
        choices=FLOAT_NAMES,
        regions=tuple(region(n, equals(n)) for n in FLOAT_NAMES),
    ),
)

SINUSOIDAL_POSITIONAL_ENCODING = Component(
    name="sinusoidal_positional_encoding",
    family="embeddings",
    shapes="-> (T, D)",
    error_scale=lambda inputs: float(inputs["T"]) if inputs["dtype"] == "float64" else 1.0,
    args=PE_ARGS,
    draw=_pe_inputs,
    variants=(None, "long"),
    bad_inputs=(
        BadInput("empty_length", "T = 0", _pe_bad({"T": 0})),
        BadInput("empty_model_dim", "D = 0", _pe_bad({"D": 0})),
        BadInput("nan_base", "base = NaN", _pe_bad({"base": float("nan")})),
        BadInput("base_one", "base = 1 (every frequency 1)", _pe_bad({"base": 1.0})),
        BadInput("base_below_one", "base = 0.5", _pe_bad({"base": 0.5})),
        BadInput("integer_dtype", "dtype = 'int32'", _pe_bad({"dtype": "int32"})),
    ),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(SINUSOIDAL_POSITIONAL_ENCODING)
def values_bounded_and_pairs_on_circle(
    subject: Subject, data: st.DataObject, variant: str | None
) -> None:
    """|PE| <= 1 and sin^2 + cos^2 = 1 for every frequency pair; row 0 is exactly
    [0, 1, 0, 1, ...]."""
    case = subject.case(subject.draw(data, variant))
    pe = case.got.astype(np.float64)
    if np.abs(pe).max() > 1:
        subject.fail(case.inputs, f"|PE| reaches {np.abs(pe).max():.6g} > 1")
    D = pe.shape[1]
    norm = pe[:, 0 : 2 * (D // 2) : 2] ** 2 + pe[:, 1 : 2 * (D // 2) : 2] ** 2  # (T, D // 2)
    subject.check(
        compare(norm, np.ones_like(norm), case.bound.times(4), "sin^2 + cos^2 per pair"),
        case.inputs,
    )
    row0 = np.where(np.arange(D) % 2 == 0, 0.0, 1.0)
    if not (pe[0] == row0).all():
        subject.fail(case.inputs, f"row 0 is {pe[0].tolist()}; expected exactly {row0.tolist()}")


@prop(SINUSOIDAL_POSITIONAL_ENCODING)
def relative_positions_are_rotations(
    subject: Subject, data: st.DataObject, variant: str | None
) -> None:
    """PE(pos + k) is PE(pos) rotated, pair by pair, by the angle k / base^(2i/D) (the
    relative-position property)."""
    case = subject.case(subject.draw(data, variant))
    pe = case.got.astype(np.float64)
    T, D = pe.shape
    k = data.draw(st.integers(0, T - 1), label="k")
    half = D // 2
    b = k / case.inputs["base"] ** (np.arange(0, 2 * half, 2) / D)  # (half,)
    s, c = pe[: T - k, 0 : 2 * half : 2], pe[: T - k, 1 : 2 * half : 2]  # (T - k, half)
    turned = (s * np.cos(b) + c * np.sin(b), c * np.cos(b) - s * np.sin(b))  # sin, cos parts
    rotated = np.stack(turned, -1)  # (T - k, half, 2)
    shifted = np.stack([pe[k:, 0 : 2 * half : 2], pe[k:, 1 : 2 * half : 2]], -1)  # (T - k, half, 2)
    # |R x_got - x_true'| + |x_got' - x_true'| <= sqrt(2) bound + bound
    subject.check(
        compare(
            rotated, shifted, case.bound.times(1 + np.sqrt(2)), f"R(k={k}) PE(pos) vs PE(pos + k)"
        ),
        case.inputs,
    )


# (B, T, V, D): the sequence buckets with the shared vocabulary, V = 1 (every id 0) with odd D, and
# D = 1 with V = 2; D = 8 and 5 make sqrt(D) irrational, D = 4, 16, 1 exact
EMBED_SHAPES = ((1, 1, VOCAB, 4), (2, 5, VOCAB, 8), (1, 9, VOCAB, 16), (2, 3, 1, 5), (3, 2, 2, 1))
EMBED_LARGE = 1e3  # "large" tables reach |E| = 1e3: E sqrt(D) + PE stays finite in float16


def _tokens(data: st.DataObject, B: int, T: int, V: int) -> np.ndarray:
    """Ids (B, T) in [0, V): random, with the first and last ids placed, as int64 or int32."""
    tokens = data.draw(token_ids(B, T, V), label="tokens")
    if data.draw(st.booleans(), label="edge_ids"):  # the table's first and last rows
        tokens[0, 0], tokens[-1, -1] = 0, V - 1
    return tokens.astype(
        data.draw(st.sampled_from([np.int64, np.int64, np.int32]), label="id_dtype")
    )


def _embedding_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """Tokens and a table; the "with_positions" variant (embed_with_positions) adds a base."""
    B, T, V, D = data.draw(st.sampled_from(EMBED_SHAPES), label="shape")
    table = data.draw(arrays((V, D), dtype, large=EMBED_LARGE), label="table")
    inputs: dict[str, Any] = {"tokens": _tokens(data, B, T, V), "table": table}
    if variant == "with_positions":
        inputs["base"] = data.draw(st.sampled_from(PE_BASES[:3]), label="base")
    return inputs


def _embedding_scale(inputs: Mapping[str, Any]) -> float:
    table = inputs["table"]
    return 1.0 + np.sqrt(table.shape[1]) * float(np.abs(table.astype(np.float64)).max())


def _bad_token(value: int) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = _embedding_inputs(data, dtype, "with_positions")
        tokens = inputs["tokens"].copy()
        tokens[0, 0] = inputs["table"].shape[0] if value == VOCAB else value
        return {**inputs, "tokens": tokens}

    return draw


def _bad_embedding(change: Any) -> Any:
    return lambda data, dtype: change(_embedding_inputs(data, dtype, "with_positions"))


def _without_base(bad: BadInput) -> BadInput:
    return BadInput(
        bad.name,
        bad.doc,
        lambda data, dtype: {k: v for k, v in bad.draw(data, dtype).items() if k != "base"},
    )


_TOKEN_BAD = (
    BadInput("token_id_equals_V", "a token id of V", _bad_token(VOCAB)),
    BadInput("negative_token_id", "a token id of -1", _bad_token(-1)),
    BadInput(
        "empty_tokens",
        "tokens (B, 0)",
        _bad_embedding(lambda i: {**i, "tokens": i["tokens"][:, :0]}),
    ),
)


def _v(i: Any) -> int:
    return i["table"].shape[0]


def _both_signs(v: np.ndarray, at: float) -> bool:
    """Entries of magnitude >= at of both signs."""
    v = v.astype(np.float64)
    return v.max() >= at and v.min() <= -at


_TOKENS = Arg(
    "tokens",
    "int array (B, T) (int64 or int32), B, T >= 1, every id in [0, V)",
    kind="tokens",
    perturb=lambda v, i: (v + 1) % _v(i),  # the next id, still in [0, V)
    regions=(
        region("id 0 (the table's first row)", lambda v, i: bool((v == 0).any())),
        region(
            "id V - 1 with V > 1 (the last row)",
            lambda v, i: _v(i) > 1 and bool((v == _v(i) - 1).any()),
        ),
        region("a repeated id", lambda v, i: len(np.unique(v)) < v.size),
        region("B = 1, T = 1", lambda v, i: v.shape == (1, 1)),
        region("int32 ids", lambda v, i: v.dtype == np.int32),
        region("int64 ids", lambda v, i: v.dtype == np.int64),
    ),
)
_TABLE = Arg(
    "table",
    "float array (V, D), V >= 1, D >= 1; finite values",
    regions=(
        region("V = 1", lambda v, i: v.shape[0] == 1),
        region("D = 1", lambda v, i: v.shape[1] == 1),
        region("sqrt(D) irrational (D = 5, 8)", lambda v, i: v.shape[1] in (5, 8)),
        region("large magnitudes of both signs (|E| >= 100)", lambda v, i: _both_signs(v, 100)),
    ),
)

TOKEN_EMBEDDING = Component(
    name="token_embedding",
    family="embeddings",
    shapes="tokens (B, T) int, table (V, D) -> (B, T, D)",
    error_scale=_embedding_scale,
    args=(_TOKENS, _TABLE),
    draw=_embedding_inputs,
    bad_inputs=tuple(_without_base(b) for b in _TOKEN_BAD),
)

EMBED_WITH_POSITIONS = Component(
    name="embed_with_positions",
    family="embeddings",
    shapes="tokens (B, T) int, table (V, D) -> (B, T, D)",
    error_scale=_embedding_scale,
    args=(
        _TOKENS,
        _TABLE,
        Arg(
            "base",
            _BASE_DOMAIN,
            kind="number",
            default=10000.0,
            regions=(
                region("the default 10000.0", lambda v, i: v == 10000.0),
                region("another (500)", lambda v, i: v == 500),
            ),
        ),
    ),
    draw=_embedding_inputs,
    variants=("with_positions",),
    bad_inputs=_TOKEN_BAD
    + (
        BadInput("base_one", "base = 1", _bad_embedding(lambda i: {**i, "base": 1.0})),
        BadInput("nan_base", "base = NaN", _bad_embedding(lambda i: {**i, "base": float("nan")})),
    ),
)

# (h's shape, V): the sequence buckets, a 1-D h with V = 1, a 4-D h with D = 2 < V = 3
TIED_SHAPES = (
    ((1, 1, 4), VOCAB),
    ((2, 5, 8), VOCAB),
    ((1, 9, 16), VOCAB),
    ((5,), 1),
    ((2, 1, 3, 2), 3),
)


def _tied_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """h of any rank and a table of h's D, at most one of them large."""
    shape, V = data.draw(st.sampled_from(TIED_SHAPES), label="shape")
    # one of h and the table may be large (1e3), not both: their products must stay finite in
    # float16
    large = data.draw(st.sampled_from(["neither", "h", "table"]), label="large")
    return {
        "h": data.draw(
            arrays(shape, dtype, allow_large=large == "h", large=EMBED_LARGE), label="h"
        ),
        "table": data.draw(
            arrays((V, shape[-1]), dtype, allow_large=large == "table", large=EMBED_LARGE),
            label="table",
        ),
    }


def _tied_scale(inputs: Mapping[str, Any]) -> float:
    return float(
        (
            np.abs(inputs["h"].astype(np.float64)) @ np.abs(inputs["table"].astype(np.float64)).T
        ).max()
    )


def _tied_bad(change: Any) -> Any:
    return lambda data, dtype: change(_tied_inputs(data, dtype, None))


TIED_OUTPUT_LOGITS = Component(
    name="tied_output_logits",
    family="embeddings",
    shapes="h (..., D), table (V, D) -> (..., V)",
    error_scale=_tied_scale,
    args=(
        Arg(
            "h",
            "float array (..., D) of any rank >= 1, every axis >= 1; finite values",
            regions=(
                region("1-D (D,)", lambda v, i: v.ndim == 1),
                region("3-D (B, T, D)", lambda v, i: v.ndim == 3),
                region("4-D", lambda v, i: v.ndim == 4),
                region(
                    "large magnitudes of both signs (|h| >= 100)", lambda v, i: _both_signs(v, 100)
                ),
            ),
        ),
        Arg(
            "table",
            "float array (V, D) with h's D, V >= 1; finite values",
            regions=(
                region("V = 1", lambda v, i: v.shape[0] == 1),
                region("V < D", lambda v, i: v.shape[0] < v.shape[1]),
                region("V > D", lambda v, i: v.shape[0] > v.shape[1]),
                region(
                    "large magnitudes of both signs (|E| >= 100)", lambda v, i: _both_signs(v, 100)
                ),
            ),
        ),
    ),
    draw=_tied_inputs,
    bad_inputs=(
        BadInput(
            "model_dim_mismatch",
            "table (V, D + 1)",
            _tied_bad(lambda i: {**i, "table": np.concatenate([i["table"], i["table"][:, :1]], 1)}),
        ),
        BadInput(
            "scalar_h",
            "h of shape ()",
            _tied_bad(lambda i: {**i, "h": i["h"].reshape(-1)[0].reshape(())}),  # (...) -> ()
        ),
        BadInput(
            "empty_model_dim",
            "D = 0",
            _tied_bad(lambda i: {"h": i["h"][..., :0], "table": i["table"][:, :0]}),
        ),
    ),
)
