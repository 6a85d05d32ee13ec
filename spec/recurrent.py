"""Spec entries: recurrent_cell, rnn_encoder, context_vector (canonical layout in
reference/recurrent.py).

    recurrent_cell(x (B, E), state (B, N) | LSTM [h | c] (B, 2N), params, cell) -> new state, same
    shape rnn_encoder(x (B, T, E), params {"forward"[, "backward"]}, cell, lengths=None) -> (B, T,
    dirs N) context_vector(x, params, cell, lengths=None) -> (B, dirs N): the final hidden state(s)
Gate order (the spec's own): gru (z, r, n), lstm (i, f, g, o). Bidirectional outputs concatenate
[forward | backward]; outputs past a sequence's length are 0; the backward direction starts at each
sequence's last real step. Properties: a run equals the cell applied step by step; a batch equals
its items; padded steps change nothing; reversing the input swaps the two directions; the context's
size does not depend on T and equals the encoder's outputs at the sequence ends. error_scale: the
largest pre-activation |x| |W_x| + |b_x| + |h| |W_h| + |b_h| (|h| <= 1, |c| <= T), times T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from reference.recurrent import GATES
from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, equals, region
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.strategies import arrays, normal_params, seeds
from spec.tolerance import compare


class RecShape(NamedTuple):
    B: int
    T: int
    E: int
    N: int


# float64 and float32 in the default run for the recurrent and seq2seq families: the seq2seq issue's
# scope. All four dtypes passed on numpy, torch and jax when measured (README); half precision here
# costs jax a compilation per shape for little.
DEFAULT_RUN_DTYPES: tuple[DType, ...] = (FLOAT64, FLOAT32)
# the smallest legal sizes (B = T = E = N = 1: w_x and w_h of one shape), E > N and E < N
REC_BUCKETS = (RecShape(1, 1, 1, 1), RecShape(2, 5, 4, 3), RecShape(3, 4, 2, 4))


@st.composite
def cell_params(draw: Any, E: int, N: int, cell: str, dtype: DType) -> dict[str, np.ndarray]:
    """Return a strategy for one cell's canonical params: W ~ N(0, 1/fan-in), biases N(0, 0.1^2)."""
    G = len(GATES[cell])
    shapes = {"w_x": (E, G * N), "w_h": (N, G * N), "b_x": (G * N,), "b_h": (G * N,)}
    return draw(normal_params(shapes, dtype, {"b_x": 0.1, "b_h": 0.1}), label=f"{cell}_params")


@dataclass(frozen=True)
class Recurrence:
    """A recurrent variant: the cell (``cell``: one of GATES' "rnn", "gru", "lstm") and, for an
    encoder, whether it runs both directions (``bidirectional``) and is given sequence lengths
    (``lengths``). Its str is the test id's ("gru", "lstm+bidirectional+lengths")."""

    cell: str = "gru"
    bidirectional: bool = False
    lengths: bool = False

    def __str__(self) -> str:
        flags = (("bidirectional", self.bidirectional), ("lengths", self.lengths))
        return "+".join([self.cell, *(name for name, on in flags if on)])

    @classmethod
    def parse(cls, text: Recurrence | str | None) -> Recurrence:
        """The variant a test id names (the strings of earlier versions and deviation keys); None is
        a unidirectional GRU without lengths."""
        if isinstance(text, Recurrence):
            return text
        known = {
            str(v): v
            for v in (cls(c, b, n) for c in GATES for b in (False, True) for n in (False, True))
        }
        if (text or "gru") not in known:
            raise ValueError(f"unknown recurrent variant {text!r}; expected one of {sorted(known)}")
        return known[text or "gru"]


def _variants(*names: str) -> tuple[Recurrence, ...]:
    return tuple(Recurrence.parse(n) for n in names)


def _cell_inputs(
    data: st.DataObject, dtype: DType, variant: Recurrence | str | None
) -> dict[str, Any]:
    cell = Recurrence.parse(variant).cell
    s: RecShape = data.draw(st.sampled_from(REC_BUCKETS), label="shape")
    width = 2 * s.N if cell == "lstm" else s.N
    state = data.draw(arrays((s.B, width), dtype, allow_large=False), label="state")
    if data.draw(st.booleans(), label="zero_state"):  # a sequence's first step starts from 0
        state = np.zeros_like(state)
    return {
        # large inputs (|x| ~ 1e4) saturate every gate: sigmoid at exactly 0 or 1, tanh at +-1
        "x": data.draw(arrays((s.B, s.E), dtype), label="x"),
        "state": state,
        "params": data.draw(cell_params(s.E, s.N, cell, dtype), label="params"),
        "cell": cell,
    }


