"""Spec entries: shift_right (teacher forcing's decoder input) and cross_entropy.

    shift_right(targets (B, T) int, bos, pad) -> (B, T): [BOS] + targets[:-1]; where the target is
        padding the input is padding too. bos and pad are any ints, equal to each other or not.
    cross_entropy(logits (..., V), targets (...) int, ignore_index=-100, label_smoothing=0.0)
        -> scalar: mean over positions whose target != ignore_index of
        -sum_v q(v) log softmax(logits)(v), q = (1 - eps) onehot(target) + eps / V: the smoothing
        mass is uniform over the WHOLE vocabulary (the target class included), as torch's
        label_smoothing and optax's smooth_labels put it; ignored positions contribute nothing,
        smoothing included. ignore_index may be a real class (padding id 0) or any other int. All
        positions ignored: refused.
error_scale for cross_entropy: 1 + max |logit| (a log-sum-exp loses u times the largest logit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, region
from spec.dtypes import EXACT, DType
from spec.strategies import VOCAB, arrays, seeds, seq_shapes, token_ids

PAD, BOS = 0, 1
# (bos, pad): the usual ids (twice as likely), bos equal to pad, other ids, a negative pad
SHIFT_IDS = ((BOS, PAD), (BOS, PAD), (0, 0), (2, 10), (3, -1))


@dataclass(frozen=True)
class Labels:
    """A training variant: whether the targets end in padded tails (``padded``: the loss ignores
    them) and whether cross_entropy smooths its labels (``smoothing``). Its str is the test id's
    ("plain", "smoothing", "padded", "padded+smoothing")."""

    padded: bool = False
    smoothing: bool = False

    def __str__(self) -> str:
        on = [
            name for name, flag in (("padded", self.padded), ("smoothing", self.smoothing)) if flag
        ]
        return "+".join(on) or "plain"

    @classmethod
    def parse(cls, text: Labels | str | None) -> Labels:
        """The variant a test id names (the strings of earlier versions and deviation keys); None is
        plain."""
        if isinstance(text, Labels):
            return text
        known = {str(v): v for v in (cls(p, s) for p in (False, True) for s in (False, True))}
        if (text or "plain") not in known:
            raise ValueError(f"unknown training variant {text!r}; expected one of {sorted(known)}")
        return known[text or "plain"]


def _targets(
    data: st.DataObject,
    padded: bool,
    pad: int = PAD,
    V: int = VOCAB,
    shape: Any = None,
    shortest: int = 1,
) -> np.ndarray:
    """Ids in [0, V), never ``pad`` but in padded tails (lengths shortest..T), int64 or int32."""
    B, T = shape or data.draw(seq_shapes(), label="shape")[:2]
    targets = data.draw(token_ids(B, T, V), label="targets")
    if V > 1:
        targets = np.where(targets == pad, (pad + 1) % V, targets)  # real tokens are never pad...
    if padded:  # ...except in each sequence's padded tail
        rng = np.random.default_rng(data.draw(seeds(), label="len_seed"))
        lengths = rng.integers(shortest, T + 1, B)  # (B,)
        targets = np.where(np.arange(T)[None, :] < lengths[:, None], targets, pad)
    return targets.astype(
        data.draw(st.sampled_from([np.int64, np.int64, np.int32]), label="id_dtype")
    )


def _shift_inputs(
    data: st.DataObject, dtype: DType, variant: Labels | str | None
) -> dict[str, Any]:
    """Targets (padded tails, all-padding ones included, for the padded variant), bos and pad."""
    bos, pad = data.draw(st.sampled_from(SHIFT_IDS), label="bos, pad")
    targets = _targets(data, Labels.parse(variant).padded, pad, shortest=0)
    return {"targets": targets, "bos": bos, "pad": pad}


def _ids(v: np.ndarray) -> int:
    return int(np.abs(v).max()) + 1 if v.size else 1


SHIFT_ARGS = (
    Arg(
        "targets",
        "int array (B, T) (int64 or int32), B, T >= 1: token ids, padding (pad) anywhere",
        kind="tokens",
        perturb=lambda v, i: np.where(v == i["pad"], v, v + 1),  # every real token one id up
        regions=(
            region("T = 1", lambda v, i: v.shape[1] == 1),
            region("B > 1", lambda v, i: v.shape[0] > 1),
            region("padded tails", lambda v, i: bool((v == i["pad"]).any())),
            region("no padding", lambda v, i: not (v == i["pad"]).any()),
            region(
                "a sequence that is all padding", lambda v, i: bool((v == i["pad"]).all(1).any())
            ),
            region(
                "a real token equal to bos",
                lambda v, i: bool(((v == i["bos"]) & (v != i["pad"])).any()),
            ),
            region("int32 ids", lambda v, i: v.dtype == np.int32),
        ),
    ),
    Arg(
        "bos",
        "any int: the first decoder input; may equal pad",
        kind="int",
        regions=(
            region("1 (the usual)", lambda v, i: v == BOS),
            region("0", lambda v, i: v == 0),
            region("equal to pad", lambda v, i: v == i["pad"]),
            region("another id (2, 3)", lambda v, i: v in (2, 3)),
        ),
    ),
    Arg(
        "pad",
        "any int (a real id, or a negative one): where a target is pad, the input is pad",
        kind="int",
        regions=(
            region("0 (the usual)", lambda v, i: v == 0),
            region("another id (10)", lambda v, i: v == 10),
            region("negative (-1)", lambda v, i: v < 0),
        ),
    ),
)


def _shift_bad(change: Any) -> Any:
    return lambda data, dtype: change(_shift_inputs(data, dtype, Labels(padded=True)))


SHIFT_VARIANTS = (None, Labels(padded=True))
SHIFT_RIGHT = Component(
    name="shift_right",
    family="training",
    shapes="targets (B, T) int -> (B, T) int",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    args=SHIFT_ARGS,
    draw=_shift_inputs,
    variants=SHIFT_VARIANTS,
    bad_inputs=(
        BadInput(
            "targets_not_2d",
            "targets (T,)",
            _shift_bad(lambda i: {**i, "targets": i["targets"][0]}),
        ),
        BadInput(
            "empty_sequence",
            "targets (B, 0)",
            _shift_bad(lambda i: {**i, "targets": i["targets"][:, :0]}),
        ),
        BadInput(
            "float_targets",
            "float targets",
            _shift_bad(lambda i: {**i, "targets": i["targets"].astype(np.float32)}),
        ),
    ),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(SHIFT_RIGHT, variants=SHIFT_VARIANTS, dtypes=(EXACT,))
def bos_first_last_dropped(subject: Subject, data: st.DataObject, variant: Labels | None) -> None:
    """Input position 0 is BOS and input t is target t - 1 wherever the target is not padding;
    padding stays padding."""
    inputs = subject.draw(data, variant)
    got = subject.case(inputs).got
    targets, bos, pad = inputs["targets"], inputs["bos"], inputs["pad"]
    real = targets != pad
    if not (got[:, 0][real[:, 0]] == bos).all():
        subject.fail(inputs, f"first input tokens {got[:, 0].tolist()}; expected BOS={bos}")
    if not (got[:, 1:][real[:, 1:]] == targets[:, :-1][real[:, 1:]]).all():
        subject.fail(
            inputs,
            f"inputs {got.tolist()} are not the targets {targets.tolist()} shifted right by one",
        )
    if not (got[~real] == pad).all():
        subject.fail(
            inputs,
            f"inputs {got.tolist()} where the targets {targets.tolist()} are padding; "
            f"expected pad={pad}",
        )


# (targets' shape, V): the sequence buckets with the shared vocabulary, 1-D logits (V,) for one
# position, 2-D (N, V) with V = 2, and 4-D with V = 1 (the loss is 0)
CE_SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (
    ((1, 1), VOCAB),
    ((2, 5), VOCAB),
    ((1, 9), VOCAB),
    ((), 3),
    ((6,), 2),
    ((2, 2, 3), 1),
)
# "large" logits reach 1e3: a sum of nine float16 losses stays finite (1e4 overflows)
CE_LARGE = 1e3
CE_SMOOTHING = (0.1, 0.1, 1.0, 0.5)  # Vaswani et al.'s 0.1, the uniform target, half


def _ce_inputs(data: st.DataObject, dtype: DType, variant: Labels | str | None) -> dict[str, Any]:
    """Kwargs for cross_entropy: logits of any rank, targets, ignore_index, label_smoothing."""
    # padded: padding ignored (id 0, a real class, or HuggingFace's -100); otherwise ignore_index
    # -100, -1, a class some targets hold, or >= V
    v = Labels.parse(variant)
    padded = v.padded
    # padding needs positions and a class
    shapes = [(s, V) for s, V in CE_SHAPES if not padded or (len(s) >= 2 and V > 1)]
    shape, V = data.draw(st.sampled_from(shapes), label="shape")
    if padded:
        ignore = pad = data.draw(st.sampled_from([PAD, -100]), label="pad")
        sequences = (int(np.prod(shape[:-1])), shape[-1])  # (sequences, T): tails padded
        targets = _targets(data, True, pad, V, sequences)
    else:
        targets = _targets(data, False, -100, V, (1, int(np.prod(shape, dtype=int))))  # (1, N)
        ignore = data.draw(st.sampled_from([-100, -100, -1, 3 % V, V]), label="ignore_index")
        if (targets == ignore).all():  # every position ignored is refused: ignore nothing instead
            ignore = -100
    targets = targets.reshape(shape)  # (sequences, T) or (1, N) -> logits' leading shape
    logits = data.draw(arrays(shape + (V,), dtype, large=CE_LARGE), label="logits")
    smoothing = (
        data.draw(st.sampled_from(CE_SMOOTHING), label="label_smoothing") if v.smoothing else 0.0
    )
    return {
        "logits": logits,
        "targets": targets,
        "ignore_index": ignore,
        "label_smoothing": smoothing,
    }


CE_VARIANTS = (
    Labels(),
    Labels(smoothing=True),
    Labels(padded=True),
    Labels(padded=True, smoothing=True),
)


def _v(i: Any) -> int:
    return i["logits"].shape[-1]


def _kept(i: Any) -> np.ndarray:
    return i["targets"] != i["ignore_index"]


def _ties(v: np.ndarray) -> bool:
    """Two equal logits in some position's row."""
    rows = np.sort(v.astype(np.float64).reshape(-1, v.shape[-1]), -1)  # (N, V)
    return v.shape[-1] > 1 and bool((np.diff(rows, axis=-1) == 0).any())


