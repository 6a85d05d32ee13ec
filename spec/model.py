"""Spec entry: encoder_decoder(src_tokens, tgt_in, params, num_heads, src_lengths=None, norm_first=False,
activation="relu", eps=1e-5) -> log-probabilities (B, T, V); see reference/model.py for the layout.

Teacher forcing: tgt_in = shift_right(targets), so the log-probs at step t may depend on tgt_in[:t+1]
(targets before t) only. Properties: rows are log-distributions; (a) changing the decoder input after
step t leaves steps <= t unchanged; (b) decoding step by step, re-running the growing prefix, gives the
parallel teacher-forced log-probs. The key/value-cache variant of (b) is the component
incremental_decoder (spec/stacks.py): cached step-by-step decoding equals the parallel decoder, and the
log-probs are a per-position function of the decoder output (tied projection, log-softmax).
error_scale: (1 + max|logp|) times the number of sublayers (see spec/stacks.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.stacks import STACK_BUCKETS, StackShape, layer_params
from spec.strategies import VOCAB, arrays, seeds, token_ids
from spec.tolerance import compare


def _model_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    variant = variant or "post_ln"
    s: StackShape = data.draw(st.sampled_from(STACK_BUCKETS), label="shape")
    params: dict[str, Any] = {
        "src_table": data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="src_table"),
        "tgt_table": data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="tgt_table"),
        "encoder": [data.draw(layer_params(s.D, dtype, decoder=False), label="encoder_layer")],
        "decoder": [data.draw(layer_params(s.D, dtype, decoder=True), label="decoder_layer")],
    }
    if variant.startswith("pre_ln"):
        for name in ("encoder_norm", "decoder_norm"):
            params[name] = {"gamma": np.ones(s.D, dtype.np_dtype), "beta": np.zeros(s.D, dtype.np_dtype)}
    inputs: dict[str, Any] = {
        "src_tokens": data.draw(token_ids(s.B, s.S), label="src_tokens"),
        "tgt_in": data.draw(token_ids(s.B, s.T), label="tgt_in"),
        "params": params,
        "num_heads": s.H,
        "norm_first": variant.startswith("pre_ln"),
    }
    if "src_padding" in variant:
        inputs["src_lengths"] = np.random.default_rng(data.draw(seeds(), label="len_seed")).integers(1, s.S + 1, s.B)
    return inputs


def _scale(inputs: dict[str, Any]) -> float:
    from reference.model import encoder_decoder
    from spec.tolerance import cast_floats

    out = encoder_decoder(**cast_floats(inputs, np.dtype(np.float64)))
    return (1.0 + float(np.abs(out).max())) * 5  # 2 encoder + 3 decoder sublayers


def log_probs_are_normalised(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """exp(log-probs) sums to 1 over the vocabulary at every position, and log-probs are <= 0."""
    case = subject.case(_model_inputs(data, subject.dtype, variant))
    logp = case.got.astype(np.float64)
    if (logp > case.bound.allowed).any():
        subject.fail(case.inputs, f"a log-probability is positive: {logp.max():.6g}")
    sums = np.exp(logp).sum(-1)  # (B, T)
    # d exp(l) = exp(l) dl: the sum moves by at most sum_v p_v * bound = bound
    subject.check(
        compare(sums, np.ones_like(sums), case.bound.times(2), "sum over the vocabulary of exp(log-probs)"), case.inputs
    )


def later_inputs_do_not_matter(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """(a) Changing the decoder input after step t (targets at positions >= t) leaves steps <= t unchanged."""
    inputs = _model_inputs(data, subject.dtype, variant)
    tgt = inputs["tgt_in"]
    t = data.draw(st.integers(0, tgt.shape[1] - 1), label="t")
    other = tgt.copy()
    other[:, t + 1 :] = (
        other[:, t + 1 :]
        + 1
        + np.random.default_rng(data.draw(seeds(), label="seed")).integers(0, VOCAB - 1, other[:, t + 1 :].shape)
    ) % VOCAB
    base = subject.case(inputs)
    upto = (np.arange(tgt.shape[1]) <= t)[None, :, None]  # (1, T, 1)
    base.assert_equivalent(
        base.got, subject.case({**inputs, "tgt_in": other}), f"steps <= {t} after changing later decoder inputs", select=upto
    )


def step_by_step_equals_parallel(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """(b) Step-by-step decoding fed the ground-truth prefix (re-running it each step) equals the
    parallel teacher-forced pass at every step."""
    inputs = _model_inputs(data, subject.dtype, variant)
    parallel = subject.case(inputs)
    for t in range(inputs["tgt_in"].shape[1]):
        step = subject.case({**inputs, "tgt_in": inputs["tgt_in"][:, : t + 1]})
        parallel.assert_equivalent(parallel.got[:, t : t + 1], _last(step), f"step {t} decoded alone vs in parallel")


def _last(case: Any) -> Any:
    """A view of a case whose output is its last position only (the step just decoded)."""

    class Last:
        bound = case.bound

        @property
        def got(self) -> np.ndarray:
            return case.got[:, -1:]

    return Last()


ENCODER_DECODER = Component(
    name="encoder_decoder",
    family="model",
    signature=(
        "encoder_decoder(src_tokens, tgt_in, params, num_heads, src_lengths=None, norm_first=False, activation='relu', eps=1e-5)"
    ),
    shapes="src_tokens (B, S), tgt_in (B, T) int -> log-probs (B, T, V)",
    error_scale=_scale,
    properties=(
        matches_reference(_model_inputs, ("post_ln", "pre_ln", "post_ln+src_padding")),
        Property("log_probs_are_normalised", log_probs_are_normalised.__doc__, log_probs_are_normalised),
        Property(
            "later_inputs_do_not_matter", later_inputs_do_not_matter.__doc__, later_inputs_do_not_matter, ("post_ln", "pre_ln")
        ),
        # float64 and float32: T + 1 runs of the whole model per example, each prefix a new jax shape
        Property(
            "step_by_step_equals_parallel",
            step_by_step_equals_parallel.__doc__,
            step_by_step_equals_parallel,
            (None,),
            (FLOAT64, FLOAT32),
        ),
    ),
    bad_inputs=(
        BadInput(
            "token_id_equals_V",
            f"a target-side id of V = {VOCAB}",
            lambda data, dtype: (lambda i: {**i, "tgt_in": np.full_like(i["tgt_in"], VOCAB)})(_model_inputs(data, dtype, None)),
        ),
    ),
)