def _lengths(data: st.DataObject, B: int, T: int) -> np.ndarray:
    """Lengths in [1, T], in any order; one of them T (a batch is padded to its longest) unless B =
    1."""
    rng = np.random.default_rng(data.draw(seeds(), label="len_seed"))
    lengths = rng.integers(1, T + 1, B)
    if B > 1:
        lengths[rng.integers(0, B)] = T
    return lengths


def encoder_inputs(
    data: st.DataObject, dtype: DType, variant: Recurrence | str | None
) -> dict[str, Any]:
    """Inputs of rnn_encoder / context_vector under a variant (Recurrence): the cell, one or both
    directions, lengths or none."""
    v = Recurrence.parse(variant)
    cell = v.cell
    s: RecShape = data.draw(st.sampled_from(REC_BUCKETS), label="shape")
    directions = ("forward", "backward") if v.bidirectional else ("forward",)
    inputs: dict[str, Any] = {
        "x": data.draw(arrays((s.B, s.T, s.E), dtype), label="x"),
        "params": {d: data.draw(cell_params(s.E, s.N, cell, dtype), label=d) for d in directions},
        "cell": cell,
    }
    if v.lengths:
        inputs["lengths"] = _lengths(data, s.B, s.T)
    return inputs


def _pre_activation(inputs: Mapping[str, Any], state_bound: float) -> float:
    params = inputs["params"]
    params = params.get("forward", params)
    w = {k: np.abs(v.astype(np.float64)) for k, v in params.items()}
    x = float(np.abs(inputs["x"].astype(np.float64)).max())
    return float((x * w["w_x"].sum(0) + w["b_x"] + state_bound * w["w_h"].sum(0) + w["b_h"]).max())


def _cell_scale(inputs: Mapping[str, Any]) -> float:
    return 1.0 + _pre_activation(inputs, float(np.abs(inputs["state"].astype(np.float64)).max()))


def _encoder_scale(inputs: Mapping[str, Any]) -> float:
    T = inputs["x"].shape[1]
    return (1.0 + _pre_activation(inputs, float(T))) * T