def _both_signs(v: np.ndarray, at: float) -> bool:
    v = v.astype(np.float64)
    return v.max() >= at and v.min() <= -at


def _next_class(v: np.ndarray, i: Any) -> np.ndarray:
    """Every kept target one class up (modulo V); ignored positions stay ignored."""
    return np.where(_kept(i), (v + 1) % _v(i), v).astype(v.dtype)


CE_ARGS = (
    Arg(
        "logits",
        "float array (..., V) of any rank >= 1 (a 1-D logits is one position), V >= 1; "
        "finite values",
        regions=(
            region("1-D (V,): one position", lambda v, i: v.ndim == 1),
            region("2-D (N, V)", lambda v, i: v.ndim == 2),
            region("3-D (B, T, V)", lambda v, i: v.ndim == 3),
            region("4-D", lambda v, i: v.ndim == 4),
            region("V = 1 (the loss is 0)", lambda v, i: v.shape[-1] == 1),
            region("V = 2", lambda v, i: v.shape[-1] == 2),
            region("large logits of both signs (|x| >= 100)", lambda v, i: _both_signs(v, 100)),
            region("ties (equal logits in a row)", lambda v, i: _ties(v)),
            region(
                "tiny logits (|x| < 1e-2)",
                lambda v, i: float(np.abs(v.astype(np.float64)).max()) < 1e-2,
            ),
        ),
    ),
    Arg(
        "targets",
        "int array of logits' leading shape (int64 or int32): each target in [0, V) or equal to "
        "ignore_index, at least one not ignored",
        kind="tokens",
        perturb=_next_class,
        regions=(
            region("class 0", lambda v, i: bool(((v == 0) & _kept(i)).any())),
            region(
                "class V - 1 with V > 1",
                lambda v, i: _v(i) > 1 and bool(((v == _v(i) - 1) & _kept(i)).any()),
            ),
            region("some ignored", lambda v, i: not _kept(i).all()),
            region("none ignored", lambda v, i: bool(_kept(i).all())),
            region("int32 targets", lambda v, i: v.dtype == np.int32),
        ),
    ),
    Arg(
        "ignore_index",
        "any int: targets equal to it are left out of the mean; may be a real class (a padding id) "
        "or none",
        kind="int",
        default=-100,
        regions=(
            region(
                "-100 (the default) with no target equal to it",
                lambda v, i: v == -100 and bool(_kept(i).all()),
            ),
            region(
                "-100 as HuggingFace's padding label", lambda v, i: v == -100 and not _kept(i).all()
            ),
            region("a real class as padding (0)", lambda v, i: v == 0 and not _kept(i).all()),
            region(
                "a real class some targets hold, not padding (3)",
                lambda v, i: v == 3 and not _kept(i).all(),
            ),
            region("negative, not -100 (-1)", lambda v, i: v == -1),
            region("beyond the classes (V)", lambda v, i: v >= _v(i)),
        ),
    ),
    Arg(
        "label_smoothing",
        "real in [0, 1]: the mass spread uniformly over all V classes; 1 makes the target uniform",
        kind="number",
        default=0.0,
        perturb=lambda v, i: 1e-3 if v == 0 else min(v * (1 + 1e-3), 1 - 1e-3),  # stays in [0, 1]
        regions=(
            region("0", lambda v, i: v == 0),
            region("non-dyadic (0.1)", lambda v, i: v == 0.1),
            region("0.5", lambda v, i: v == 0.5),
            region("1 (a uniform target)", lambda v, i: v == 1),
        ),
    ),
)


