"""Spec entries: recurrent_cell, rnn_encoder, context_vector (canonical layout in reference/recurrent.py).

    recurrent_cell(x (B, E), state (B, N) | LSTM [h | c] (B, 2N), params, cell) -> new state, same shape
    rnn_encoder(x (B, T, E), params {"forward"[, "backward"]}, cell, lengths=None) -> (B, T, dirs N)
    context_vector(x, params, cell, lengths=None) -> (B, dirs N): the final hidden state(s)
Gate order (the spec's own): gru (z, r, n), lstm (i, f, g, o). Bidirectional outputs concatenate
[forward | backward]; outputs past a sequence's length are 0; the backward direction starts at each
sequence's last real step. Properties: a run equals the cell applied step by step; a batch equals its
items; padded steps change nothing; reversing the input swaps the two directions; the context's size
does not depend on T and equals the encoder's outputs at the sequence ends.
error_scale: the largest pre-activation |x| |W_x| + |b_x| + |h| |W_h| + |b_h| (|h| <= 1, |c| <= T), times T.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from reference.recurrent import GATES
from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.strategies import arrays, normal_params, seeds
from spec.tolerance import compare


class RecShape(NamedTuple):
    B: int
    T: int
    E: int
    N: int


# float64 and float32 in the default run for the recurrent and seq2seq families: the seq2seq issue's scope.
# All four dtypes passed on numpy, torch and jax when measured (README); half precision here costs jax a
# compilation per shape for little.
DEFAULT_RUN_DTYPES: tuple[DType, ...] = (FLOAT64, FLOAT32)
REC_BUCKETS = (RecShape(1, 1, 3, 2), RecShape(2, 5, 4, 3), RecShape(3, 4, 2, 4))


@st.composite
def cell_params(draw: Any, E: int, N: int, cell: str, dtype: DType) -> dict[str, np.ndarray]:
    """Return a strategy for one cell's canonical params: W ~ N(0, 1/fan-in), biases N(0, 0.1^2)."""
    G = len(GATES[cell])
    shapes = {"w_x": (E, G * N), "w_h": (N, G * N), "b_x": (G * N,), "b_h": (G * N,)}
    return draw(normal_params(shapes, dtype, {"b_x": 0.1, "b_h": 0.1}), label=f"{cell}_params")


def _cell(variant: str | None) -> str:
    return next((c for c in GATES if variant and c in variant.split("+")), "gru")


def _cell_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    cell = _cell(variant)
    s: RecShape = data.draw(st.sampled_from(REC_BUCKETS), label="shape")
    width = 2 * s.N if cell == "lstm" else s.N
    state = data.draw(arrays((s.B, width), dtype, allow_large=False), label="state")
    return {
        "x": data.draw(arrays((s.B, s.E), dtype, allow_large=False), label="x"),
        "state": state,
        "params": data.draw(cell_params(s.E, s.N, cell, dtype), label="params"),
        "cell": cell,
    }


def _lengths(data: st.DataObject, B: int, T: int) -> np.ndarray:
    return np.random.default_rng(data.draw(seeds(), label="len_seed")).integers(1, T + 1, B)


def encoder_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """Inputs of rnn_encoder / context_vector; variant names the cell, "+bidirectional", "+lengths"."""
    cell, variant = _cell(variant), variant or ""
    s: RecShape = data.draw(st.sampled_from(REC_BUCKETS), label="shape")
    directions = ("forward", "backward") if "bidirectional" in variant else ("forward",)
    inputs: dict[str, Any] = {
        "x": data.draw(arrays((s.B, s.T, s.E), dtype, allow_large=False), label="x"),
        "params": {d: data.draw(cell_params(s.E, s.N, cell, dtype), label=d) for d in directions},
        "cell": cell,
    }
    if "lengths" in variant:
        inputs["lengths"] = _lengths(data, s.B, s.T)
    return inputs


def _pre_activation(inputs: dict[str, Any], state_bound: float) -> float:
    params = inputs["params"]
    params = params.get("forward", params)
    w = {k: np.abs(v.astype(np.float64)) for k, v in params.items()}
    x = float(np.abs(inputs["x"].astype(np.float64)).max())
    return float((x * w["w_x"].sum(0) + w["b_x"] + state_bound * w["w_h"].sum(0) + w["b_h"]).max())


