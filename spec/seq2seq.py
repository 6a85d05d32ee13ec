"""Spec entries: additive_attention_weights (Bahdanau), multiplicative_attention_weights (Luong dot /
general / concat), attention_context, attentional_hidden, attention_decoder (teacher forcing) and
free_running_decoder (formulas in reference/seq2seq.py).

mask (B, S) bool, True = a real source position. Properties: weights are distributions with padded
positions at exactly 0; with the scoring network blind to the decoder state (W = 0) Bahdanau's weights
are the same for every state; a context lies within the per-coordinate range of the encoder states;
feeding the teacher-forced decoder the free-running output reproduces the free-running logits; the
free-running logits equal the oracle's teacher-forced logits on the tokens the adapter chose (robust to
near-ties: an argmax is never compared across implementations).
error_scale: weights 1 + the largest |score| bound; context max|h|; decoders (1 + max|logit|) x steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from reference.seq2seq import attention_decoder
from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import DType
from spec.recurrent import DEFAULT_RUN_DTYPES, cell_params
from spec.strategies import VOCAB, arrays, normal_params, seeds, token_ids
from spec.tolerance import cast_floats, compare


class AttnShape(NamedTuple):
    B: int
    S: int
    N: int
    Dh: int
    A: int


ATTN_BUCKETS = (AttnShape(1, 1, 3, 3, 2), AttnShape(2, 5, 4, 4, 3), AttnShape(3, 4, 4, 6, 5))


def _abs(a: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64))


def _mask(data: st.DataObject, B: int, S: int) -> np.ndarray:
    lengths = np.random.default_rng(data.draw(seeds(), label="len_seed")).integers(1, S + 1, B)
    return np.arange(S)[None, :] < lengths[:, None]  # (B, S): at least one real position per row


def _score_params(data: st.DataObject, s: AttnShape, score: str, dtype: DType) -> dict[str, np.ndarray]:
    shapes = {
        "additive": {"w": (s.N, s.A), "u": (s.Dh, s.A), "v": (s.A,)},
        "general": {"w": (s.N, s.Dh)},
        "concat": {"w": (s.N + s.Dh, s.A), "v": (s.A,)},
        "dot": {},
    }[score]
    return data.draw(normal_params(shapes, dtype), label=f"{score}_params") if shapes else {}


def _weights_inputs(component: str) -> Any:
    def draw(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
        variant = variant or ""
        score = "additive" if component.startswith("additive") else variant.split("+")[0]
        s: AttnShape = data.draw(st.sampled_from(ATTN_BUCKETS), label="shape")
        if score == "dot":
            s = s._replace(Dh=s.N)
        state = data.draw(arrays((s.B, s.N), dtype, allow_large=False), label="s")
        inputs: dict[str, Any] = {"s_prev" if score == "additive" else "s": state}
        inputs["h"] = data.draw(arrays((s.B, s.S, s.Dh), dtype, allow_large=False), label="h")
        inputs["params"] = _score_params(data, s, score, dtype)
        if score != "additive":
            inputs["score"] = score
        if "padding" in variant:
            inputs["mask"] = _mask(data, s.B, s.S)
        return inputs

    return draw


def _weights_scale(inputs: dict[str, Any]) -> float:
    """1 + a bound on |score|: sum |v| through a tanh, else |s| |W| |h|."""
    p, h = inputs["params"], _abs(inputs["h"])
    s = _abs(inputs.get("s", inputs.get("s_prev")))
    if "v" in p:
        return 1.0 + float(_abs(p["v"]).sum())
    sw = s @ _abs(p["w"]) if "w" in p else s  # (B, Dh)
    return 1.0 + float((sw[:, None, :] * h).sum(-1).max())


def weights_are_distributions(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Weights over the source sum to 1 and padded source positions get exactly 0."""
    case = subject.case(_weights_inputs(subject.component.name)(data, subject.dtype, variant))
    w = case.got.astype(np.float64)
    mask = case.inputs.get("mask", np.ones(w.shape, bool))
    if (w[~mask] != 0).any():
        subject.fail(case.inputs, f"padded source positions got weight {w[~mask][w[~mask] != 0][:3].tolist()}, not 0")
    sums = w.sum(-1)  # (B,)
    subject.check(
        compare(sums, np.ones_like(sums), case.bound.times(w.shape[1]), "sum of the weights over the source"), case.inputs
    )


