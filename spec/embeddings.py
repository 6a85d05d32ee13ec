"""Spec entries: sinusoidal_positional_encoding, token_embedding, embed_with_positions, tied_output_logits.

    sinusoidal_positional_encoding(T, D, base=10000.0, dtype="float32") -> PE (T, D) in dtype
        PE[pos, 2i] = sin(pos / base^(2i/D)), PE[pos, 2i+1] = cos(same); odd D keeps the last sine.
        Precision must hold at every position up to 10^4 in float32: the angle may not be formed
        as a float32 product (an error of ~1e-3 rad at pos 1e4).
    token_embedding(tokens (B, T) int, table (V, D)) -> E[tokens] * sqrt(D)          (B, T, D)
    embed_with_positions(tokens, table, base=10000.0) -> E[tokens] sqrt(D) + PE[:T]  (B, T, D)
    tied_output_logits(h (B, T, D), table (V, D)) -> h E^T                           (B, T, V)
Token ids outside [0, V) are refused. error_scale: for PE 1 below float64 (the angle must be formed
in float64, so only the output's rounding is allowed) and T at float64 (the float64 angle itself is
off by u * pos); sqrt(D)
max|E| (+ 1) for embeddings, max_t sum_d |h_d E_vd| for tied logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import DType
from spec.strategies import VOCAB, arrays, seq_shapes, token_ids
from spec.tolerance import compare

PE_SIZES = st.sampled_from([(1, 4), (7, 8), (33, 16), (12, 7), (50, 128)])  # (T, D); D = 7 is odd


def _pe_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    T, D = data.draw(PE_SIZES, label="T, D")
    if variant == "long":
        T = 10_001  # every position up to 1e4
    base = data.draw(st.sampled_from([10_000.0, 10_000.0, 500.0]), label="base")
    return {"T": T, "D": D, "base": base, "dtype": dtype.name}


def values_bounded_and_pairs_on_circle(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """|PE| <= 1 and sin^2 + cos^2 = 1 for every frequency pair; row 0 is exactly [0, 1, 0, 1, ...]."""
    case = subject.case(_pe_inputs(data, subject.dtype, variant))
    pe = case.got.astype(np.float64)
    if np.abs(pe).max() > 1:
        subject.fail(case.inputs, f"|PE| reaches {np.abs(pe).max():.6g} > 1")
    D = pe.shape[1]
    norm = pe[:, 0 : 2 * (D // 2) : 2] ** 2 + pe[:, 1 : 2 * (D // 2) : 2] ** 2  # (T, D // 2)
    subject.check(compare(norm, np.ones_like(norm), case.bound.times(4), "sin^2 + cos^2 per pair"), case.inputs)
    row0 = np.where(np.arange(D) % 2 == 0, 0.0, 1.0)
    if not (pe[0] == row0).all():
        subject.fail(case.inputs, f"row 0 is {pe[0].tolist()}; expected exactly {row0.tolist()}")


def relative_positions_are_rotations(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """PE(pos + k) is PE(pos) rotated, pair by pair, by the angle k / base^(2i/D) (the relative-position property)."""
    case = subject.case(_pe_inputs(data, subject.dtype, variant))
    pe = case.got.astype(np.float64)
    T, D = pe.shape
    k = data.draw(st.integers(0, T - 1), label="k")
    half = D // 2
    b = k / case.inputs["base"] ** (np.arange(0, 2 * half, 2) / D)  # (half,)
    s, c = pe[: T - k, 0 : 2 * half : 2], pe[: T - k, 1 : 2 * half : 2]  # (T - k, half)
    rotated = np.stack([s * np.cos(b) + c * np.sin(b), c * np.cos(b) - s * np.sin(b)], -1)  # (T - k, half, 2)
    shifted = np.stack([pe[k:, 0 : 2 * half : 2], pe[k:, 1 : 2 * half : 2]], -1)  # (T - k, half, 2)
    # |R x_got - x_true'| + |x_got' - x_true'| <= sqrt(2) bound + bound
    subject.check(compare(rotated, shifted, case.bound.times(1 + np.sqrt(2)), f"R(k={k}) PE(pos) vs PE(pos + k)"), case.inputs)


def _pe_bad(change: dict[str, Any]) -> Any:
    return lambda data, dtype: {**_pe_inputs(data, dtype, None), **change}


SINUSOIDAL_POSITIONAL_ENCODING = Component(
    name="sinusoidal_positional_encoding",
    family="embeddings",
    signature="sinusoidal_positional_encoding(T, D, base=10000.0, dtype='float32') -> PE",
    shapes="-> (T, D)",
    error_scale=lambda inputs: float(inputs["T"]) if inputs["dtype"] == "float64" else 1.0,
    properties=(
        matches_reference(_pe_inputs, (None, "long")),
        Property(
            "values_bounded_and_pairs_on_circle", values_bounded_and_pairs_on_circle.__doc__, values_bounded_and_pairs_on_circle
        ),
        Property("relative_positions_are_rotations", relative_positions_are_rotations.__doc__, relative_positions_are_rotations),
    ),
    bad_inputs=(
        BadInput("empty_length", "T = 0", _pe_bad({"T": 0})),
        BadInput("empty_model_dim", "D = 0", _pe_bad({"D": 0})),
        BadInput("nan_base", "base = NaN", _pe_bad({"base": float("nan")})),
    ),
)


def _embedding_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    s = data.draw(seq_shapes(), label="shape")
    table = data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="table")
    inputs: dict[str, Any] = {"tokens": data.draw(token_ids(s.B, s.T), label="tokens"), "table": table}
    if variant == "with_positions":
        inputs["base"] = 10_000.0
    return inputs


def _embedding_scale(inputs: dict[str, Any]) -> float:
    table = inputs["table"]
    return 1.0 + np.sqrt(table.shape[1]) * float(np.abs(table.astype(np.float64)).max())


def _bad_token(value: int) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = _embedding_inputs(data, dtype, None)
        tokens = inputs["tokens"].copy()
        tokens[0, 0] = value
        return {**inputs, "tokens": tokens}

    return draw


_TOKEN_BAD = (
    BadInput("token_id_equals_V", f"a token id of V = {VOCAB}", _bad_token(VOCAB)),
    BadInput("negative_token_id", "a token id of -1", _bad_token(-1)),
)

TOKEN_EMBEDDING = Component(
    name="token_embedding",
    family="embeddings",
    signature="token_embedding(tokens, table) -> E[tokens] * sqrt(D)",
    shapes="tokens (B, T) int, table (V, D) -> (B, T, D)",
    error_scale=_embedding_scale,
    properties=(matches_reference(_embedding_inputs),),
    bad_inputs=_TOKEN_BAD,
)

EMBED_WITH_POSITIONS = Component(
    name="embed_with_positions",
    family="embeddings",
    signature="embed_with_positions(tokens, table, base=10000.0) -> E[tokens] * sqrt(D) + PE[:T]",
    shapes="tokens (B, T) int, table (V, D) -> (B, T, D)",
    error_scale=_embedding_scale,
    properties=(matches_reference(_embedding_inputs, ("with_positions",)),),
    bad_inputs=_TOKEN_BAD,
)


def _tied_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    s = data.draw(seq_shapes(), label="shape")
    return {
        "h": data.draw(arrays((s.B, s.T, s.D), dtype, allow_large=False), label="h"),
        "table": data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="table"),
    }


def _tied_scale(inputs: dict[str, Any]) -> float:
    return float((np.abs(inputs["h"].astype(np.float64)) @ np.abs(inputs["table"].astype(np.float64)).T).max())


def _tied_bad(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _tied_inputs(data, dtype, None)
    return {**inputs, "table": np.concatenate([inputs["table"], inputs["table"][:, :1]], axis=1)}


TIED_OUTPUT_LOGITS = Component(
    name="tied_output_logits",
    family="embeddings",
    signature="tied_output_logits(h, table) -> h @ table.T",
    shapes="h (B, T, D), table (V, D) -> (B, T, V)",
    error_scale=_tied_scale,
    properties=(matches_reference(_tied_inputs),),
    bad_inputs=(BadInput("model_dim_mismatch", "table (V, D + 1)", _tied_bad),),
)