def _cell_scale(inputs: dict[str, Any]) -> float:
    return 1.0 + _pre_activation(inputs, float(np.abs(inputs["state"].astype(np.float64)).max()))


def _encoder_scale(inputs: dict[str, Any]) -> float:
    T = inputs["x"].shape[1]
    return (1.0 + _pre_activation(inputs, float(T))) * T


def run_equals_cell_steps(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """An encoder run equals the same adapter's cell applied step by step from a zero state."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    whole = subject.case(inputs)
    cell = subject.sibling("recurrent_cell")
    x, params, name = inputs["x"], inputs["params"]["forward"], inputs["cell"]
    N = params["w_h"].shape[0]
    state = np.zeros((x.shape[0], 2 * N if name == "lstm" else N), x.dtype)
    for t in range(x.shape[1]):
        step = cell.case({"x": x[:, t], "state": state, "params": params, "cell": name})
        what = f"encoder output at t={t} vs the cell applied {t + 1} times"
        subject.check(compare(whole.got[:, t], step.got[:, :N], whole.bound + step.bound, what), inputs)
        state = step.got


def batch_equals_items(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """A batch equals its items run one at a time (lengths sliced with them)."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    whole = subject.case(inputs)
    for b in range(inputs["x"].shape[0]):
        item = {**inputs, "x": inputs["x"][b : b + 1]}
        if "lengths" in inputs:
            item["lengths"] = inputs["lengths"][b : b + 1]
        whole.assert_equivalent(whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch")


def padding_does_not_matter(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """With lengths given, changing the input at padded steps (t >= length) changes nothing."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    x = inputs["x"]
    padded = np.arange(x.shape[1])[None, :, None] >= inputs["lengths"][:, None, None]  # (B, T, 1)
    noise = 3 * np.random.default_rng(data.draw(seeds(), label="noise_seed")).standard_normal(x.shape)
    changed = np.where(padded, noise, x.astype(np.float64)).astype(x.dtype)
    base = subject.case(inputs)
    base.assert_equivalent(base.got, subject.case({**inputs, "x": changed}), "output after changing the padded steps")


def reversal_swaps_directions(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Bidirectional: running the reversed sequence with the directions' weights swapped gives the
    original outputs reversed in time, with the forward and backward halves swapped."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    base = subject.case(inputs)
    p = inputs["params"]
    flipped = subject.case(
        {**inputs, "x": inputs["x"][:, ::-1].copy(), "params": {"forward": p["backward"], "backward": p["forward"]}}
    )
    N = p["forward"]["w_h"].shape[0]
    swapped = np.concatenate([base.got[..., N:], base.got[..., :N]], axis=-1)[:, ::-1]  # (B, T, 2N)
    base.assert_equivalent(swapped, flipped, "outputs of the reversed sequence vs the original's, reversed and halves swapped")


def context_size_is_fixed(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """The context vector's size does not depend on the input length: (B, dirs N) for any T."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    T = inputs["x"].shape[1]
    shorter = data.draw(st.integers(1, T), label="shorter_T")
    shapes = {t: subject.case({**inputs, "x": inputs["x"][:, :t]}).got.shape for t in {T, shorter}}
    if len(set(shapes.values())) != 1:
        subject.fail(inputs, f"context vector shapes differ with the input length: {shapes}")


def context_is_encoder_ends(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """The context is the encoder's forward output at each sequence's last real step and, bidirectional,
    the backward output at step 0 (its final state), from the same adapter's rnn_encoder."""
    inputs = encoder_inputs(data, subject.dtype, variant)
    context = subject.case(inputs)
    outputs = subject.sibling("rnn_encoder").case(inputs)
    x = inputs["x"]
    last = inputs.get("lengths", np.full(x.shape[0], x.shape[1])) - 1
    N = inputs["params"]["forward"]["w_h"].shape[0]
    ends = outputs.got[np.arange(x.shape[0]), last]  # (B, dirs N): forward part at len - 1
    if "backward" in inputs["params"]:
        ends = np.concatenate([ends[:, :N], outputs.got[:, 0, N:]], axis=-1)  # backward part at step 0
    subject.check(
        compare(context.got, ends, context.bound + outputs.bound, "context vs the encoder's outputs at the ends"), inputs
    )


def _bad_gates(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, "gru")
    return {**inputs, "params": {**inputs["params"], "w_h": inputs["params"]["w_h"][:, :-1]}}  # (N, 3N - 1)


def _bad_state(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, "gru")
    return {**inputs, "state": np.concatenate([inputs["state"], inputs["state"][:, :1]], axis=1)}  # (B, N + 1)


def _bad_lengths(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, "gru+lengths")
    return {**inputs, "lengths": inputs["lengths"] * 0 + inputs["x"].shape[1] + 1}


def _bad_directions(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, "gru+bidirectional")
    x = inputs["x"]
    wider = data.draw(cell_params(x.shape[2], inputs["params"]["forward"]["w_h"].shape[0] + 1, "gru", dtype), label="wider")
    return {**inputs, "params": {**inputs["params"], "backward": wider}}


RECURRENT_CELL = Component(
    name="recurrent_cell",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="recurrent_cell(x, state, params, cell='gru') -> new state",
    shapes="x (B, E), state (B, N) or LSTM [h | c] (B, 2N), W_x (E, G N), W_h (N, G N) -> like state",
    error_scale=_cell_scale,
    properties=(matches_reference(_cell_inputs, ("rnn", "gru", "lstm")),),
    bad_inputs=(
        BadInput("gate_weights_wrong_shape", "GRU w_h (N, 3N - 1)", _bad_gates),
        BadInput("state_size_mismatch", "state (B, N + 1)", _bad_state),
    ),
)

_ENCODER_BAD = (
    BadInput("lengths_longer_than_T", "lengths = T + 1", _bad_lengths),
    BadInput("directions_differ_in_N", "backward N + 1", _bad_directions),
)

RNN_ENCODER = Component(
    name="rnn_encoder",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="rnn_encoder(x, params, cell='gru', lengths=None) -> outputs",
    shapes="x (B, T, E), lengths (B,) -> (B, T, N) or bidirectional (B, T, 2N)",
    error_scale=_encoder_scale,
    properties=(
        matches_reference(
            encoder_inputs, ("rnn", "gru", "lstm", "gru+bidirectional", "gru+lengths", "lstm+bidirectional+lengths")
        ),
        Property("run_equals_cell_steps", run_equals_cell_steps.__doc__, run_equals_cell_steps, ("rnn", "gru", "lstm")),
        Property("batch_equals_items", batch_equals_items.__doc__, batch_equals_items, ("gru+bidirectional+lengths",)),
        Property(
            "padding_does_not_matter", padding_does_not_matter.__doc__, padding_does_not_matter, ("lstm+bidirectional+lengths",)
        ),
        Property(
            "reversal_swaps_directions", reversal_swaps_directions.__doc__, reversal_swaps_directions, ("gru+bidirectional",)
        ),
    ),
    bad_inputs=_ENCODER_BAD,
)

CONTEXT_VECTOR = Component(
    name="context_vector",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="context_vector(x, params, cell='gru', lengths=None) -> final hidden state(s)",
    shapes="x (B, T, E), lengths (B,) -> (B, N) or bidirectional (B, 2N)",
    error_scale=_encoder_scale,
    properties=(
        matches_reference(encoder_inputs, ("gru", "lstm+bidirectional", "gru+bidirectional+lengths")),
        Property("size_independent_of_T", context_size_is_fixed.__doc__, context_size_is_fixed, ("gru+bidirectional",)),
        Property("is_encoder_ends", context_is_encoder_ends.__doc__, context_is_encoder_ends, ("lstm+bidirectional+lengths",)),
        Property(
            "padding_does_not_matter", padding_does_not_matter.__doc__, padding_does_not_matter, ("gru+bidirectional+lengths",)
        ),
    ),
    bad_inputs=_ENCODER_BAD,
)
