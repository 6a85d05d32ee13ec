"""Spec entries: shift_right (teacher forcing's decoder input) and cross_entropy.

    shift_right(targets (B, T) int, bos, pad) -> (B, T): [BOS] + targets[:-1]; where the target is
        padding the input is padding too.
    cross_entropy(logits (..., V), targets (...) int, ignore_index=-100, label_smoothing=0.0) -> scalar
        mean over positions whose target != ignore_index of -sum_v q(v) log softmax(logits)(v),
        q = (1 - eps) onehot(target) + eps / V: the smoothing mass is uniform over the WHOLE
        vocabulary (the target class included), as torch's label_smoothing and optax's smooth_labels
        put it; ignored positions contribute nothing, smoothing included. All positions ignored: refused.
error_scale for cross_entropy: 1 + max |logit| (a log-sum-exp loses u times the largest logit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import EXACT, DType
from spec.strategies import VOCAB, arrays, seeds, seq_shapes, token_ids

PAD, BOS = 0, 1


def _targets(data: st.DataObject, variant: str | None) -> np.ndarray:
    s = data.draw(seq_shapes(), label="shape")
    targets = data.draw(token_ids(s.B, s.T), label="targets")
    targets = np.where(targets == PAD, 2, targets)  # real tokens are never PAD...
    if variant == "padded":  # ...except in each sequence's padded tail
        lengths = np.random.default_rng(data.draw(seeds(), label="len_seed")).integers(1, s.T + 1, s.B)
        targets = np.where(np.arange(s.T)[None, :] < lengths[:, None], targets, PAD)
    return targets


def _shift_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    return {"targets": _targets(data, variant), "bos": BOS, "pad": PAD}


def bos_first_last_dropped(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Input position 0 is BOS and input t is target t - 1 wherever the target is not padding."""
    inputs = _shift_inputs(data, subject.dtype, variant)
    got, targets = subject.case(inputs).got, inputs["targets"]
    real = targets != PAD
    if not (got[:, 0][real[:, 0]] == BOS).all():
        subject.fail(inputs, f"first input tokens {got[:, 0].tolist()}; expected BOS={BOS}")
    if not (got[:, 1:][real[:, 1:]] == targets[:, :-1][real[:, 1:]]).all():
        subject.fail(inputs, f"inputs {got.tolist()} are not the targets {targets.tolist()} shifted right by one")


SHIFT_RIGHT = Component(
    name="shift_right",
    family="training",
    signature="shift_right(targets, bos, pad) -> decoder inputs",
    shapes="targets (B, T) int -> (B, T) int",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    properties=(
        matches_reference(_shift_inputs, (None, "padded"), (EXACT,)),
        Property("bos_first_last_dropped", bos_first_last_dropped.__doc__, bos_first_last_dropped, (None, "padded"), (EXACT,)),
    ),
    bad_inputs=(
        BadInput(
            "targets_not_2d", "targets (T,)", lambda data, dtype: {**_shift_inputs(data, dtype, None), "targets": np.arange(3)}
        ),
    ),
)


def _ce_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    targets = _targets(data, "padded" if variant and "padded" in variant else None)
    # realistic logits: with |logit| ~ 1e4 in float16 both torch and jax overflow summing the losses
    logits = data.draw(arrays(targets.shape + (VOCAB,), dtype, allow_large=False), label="logits")
    smoothing = 0.1 if variant and "smoothing" in variant else 0.0
    ignore = PAD if variant and "padded" in variant else -100
    return {"logits": logits, "targets": targets, "ignore_index": ignore, "label_smoothing": smoothing}


def ignored_positions_do_not_matter(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Changing the logits at ignored (padding) positions leaves the loss unchanged."""
    inputs = _ce_inputs(data, subject.dtype, variant)
    ignored = inputs["targets"] == inputs["ignore_index"]  # (...,)
    noise = (10 * np.random.default_rng(data.draw(seeds(), label="noise_seed")).standard_normal(inputs["logits"].shape)).astype(
        inputs["logits"].dtype
    )
    other = {**inputs, "logits": np.where(ignored[..., None], noise, inputs["logits"])}
    base = subject.case(inputs)
    base.assert_equivalent(base.got, subject.case(other), "loss after rewriting the logits of ignored positions")


CE_VARIANTS = ("plain", "smoothing", "padded", "padded+smoothing")

CROSS_ENTROPY = Component(
    name="cross_entropy",
    family="training",
    signature="cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0) -> mean loss",
    shapes="logits (B, T, V), targets (B, T) int -> ()",
    error_scale=lambda inputs: 1.0 + float(np.abs(inputs["logits"].astype(np.float64)).max()),
    properties=(
        matches_reference(_ce_inputs, CE_VARIANTS),
        Property(
            "ignored_positions_do_not_matter",
            ignored_positions_do_not_matter.__doc__,
            ignored_positions_do_not_matter,
            ("padded", "padded+smoothing"),
        ),
    ),
    bad_inputs=(
        BadInput(
            "target_out_of_range",
            f"a target of V = {VOCAB}",
            lambda data, dtype: (
                lambda i: {
                    **i,
                    "targets": np.where(np.arange(i["targets"].size).reshape(i["targets"].shape) == 0, VOCAB, i["targets"]),
                }
            )(_ce_inputs(data, dtype, "plain")),
        ),
        BadInput(
            "targets_shape_mismatch",
            "targets with T + 1 positions",
            lambda data, dtype: (lambda i: {**i, "targets": np.concatenate([i["targets"], i["targets"][:, :1]], axis=1)})(
                _ce_inputs(data, dtype, "plain")
            ),
        ),
    ),
)