def state_blind_scores_give_fixed_weights(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """With W = 0, e_ij = v^T tanh(h_j U) does not depend on s_{i-1}: every decoder state gets the same weights."""
    inputs = _weights_inputs(subject.component.name)(data, subject.dtype, variant)
    inputs["params"] = {**inputs["params"], "w": np.zeros_like(inputs["params"]["w"])}
    other = data.draw(arrays(inputs["s_prev"].shape, subject.dtype, allow_large=False), label="other_s_prev")
    base = subject.case(inputs)
    base.assert_equivalent(base.got, subject.case({**inputs, "s_prev": other}), "weights for another decoder state (W = 0)")


def _context_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    s: AttnShape = data.draw(st.sampled_from(ATTN_BUCKETS), label="shape")
    mask = _mask(data, s.B, s.S)
    logits = np.random.default_rng(data.draw(seeds(), label="weights_seed")).standard_normal((s.B, s.S)) * 2
    w = np.where(mask, np.exp(logits), 0.0)
    return {
        "weights": (w / w.sum(-1, keepdims=True)).astype(dtype.np_dtype),
        "h": data.draw(arrays((s.B, s.S, s.Dh), dtype, allow_large=False), label="h"),
    }


def context_within_range(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """A context is a convex combination: each coordinate lies within the range of the encoder states
    it weights (positions of nonzero weight), up to the policy's bound."""
    case = subject.case(_context_inputs(data, subject.dtype, variant))
    h, w = case.inputs["h"].astype(np.float64), case.inputs["weights"].astype(np.float64)
    seen = (w > 0)[..., None]  # (B, S, 1)
    lo, hi = np.where(seen, h, np.inf).min(1), np.where(seen, h, -np.inf).max(1)  # (B, Dh)
    got = case.got.astype(np.float64)
    clipped = np.clip(got, lo, hi)
    subject.check(compare(got, clipped, case.bound, "context vs the per-coordinate range of the weighted states"), case.inputs)


def _hidden_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    s: AttnShape = data.draw(st.sampled_from(ATTN_BUCKETS), label="shape")
    return {
        "context": data.draw(arrays((s.B, s.Dh), dtype, allow_large=False), label="context"),
        "s": data.draw(arrays((s.B, s.N), dtype, allow_large=False), label="s"),
        "w_c": data.draw(normal_params({"w_c": (s.Dh + s.N, s.N)}, dtype), label="w_c")["w_c"],
    }


def decoder_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """Inputs of attention_decoder (tgt_in) or, with free=True via the caller, free_running_decoder."""
    variant = variant or "bahdanau"
    attention = variant.split("+")[0]
    score = "additive" if attention == "bahdanau" else attention.removeprefix("luong_")
    s: AttnShape = data.draw(st.sampled_from(ATTN_BUCKETS), label="shape")
    if score == "dot":
        s = s._replace(Dh=s.N)
    M = 4
    T = data.draw(st.integers(1, 4), label="T")
    params: dict[str, Any] = {
        "embedding": data.draw(normal_params({"e": (VOCAB, M)}, dtype, {"e": 1.0}), label="embedding")["e"],
        "cell": data.draw(cell_params(M + s.Dh if score == "additive" else M, s.N, "gru", dtype), label="cell"),
        "attention": _score_params(data, s, score, dtype),
    }
    out = {"w_out": (s.N + s.Dh if score == "additive" else s.N, VOCAB), "b_out": (VOCAB,)}
    params.update(data.draw(normal_params(out, dtype, {"b_out": 0.1}), label="output"))
    if score != "additive":
        params["w_c"] = data.draw(normal_params({"w_c": (s.Dh + s.N, s.N)}, dtype), label="w_c")["w_c"]
    inputs: dict[str, Any] = {
        "tgt_in": data.draw(token_ids(s.B, T), label="tgt_in"),
        "memory": data.draw(arrays((s.B, s.S, s.Dh), dtype, allow_large=False), label="memory"),
        "s0": data.draw(arrays((s.B, s.N), dtype, allow_large=False), label="s0"),
        "params": params,
        "attention": attention,
    }
    if "padding" in variant:
        inputs["src_lengths"] = _mask(data, s.B, s.S).sum(-1)
    return inputs


def _free_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    inputs = decoder_inputs(data, dtype, variant)
    steps = inputs.pop("tgt_in").shape[1]
    return {**inputs, "bos": 1, "steps": steps}


def _decoder_scale(inputs: dict[str, Any]) -> float:
    fn = attention_decoder
    if "tgt_in" not in inputs:
        from reference.seq2seq import free_running_decoder as fn
    out = fn(**cast_floats(inputs, np.dtype(np.float64)))
    return (1.0 + float(np.abs(out).max())) * out.shape[1]


def _teacher_forced_on_own_tokens(subject: Subject, inputs: dict[str, Any]) -> tuple[Any, Any]:
    """(free-running case, teacher-forced case fed BOS + the free run's own argmax tokens)."""
    free = subject.case(inputs)
    chosen = np.argmax(free.got.astype(np.float64), axis=-1)  # (B, steps): first index on ties, as the adapter
    tgt_in = np.concatenate([np.full((chosen.shape[0], 1), inputs["bos"]), chosen[:, :-1]], axis=1).astype(np.int64)
    forced = {k: v for k, v in inputs.items() if k not in ("bos", "steps")}
    return free, subject.sibling("attention_decoder").case({**forced, "tgt_in": tgt_in})


def free_running_matches_oracle(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """The free-running logits equal the oracle's teacher-forced logits on the tokens the adapter chose
    (so an implementation that feeds back anything but its own argmax is caught)."""
    free, forced = _teacher_forced_on_own_tokens(subject, _free_inputs(data, subject.dtype, variant))
    subject.check(
        compare(free.got, forced.expected, forced.bound, "free-running logits vs the oracle on its own tokens"), free.inputs
    )


def teacher_forcing_own_output(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Teacher-forced decoding with ground truth equal to the free-running output gives the free-running logits."""
    free, forced = _teacher_forced_on_own_tokens(subject, _free_inputs(data, subject.dtype, variant))
    subject.check(compare(free.got, forced.got, forced.bound.times(2), "free-running vs teacher-forced logits"), free.inputs)


def _with(draw: Any, **changes: Any) -> Any:
    def bad(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = draw(data, dtype, None)
        return {**inputs, **{k: f(inputs) for k, f in changes.items()}}

    return bad


_ATTENTIONS = ("bahdanau", "luong_dot", "luong_general", "luong_concat")
_wider_s0 = _with(decoder_inputs, s0=lambda i: np.concatenate([i["s0"], i["s0"][:, :1]], axis=1))  # (B, N + 1)

ADDITIVE_ATTENTION_WEIGHTS = Component(
    name="additive_attention_weights",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="additive_attention_weights(s_prev, h, params, mask=None) -> alpha",
    shapes="s_prev (B, N), h (B, S, Dh), W (N, A), U (Dh, A), v (A,), mask (B, S) -> (B, S)",
    error_scale=_weights_scale,
    properties=(
        matches_reference(_weights_inputs("additive"), (None, "padding")),
        Property("weights_are_distributions", weights_are_distributions.__doc__, weights_are_distributions, ("padding",)),
        Property("state_blind_scores", state_blind_scores_give_fixed_weights.__doc__, state_blind_scores_give_fixed_weights),
    ),
    bad_inputs=(
        BadInput(
            "w_rows_differ_from_N",
            "W (N + 1, A)",
            _with(
                _weights_inputs("additive"),
                params=lambda i: {**i["params"], "w": np.concatenate([i["params"]["w"], i["params"]["w"][:1]])},
            ),
        ),
    ),
)

MULTIPLICATIVE_ATTENTION_WEIGHTS = Component(
    name="multiplicative_attention_weights",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="multiplicative_attention_weights(s, h, params, score='dot', mask=None) -> alpha",
    shapes="s (B, N), h (B, S, Dh), general W (N, Dh), concat W (N + Dh, A), v (A,) -> (B, S)",
    error_scale=_weights_scale,
    properties=(
        matches_reference(_weights_inputs("multiplicative"), ("dot", "general", "concat", "general+padding")),
        Property(
            "weights_are_distributions",
            weights_are_distributions.__doc__,
            weights_are_distributions,
            ("dot+padding", "concat+padding"),
        ),
    ),
    bad_inputs=(
        BadInput(
            "dot_needs_N_equal_Dh",
            "dot score, h (B, S, N + 1)",
            _with(
                lambda d, t, v: _weights_inputs("multiplicative")(d, t, "dot"),
                h=lambda i: np.concatenate([i["h"], i["h"][..., :1]], axis=-1),
            ),
        ),
    ),
)

ATTENTION_CONTEXT = Component(
    name="attention_context",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="attention_context(weights, h) -> sum_j alpha_j h_j",
    shapes="weights (B, S), h (B, S, Dh) -> (B, Dh)",
    error_scale=lambda inputs: float(_abs(inputs["h"]).max()),
    properties=(
        matches_reference(_context_inputs),
        Property("within_range", context_within_range.__doc__, context_within_range),
    ),
    bad_inputs=(
        BadInput(
            "h_length_differs",
            "h (B, S + 1, Dh)",
            _with(_context_inputs, h=lambda i: np.concatenate([i["h"], i["h"][:, :1]], axis=1)),
        ),
    ),
)

ATTENTIONAL_HIDDEN = Component(
    name="attentional_hidden",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="attentional_hidden(context, s, w_c) -> tanh([c; s] W_c)",
    shapes="context (B, Dh), s (B, N), W_c (Dh + N, N) -> (B, N)",
    error_scale=lambda i: 1.0 + float((np.concatenate([_abs(i["context"]), _abs(i["s"])], 1) @ _abs(i["w_c"])).max()),
    properties=(matches_reference(_hidden_inputs),),
    bad_inputs=(BadInput("w_c_wrong_shape", "W_c (Dh + N - 1, N)", _with(_hidden_inputs, w_c=lambda i: i["w_c"][1:])),),
)

ATTENTION_DECODER = Component(
    name="attention_decoder",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="attention_decoder(tgt_in, memory, s0, params, attention='bahdanau', src_lengths=None) -> logits",
    shapes="tgt_in (B, T) int, memory (B, S, Dh), s0 (B, N) -> (B, T, V)",
    error_scale=_decoder_scale,
    properties=(matches_reference(decoder_inputs, _ATTENTIONS + ("bahdanau+padding", "luong_general+padding")),),
    bad_inputs=(
        BadInput("s0_size_mismatch", "s0 (B, N + 1)", _wider_s0),
        BadInput(
            "token_id_equals_V", f"tgt_in = V = {VOCAB}", _with(decoder_inputs, tgt_in=lambda i: np.full_like(i["tgt_in"], VOCAB))
        ),
    ),
)

FREE_RUNNING_DECODER = Component(
    name="free_running_decoder",
    family="seq2seq",
    dtypes=DEFAULT_RUN_DTYPES,  # as spec/recurrent.py explains
    signature="free_running_decoder(memory, s0, params, attention='bahdanau', bos=1, steps=1, src_lengths=None) -> logits",
    shapes="memory (B, S, Dh), s0 (B, N) -> (B, steps, V)",
    error_scale=_decoder_scale,
    properties=(
        Property("matches_oracle_on_own_tokens", free_running_matches_oracle.__doc__, free_running_matches_oracle, _ATTENTIONS),
        Property(
            "teacher_forcing_own_output",
            teacher_forcing_own_output.__doc__,
            teacher_forcing_own_output,
            ("bahdanau+padding", "luong_concat"),
        ),
    ),
    bad_inputs=(
        BadInput(
            "s0_size_mismatch",
            "s0 (B, N + 1)",
            _with(_free_inputs, s0=lambda i: np.concatenate([i["s0"], i["s0"][:, :1]], axis=1)),
        ),
    ),
)