def run_equals_cell_steps(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """An encoder run equals the same adapter's cell applied step by step from a zero state."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    cell = subject.sibling("recurrent_cell")
    x, params, name = inputs["x"], inputs["params"]["forward"], inputs["cell"]
    N = params["w_h"].shape[0]
    state = np.zeros((x.shape[0], 2 * N if name == "lstm" else N), x.dtype)
    for t in range(x.shape[1]):
        step = cell.case({"x": x[:, t], "state": state, "params": params, "cell": name})
        what = f"encoder output at t={t} vs the cell applied {t + 1} times"
        subject.check(
            compare(whole.got[:, t], step.got[:, :N], whole.bound + step.bound, what), inputs
        )
        state = step.got


def batch_equals_items(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """A batch equals its items run one at a time (lengths sliced with them)."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    for b in range(inputs["x"].shape[0]):
        item = {**inputs, "x": inputs["x"][b : b + 1]}
        if "lengths" in inputs:
            item["lengths"] = inputs["lengths"][b : b + 1]
        whole.assert_equivalent(
            whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch"
        )


def padding_does_not_matter(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """With lengths given, changing the input at padded steps (t >= length) changes nothing."""
    inputs = subject.draw(data, variant)
    x = inputs["x"]
    padded = np.arange(x.shape[1])[None, :, None] >= inputs["lengths"][:, None, None]  # (B, T, 1)
    noise = 3 * np.random.default_rng(data.draw(seeds(), label="noise_seed")).standard_normal(
        x.shape
    )
    changed = np.where(padded, noise, x.astype(np.float64)).astype(x.dtype)
    base = subject.case(inputs)
    base.assert_equivalent(
        base.got, subject.case({**inputs, "x": changed}), "output after changing the padded steps"
    )


def reversal_swaps_directions(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """Bidirectional: running the reversed sequence with the directions' weights swapped gives the
    original outputs reversed in time, with the forward and backward halves swapped."""
    inputs = subject.draw(data, variant)
    base = subject.case(inputs)
    p = inputs["params"]
    flipped = subject.case(
        {
            **inputs,
            "x": inputs["x"][:, ::-1].copy(),
            "params": {"forward": p["backward"], "backward": p["forward"]},
        }
    )
    N = p["forward"]["w_h"].shape[0]
    swapped = np.concatenate([base.got[..., N:], base.got[..., :N]], axis=-1)[:, ::-1]  # (B, T, 2N)
    base.assert_equivalent(
        swapped,
        flipped,
        "outputs of the reversed sequence vs the original's, reversed and halves swapped",
    )


def context_size_is_fixed(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """The context vector's size does not depend on the input length: (B, dirs N) for any T."""
    inputs = subject.draw(data, variant)
    T = inputs["x"].shape[1]
    shorter = data.draw(st.integers(1, T), label="shorter_T")
    shapes = {t: subject.case({**inputs, "x": inputs["x"][:, :t]}).got.shape for t in {T, shorter}}
    if len(set(shapes.values())) != 1:
        subject.fail(inputs, f"context vector shapes differ with the input length: {shapes}")


def context_is_encoder_ends(subject: Subject, data: st.DataObject, variant: Recurrence) -> None:
    """The context is the encoder's forward output at each sequence's last real step and,
    bidirectional, the backward output at step 0 (its final state), from the same adapter's
    rnn_encoder."""
    inputs = subject.draw(data, variant)
    context = subject.case(inputs)
    outputs = subject.sibling("rnn_encoder").case(inputs)
    x = inputs["x"]
    last = inputs.get("lengths", np.full(x.shape[0], x.shape[1])) - 1
    N = inputs["params"]["forward"]["w_h"].shape[0]
    ends = outputs.got[np.arange(x.shape[0]), last]  # (B, dirs N): forward part at len - 1
    if "backward" in inputs["params"]:
        ends = np.concatenate(
            [ends[:, :N], outputs.got[:, 0, N:]], axis=-1
        )  # backward part at step 0
    subject.check(
        compare(
            context.got,
            ends,
            context.bound + outputs.bound,
            "context vs the encoder's outputs at the ends",
        ),
        inputs,
    )


def _bad_gates(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, Recurrence("gru"))
    return {
        **inputs,
        "params": {**inputs["params"], "w_h": inputs["params"]["w_h"][:, :-1]},
    }  # (N, 3N - 1)


def _bad_state(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, Recurrence("gru"))
    return {
        **inputs,
        "state": np.concatenate([inputs["state"], inputs["state"][:, :1]], axis=1),
    }  # (B, N + 1)


def _bad_lstm_state(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, Recurrence("lstm"))
    N = inputs["params"]["w_h"].shape[0]
    return {**inputs, "state": inputs["state"][:, :N]}  # (B, N): h without c


def _bad_batch(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _cell_inputs(data, dtype, Recurrence("gru"))
    return {**inputs, "x": np.concatenate([inputs["x"], inputs["x"][:1]], axis=0)}  # (B + 1, E)


def _unknown_cell(draw: Any) -> Any:
    def bad(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return {**draw(data, dtype, Recurrence("gru")), "cell": "GRU"}

    return bad


def _bad_lengths(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, Recurrence(lengths=True))
    return {**inputs, "lengths": inputs["lengths"] * 0 + inputs["x"].shape[1] + 1}


def _zero_length(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, Recurrence(lengths=True))
    return {
        **inputs,
        "lengths": np.concatenate([[0], inputs["lengths"][1:]]),
    }  # the first sequence empty


def _lengths_not_per_item(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, Recurrence(lengths=True))
    return {
        **inputs,
        "lengths": np.concatenate([inputs["lengths"], inputs["lengths"][:1]]),
    }  # (B + 1,)


def _bad_directions(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, Recurrence(bidirectional=True))
    x = inputs["x"]
    wider = data.draw(
        cell_params(x.shape[2], inputs["params"]["forward"]["w_h"].shape[0] + 1, "gru", dtype),
        label="wider",
    )
    return {**inputs, "params": {**inputs["params"], "backward": wider}}


def _backward_only(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = encoder_inputs(data, dtype, Recurrence())
    return {**inputs, "params": {"backward": inputs["params"]["forward"]}}


# Argument domains (spec/domains.py).
def _large(v: Any) -> bool:
    return float(np.abs(v.astype(np.float64)).max()) >= 1e3


def _one_step_fewer(lengths: Any, inputs: Any) -> Any:
    """Every length above 1 one step shorter (stays in [1, T]); None when all are 1."""
    return np.where(lengths > 1, lengths - 1, lengths) if (lengths > 1).any() else None


_CELL_WEIGHTS = {
    "w_x": "float array (E, G N): the input weights, G gate blocks of N columns in spec order",
    "w_h": "float array (N, G N): the recurrent weights, gate blocks as w_x",
    "b_x": "float array (G N,): the input bias",
    "b_h": "float array (G N,): the recurrent bias (GRU: inside the reset product for the "
    "candidate n)",
}
_CELL_ENTRIES = tuple(Arg(name, domain) for name, domain in _CELL_WEIGHTS.items())
CELL_ARG = Arg(
    "cell",
    "'rnn' (Elman, tanh), 'gru' (gates z, r, n) or 'lstm' (gates i, f, g, o; state [h | c])",
    kind="choice",
    default="gru",
    choices=("rnn", "gru", "lstm"),
    regions=tuple(region(c, equals(c)) for c in ("rnn", "gru", "lstm")),
)
CELL_ARGS = (
    Arg(
        "x",
        "float array (B, E), B, E >= 1; finite values",
        regions=(
            region("B = 1 and E = 1 (the smallest)", lambda v, i: v.shape == (1, 1)),
            region("B > 1", lambda v, i: v.shape[0] > 1),
            region("large inputs (|x| >= 1e3: saturated gates)", lambda v, i: _large(v)),
            region(
                "tiny inputs (|x| < 1e-2)",
                lambda v, i: float(np.abs(v.astype(np.float64)).max()) < 1e-2,
            ),
        ),
    ),
    Arg(
        "state",
        "float array (B, N) with x's B, or for the LSTM [h | c] (B, 2N); any finite values (h need "
        "not lie in [-1, 1])",
        regions=(
            region("zero (a sequence's first step)", lambda v, i: not v.any()),
            region("nonzero", lambda v, i: bool(v.any())),
            region("N = 1", lambda v, i: i["params"]["w_h"].shape[0] == 1),
            region(
                "LSTM with |c| > 1",
                lambda v, i: (
                    i["cell"] == "lstm" and bool((np.abs(v[:, v.shape[1] // 2 :]) > 1).any())
                ),
            ),
        ),
    ),
    Arg(
        "params",
        "dict of one cell's canonical weights w_x, w_h, b_x, b_h (reference/recurrent.py)",
        kind="params",
        regions=(
            region(
                "E = N (w_x and w_h of one shape)", lambda v, i: v["w_x"].shape == v["w_h"].shape
            ),
        ),
        entries=_CELL_ENTRIES,
    ),
    CELL_ARG,
)


def _direction_entries() -> tuple[Arg, ...]:
    forward = tuple(Arg(f"forward.{a.name}", a.domain) for a in _CELL_ENTRIES)
    backward = tuple(Arg(f"backward.{a.name}", a.domain) for a in _CELL_ENTRIES)
    dropped = Arg(
        "backward",
        "cell params of the backward direction, or absent (unidirectional)",
        kind="other",
        default=None,
    )
    return forward + (dropped,) + backward


ENCODER_ARGS = (
    Arg(
        "x",
        "float array (B, T, E), every axis >= 1; finite values",
        regions=(
            region("T = 1", lambda v, i: v.shape[1] == 1),
            region("T > 1", lambda v, i: v.shape[1] > 1),
            region("B > 1", lambda v, i: v.shape[0] > 1),
            region("large inputs (|x| >= 1e3: saturated gates)", lambda v, i: _large(v)),
        ),
    ),
    Arg(
        "params",
        "{'forward': cell params[, 'backward': cell params]}: with 'backward' the encoder is "
        "bidirectional; both "
        "directions have one N",
        kind="params",
        regions=(
            region("unidirectional", lambda v, i: "backward" not in v),
            region("bidirectional", lambda v, i: "backward" in v),
            region("E = N", lambda v, i: v["forward"]["w_x"].shape == v["forward"]["w_h"].shape),
        ),
        entries=_direction_entries(),
    ),
    CELL_ARG,
    Arg(
        "lengths",
        "None (every sequence has T steps) or int array (B,), each length in [1, T], in any order; "
        "outputs past a "
        "length are 0 and the backward direction starts at the sequence's last real step",
        kind="int",
        default=None,
        perturb=_one_step_fewer,
        regions=(
            region("None", lambda v, i: v is None),
            region(
                "a length of 1 with T > 1",
                lambda v, i: v is not None and bool((v == 1).any()) and i["x"].shape[1] > 1,
            ),
            region(
                "a length of T", lambda v, i: v is not None and bool((v == i["x"].shape[1]).any())
            ),
            region(
                "a length strictly between 1 and T",
                lambda v, i: v is not None and bool(((v > 1) & (v < i["x"].shape[1])).any()),
            ),
            region(
                "not sorted by length", lambda v, i: v is not None and bool((np.diff(v) > 0).any())
            ),
        ),
    ),
)


RECURRENT_CELL = Component(
    name="recurrent_cell",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="recurrent_cell(x, state, params, cell='gru') -> new state",
    shapes="x (B, E), state (B, N) or LSTM [h | c] (B, 2N), W_x (E, G N), W_h (N, G N) -> like "
    "state",
    error_scale=_cell_scale,
    args=CELL_ARGS,
    draw=_cell_inputs,
    variants=_variants("rnn", "gru", "lstm"),
    gradient=Gradient(wrt=paths("x", "state"), variants=_variants("gru", "lstm")),
    bad_inputs=(
        BadInput("gate_weights_wrong_shape", "GRU w_h (N, 3N - 1)", _bad_gates),
        BadInput("state_size_mismatch", "state (B, N + 1)", _bad_state),
        BadInput("lstm_state_without_c", "LSTM state (B, N): h without c", _bad_lstm_state),
        BadInput("batch_differs", "x (B + 1, E) against state (B, N)", _bad_batch),
        BadInput(
            "unknown_cell", "cell='GRU' (the names are lower case)", _unknown_cell(_cell_inputs)
        ),
    ),
)

_ENCODER_BAD = (
    BadInput("lengths_longer_than_T", "lengths = T + 1", _bad_lengths),
    BadInput("zero_length", "a length of 0 (the domain is [1, T])", _zero_length),
    BadInput("lengths_not_per_item", "lengths (B + 1,)", _lengths_not_per_item),
    BadInput("directions_differ_in_N", "backward N + 1", _bad_directions),
    BadInput("backward_without_forward", "params {'backward': ...} only", _backward_only),
    BadInput(
        "unknown_cell", "cell='GRU' (the names are lower case)", _unknown_cell(encoder_inputs)
    ),
)

RNN_ENCODER = Component(
    name="rnn_encoder",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="rnn_encoder(x, params, cell='gru', lengths=None) -> outputs",
    shapes="x (B, T, E), lengths (B,) -> (B, T, N) or bidirectional (B, T, 2N)",
    error_scale=_encoder_scale,
    args=ENCODER_ARGS,
    draw=encoder_inputs,
    variants=_variants(
        "rnn", "gru", "lstm", "gru+bidirectional", "gru+lengths", "lstm+bidirectional+lengths"
    ),
    gradient=Gradient(wrt=paths("x"), variants=_variants("lstm+bidirectional+lengths")),
    bad_inputs=_ENCODER_BAD,
)

CONTEXT_VECTOR = Component(
    name="context_vector",
    family="recurrent",
    dtypes=DEFAULT_RUN_DTYPES,
    signature="context_vector(x, params, cell='gru', lengths=None) -> final hidden state(s)",
    shapes="x (B, T, E), lengths (B,) -> (B, N) or bidirectional (B, 2N)",
    error_scale=_encoder_scale,
    args=ENCODER_ARGS,
    draw=encoder_inputs,
    variants=_variants("gru", "rnn+lengths", "lstm+bidirectional", "gru+bidirectional+lengths"),
    bad_inputs=_ENCODER_BAD,
)

# Properties beside the differential one (the records' draws give it), registered once the records
# they belong to exist.
prop(RNN_ENCODER, variants=_variants("rnn", "gru", "lstm"))(run_equals_cell_steps)
prop(RNN_ENCODER, variants=_variants("gru+bidirectional+lengths"))(batch_equals_items)
prop(RNN_ENCODER, variants=_variants("lstm+bidirectional+lengths"))(padding_does_not_matter)
prop(RNN_ENCODER, variants=_variants("gru+bidirectional"))(reversal_swaps_directions)
prop(CONTEXT_VECTOR, variants=_variants("gru+bidirectional"), name="size_independent_of_T")(
    context_size_is_fixed
)
prop(CONTEXT_VECTOR, variants=_variants("lstm+bidirectional+lengths"), name="is_encoder_ends")(
    context_is_encoder_ends
)
prop(CONTEXT_VECTOR, variants=_variants("gru+bidirectional+lengths"))(padding_does_not_matter)