def _ce_bad(change: Any, variant: Labels = Labels()) -> Any:
    return lambda data, dtype: change(_ce_inputs(data, dtype, variant))


def _first_target(value: Any) -> Any:
    """The first target set to ``value`` (a function of the inputs), with ignore_index -100
    (ignoring none of them)."""

    def change(i: dict[str, Any]) -> dict[str, Any]:
        t = i["targets"].copy()
        t.reshape(-1)[0] = value(i)  # (...) -> (N,): a view, so t's first entry
        return {**i, "targets": t, "ignore_index": -100}

    return change


CROSS_ENTROPY = Component(
    name="cross_entropy",
    family="training",
    shapes="logits (..., V), targets (...) int -> ()",
    error_scale=lambda inputs: 1.0 + float(np.abs(inputs["logits"].astype(np.float64)).max()),
    args=CE_ARGS,
    draw=_ce_inputs,
    variants=CE_VARIANTS,
    gradient=Gradient(wrt=paths("logits"), variants=(Labels(padded=True, smoothing=True),)),
    bad_inputs=(
        BadInput(
            "target_out_of_range", "a target of V (ignore_index -100)", _ce_bad(_first_target(_v))
        ),
        BadInput(
            "negative_target",
            "a target of -1 (ignore_index -100)",
            _ce_bad(_first_target(lambda i: -1)),
        ),
        BadInput(
            "targets_shape_mismatch",
            "targets with one more position",
            _ce_bad(
                lambda i: {
                    **i,
                    "targets": np.concatenate([i["targets"], i["targets"][:, :1]], axis=1),
                },
                Labels(padded=True),
            ),
        ),
        BadInput(
            "every_target_ignored",
            "every target equal to ignore_index",
            _ce_bad(
                lambda i: {**i, "targets": np.full_like(i["targets"], i["ignore_index"])},
                Labels(padded=True),
            ),
        ),
        BadInput(
            "label_smoothing_above_one",
            "label_smoothing = 1.5",
            _ce_bad(lambda i: {**i, "label_smoothing": 1.5}),
        ),
        BadInput(
            "negative_label_smoothing",
            "label_smoothing = -0.1",
            _ce_bad(lambda i: {**i, "label_smoothing": -0.1}),
        ),
        BadInput(
            "nan_label_smoothing",
            "label_smoothing = NaN",
            _ce_bad(lambda i: {**i, "label_smoothing": float("nan")}),
        ),
    ),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(CROSS_ENTROPY, variants=(Labels(padded=True), Labels(padded=True, smoothing=True)))
def ignored_positions_do_not_matter(subject: Subject, data: st.DataObject, variant: Labels) -> None:
    """Changing the logits at ignored (padding) positions leaves the loss unchanged."""
    inputs = subject.draw(data, variant)
    ignored = inputs["targets"] == inputs["ignore_index"]  # (...,)
    rng = np.random.default_rng(data.draw(seeds(), label="noise_seed"))
    noise = (10 * rng.standard_normal(inputs["logits"].shape)).astype(inputs["logits"].dtype)
    other = {**inputs, "logits": np.where(ignored[..., None], noise, inputs["logits"])}
    base = subject.case(inputs)
    base.assert_equivalent(
        base.got, subject.case(other), "loss after rewriting the logits of ignored positions"
    )
