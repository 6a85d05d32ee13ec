"""Argument domains of the seq2seq family's records (spec/seq2seq.py; spec/domains.py states what
a domain is)."""

from __future__ import annotations

from typing import Any

import numpy as np

from spec.domains import Arg, equals, region
from spec.strategies import VOCAB


def _large(v: Any) -> bool:
    return v is not None and float(np.abs(v.astype(np.float64)).max()) >= 1e3


def _one_fewer(lengths: Any, inputs: Any) -> Any:
    """Every length above 1 one position shorter (stays in [1, S]); None when all are 1."""
    return np.where(lengths > 1, lengths - 1, lengths) if (lengths > 1).any() else None


def _next_token(tokens: Any, inputs: Any) -> Any:
    """Every id one higher, modulo V (stays in [0, V))."""
    return (np.asarray(tokens) + 1) % VOCAB


def _state_arg(name: str, domain: str) -> Arg:
    return Arg(
        name,
        domain,
        regions=(
            region("zero (a decoder started from 0)", lambda v, i: not v.any()),
            region("nonzero", lambda v, i: bool(v.any())),
        ),
    )


_SOURCE_MASK = Arg(
    "mask",
    "None (every position real) or bool (B, S), True = a real source position; a row with no real "
    "position gets "
    "all-zero weights (the suite's fully-masked convention); any other shape or dtype is refused",
    kind="mask",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "padding (a False in a row that has a True)",
            lambda v, i: v is not None and bool((~v & v.any(-1, keepdims=True)).any()),
        ),
        region("a row with no real position", lambda v, i: v is not None and not v.any(-1).all()),
        region(
            "B > 1 with rows of different lengths",
            lambda v, i: v is not None and len(set(v.sum(-1).tolist())) > 1,
        ),
    ),
)
_ENCODER_STATES = Arg(
    "h",
    "float array (B, S, Dh) with the state's B, S >= 1, Dh >= 1 (2 N_enc for a bidirectional "
    "encoder); finite values",
    regions=(
        region("S = 1", lambda v, i: v.shape[1] == 1),
        region("S > 1", lambda v, i: v.shape[1] > 1),
        region("large states (|h| >= 1e3)", lambda v, i: _large(v)),
    ),
)
ADDITIVE_ARGS = (
    _state_arg("s_prev", "float array (B, N), the decoder's previous state s_{i-1}; finite values"),
    _ENCODER_STATES,
    Arg(
        "params",
        "dict w (N, A), u (Dh, A), v (A,): the scoring network e_ij = v . tanh(s_{i-1} W + h_j U), "
        "A >= 1",
        kind="params",
        regions=(
            region("A = 1", lambda v, i: v["v"].shape == (1,)),
            region("N = Dh (w and u of one shape)", lambda v, i: v["w"].shape == v["u"].shape),
        ),
        entries=(
            Arg("w", "float array (N, A): the decoder-state weights"),
            Arg("u", "float array (Dh, A): the encoder-state weights"),
            Arg("v", "float array (A,): the score vector"),
        ),
    ),
    _SOURCE_MASK,
)
MULTIPLICATIVE_ARGS = (
    _state_arg("s", "float array (B, N), the decoder's current state s_t; finite values"),
    _ENCODER_STATES,
    Arg(
        "params",
        "dict of the score's weights: dot none ({}), general w (N, Dh), concat w (N + Dh, A) and v "
        "(A,)",
        kind="params",
        entries=(
            Arg("w", "float array: general (N, Dh), concat (N + Dh, A); absent for dot"),
            Arg("v", "float array (A,): concat's score vector; absent otherwise"),
        ),
    ),
    Arg(
        "score",
        "'dot' (s . h_j, needs N = Dh), 'general' (s W h_j) or 'concat' (v . tanh([s; h_j] W)); "
        "anything else is refused",
        kind="choice",
        default="dot",
        choices=("dot", "general", "concat"),
        regions=tuple(region(c, equals(c)) for c in ("dot", "general", "concat")),
    ),
    _SOURCE_MASK,
)


def _row_sums(i: Any) -> np.ndarray:
    return i["weights"].astype(np.float64).sum(-1)


CONTEXT_ARGS = (
    Arg(
        "weights",
        "float array (B, S), any finite reals (the context is sum_j alpha_j h_j); attention gives "
        "each row a "
        "distribution over the real positions, or zeros for a fully padded source",
        regions=(
            region(
                "a one-hot row (hard attention)",
                lambda v, i: bool(((v == 1).sum(-1) == 1).any()) and v.shape[1] > 1,
            ),
            region(
                "a uniform row over S > 1 positions",
                lambda v, i: v.shape[1] > 1 and bool((np.ptp(v, -1) == 0).any()) and bool(v.any()),
            ),
            region(
                "zeros at padded positions",
                lambda v, i: bool(((v == 0) & (v.sum(-1, keepdims=True) != 0)).any()),
            ),
            region("a row of zeros", lambda v, i: not v.any(-1).all()),
            region("not a distribution (negative weights)", lambda v, i: bool((v < 0).any())),
        ),
    ),
    Arg(
        "h",
        "float array (B, S, Dh) with the weights' (B, S); finite values",
        regions=(
            region("S = 1", lambda v, i: v.shape[1] == 1),
            region("large states (|h| >= 1e3)", lambda v, i: _large(v)),
        ),
    ),
)
HIDDEN_ARGS = (
    Arg(
        "context",
        "float array (B, Dh); finite values",
        regions=(
            region("zero (a fully padded source)", lambda v, i: not v.any()),
            region("large (|c| >= 1e3: the tanh saturates)", lambda v, i: _large(v)),
        ),
    ),
    Arg(
        "s",
        "float array (B, N) with the context's B; finite values",
        regions=(
            region("N = Dh", lambda v, i: v.shape == i["context"].shape),
            region("N < Dh", lambda v, i: v.shape[1] < i["context"].shape[1]),
        ),
    ),
    Arg("w_c", "float array (Dh + N, N): rows for the context first, then for the state"),
)

_CELL = (
    "cell.w_x (input M + Dh for bahdanau, M for luong, 3N), cell.w_h (N, 3N), cell.b_x, "
    "cell.b_h (3N,): a GRU"
)
_DECODER_ENTRIES = (
    Arg("embedding", "float array (V, M): the target embedding"),
    Arg(
        "cell.w_x",
        "float array (M + Dh for bahdanau, M for luong, 3N): the GRU's input weights (gates z, r, "
        "n)",
    ),
    Arg("cell.w_h", "float array (N, 3N): the GRU's recurrent weights"),
    Arg("cell.b_x", "float array (3N,)"),
    Arg("cell.b_h", "float array (3N,)"),
    Arg(
        "attention.w",
        "float array: the score's w (additive (N, A), general (N, Dh), concat (N + Dh, A)); absent "
        "for dot",
    ),
    Arg("attention.u", "float array (Dh, A): additive only"),
    Arg("attention.v", "float array (A,): additive and concat"),
    Arg("w_out", "float array (N + Dh for bahdanau, N for luong, V)"),
    Arg("b_out", "float array (V,)"),
    Arg("w_c", "float array (Dh + N, N): luong only (the attentional hidden state)"),
)
_DECODER_PARAMS = Arg(
    "params",
    "dict embedding, cell, attention, w_out, b_out[, w_c]: "
    + _CELL
    + "; the score's params as in the weights components",
    kind="params",
    entries=_DECODER_ENTRIES,
)
_ATTENTION_ARG = Arg(
    "attention",
    "'bahdanau' (additive, from s_{i-1}, [s_i; c] to the output) or 'luong_dot' / 'luong_general' "
    "/ 'luong_concat' "
    "(from s_t, through tanh([c; s_t] W_c)); anything else is refused",
    kind="choice",
    default="bahdanau",
    choices=("bahdanau", "luong_dot", "luong_general", "luong_concat"),
    regions=tuple(
        region(c, equals(c)) for c in ("bahdanau", "luong_dot", "luong_general", "luong_concat")
    ),
)
_MEMORY = Arg(
    "memory",
    "float array (B, S, Dh), the encoder states, S >= 1; finite values",
    regions=(
        region("S = 1", lambda v, i: v.shape[1] == 1),
        region("S > 1", lambda v, i: v.shape[1] > 1),
    ),
)
_S0 = _state_arg("s0", "float array (B, N), the decoder's initial state; finite values")
_SRC_LENGTHS = Arg(
    "src_lengths",
    "None (every source position real) or int array (B,), each in [1, S]: positions from a length "
    "on are padding",
    kind="int",
    default=None,
    perturb=_one_fewer,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "a length of 1 with S > 1",
            lambda v, i: v is not None and bool((v == 1).any()) and i["memory"].shape[1] > 1,
        ),
        region(
            "a length of S", lambda v, i: v is not None and bool((v == i["memory"].shape[1]).any())
        ),
        region(
            "a length strictly between",
            lambda v, i: v is not None and bool(((v > 1) & (v < i["memory"].shape[1])).any()),
        ),
    ),
)
DECODER_ARGS = (
    Arg(
        "tgt_in",
        f"int array (B, T) of ids in [0, V) (V = {VOCAB} here), T >= 1: shift_right(targets), step "
        "t is fed tgt_in[:, t]",
        kind="tokens",
        perturb=_next_token,
        regions=(
            region("T = 1", lambda v, i: v.shape[1] == 1),
            region("T > 1", lambda v, i: v.shape[1] > 1),
            region("id 0", lambda v, i: bool((v == 0).any())),
            region("id V - 1", lambda v, i: bool((v == VOCAB - 1).any())),
        ),
    ),
    _MEMORY,
    _S0,
    _DECODER_PARAMS,
    _ATTENTION_ARG,
    _SRC_LENGTHS,
)
FREE_ARGS = (
    _MEMORY,
    _S0,
    _DECODER_PARAMS,
    _ATTENTION_ARG,
    Arg(
        "bos",
        "int in [0, V): the token fed at step 0",
        kind="int",
        default=1,
        perturb=lambda v, i: (v + 1) % VOCAB,
        regions=(
            region("1 (the default, written out)", lambda v, i: v == 1),
            region("0", lambda v, i: v == 0),
            region("V - 1", lambda v, i: v == VOCAB - 1),
            region("another id", lambda v, i: v not in (0, 1, VOCAB - 1)),
        ),
    ),
    Arg(
        "steps",
        "int >= 1: the number of steps decoded",
        kind="int",
        default=1,
        regions=(region("1", lambda v, i: v == 1), region("> 1", lambda v, i: v > 1)),
    ),
    _SRC_LENGTHS,
)
