"""Spec entry: encoder_decoder(src_tokens, tgt_in, params, num_heads, src_lengths=None,
norm_first=False, activation="relu", eps=1e-5) -> log-probabilities (B, T, V); see
reference/model.py for the layout.

Teacher forcing: tgt_in = shift_right(targets), so the log-probs at step t may depend on
tgt_in[:t+1] (targets before t) only. Properties: rows are log-distributions; (a) changing the
decoder input after step t leaves steps <= t unchanged; (b) decoding step by step, re-running the
growing prefix, gives the parallel teacher-forced log-probs. The key/value-cache variant of (b) is
the component incremental_decoder (spec/stacks.py): cached step-by-step decoding equals the parallel
decoder, and the log-probs are a per-position function of the decoder output (tied projection,
log-softmax). src_lengths in [0, S]: an empty source leaves attention rows that see no key (their
output is b_o). error_scale: (1 + max|logp|) times the number of sublayers, 2 per encoder and 3 per
decoder layer (see spec/stacks.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.layers import ACTIVATIONS
from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.stacks import (
    EPS_VALUES,
    STACK_BUCKETS,
    StackShape,
    has_empty_row,
    heads_arg,
    layer_options,
    layer_params,
    norm_params,
)
from spec.strategies import VOCAB, arrays, seeds, token_ids
from spec.tolerance import compare


@dataclass(frozen=True)
class Modelling:
    """An encoder_decoder variant: the LayerNorm placement (``norm``: "post_ln" or "pre_ln") and
    whether the sources are padded (``src_padding``: src_lengths drawn, an empty source among
    them). Its str is the test id's ("post_ln", "pre_ln+src_padding")."""

    norm: str = "post_ln"
    src_padding: bool = False

    def __str__(self) -> str:
        return f"{self.norm}+src_padding" if self.src_padding else self.norm

    @classmethod
    def parse(cls, text: Modelling | str | None) -> Modelling:
        """The variant a test id names (the strings of earlier versions and deviation keys); None is
        post-LN without padding."""
        if isinstance(text, Modelling):
            return text
        known = {
            str(v): v for v in (cls(n, p) for n in ("post_ln", "pre_ln") for p in (False, True))
        }
        if (text or "post_ln") not in known:
            raise ValueError(f"unknown model variant {text!r}; expected one of {sorted(known)}")
        return known[text or "post_ln"]


def _model_inputs(
    data: st.DataObject, dtype: DType, variant: Modelling | str | None
) -> dict[str, Any]:
    """Inputs under a variant (Modelling): 1 or 2 layers per stack, the final norms (present for
    pre-LN, drawn for post-LN, as torch's nn.Transformer has them), activation and eps drawn."""
    v = Modelling.parse(variant)
    s: StackShape = data.draw(st.sampled_from(STACK_BUCKETS), label="shape")
    params: dict[str, Any] = {
        "src_table": data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="src_table"),
        "tgt_table": data.draw(arrays((VOCAB, s.D), dtype, allow_large=False), label="tgt_table"),
    }
    for name, decoder in (("encoder", False), ("decoder", True)):
        n = data.draw(st.sampled_from([1, 2]), label=f"{name}_layers")
        params[name] = [
            data.draw(layer_params(s.D, dtype, decoder=decoder), label=f"{name}_layer")
            for _ in range(n)
        ]
    pre_ln = v.norm == "pre_ln"
    for name in ("encoder_norm", "decoder_norm"):
        if pre_ln or data.draw(st.booleans(), label=name):
            params[name] = data.draw(norm_params(s.D, dtype), label=name)
    inputs: dict[str, Any] = {
        "src_tokens": data.draw(token_ids(s.B, s.S), label="src_tokens"),
        "tgt_in": data.draw(token_ids(s.B, s.T), label="tgt_in"),
        "params": params,
        "num_heads": s.H,
        "norm_first": pre_ln,
        "activation": data.draw(st.sampled_from(ACTIVATIONS), label="activation"),
        "eps": data.draw(st.sampled_from(EPS_VALUES), label="eps"),
    }
    if v.src_padding:
        rng = np.random.default_rng(data.draw(seeds(), label="len_seed"))
        lengths = rng.integers(1, s.S + 1, s.B)
        if data.draw(st.booleans(), label="empty_source"):  # an empty source: rows that see no key
            lengths[rng.integers(0, s.B)] = 0
        inputs["src_lengths"] = lengths
    return inputs


def _scale(inputs: Mapping[str, Any]) -> float:
    from reference.model import encoder_decoder
    from spec.tolerance import cast_floats

    out = encoder_decoder(**cast_floats(inputs, np.dtype(np.float64)))
    sublayers = 2 * len(inputs["params"]["encoder"]) + 3 * len(inputs["params"]["decoder"])
    return (1.0 + float(np.abs(out).max())) * sublayers


def log_probs_are_normalised(
    subject: Subject, data: st.DataObject, variant: Modelling | None
) -> None:
    """exp(log-probs) sums to 1 over the vocabulary at every position, and log-probs are <= 0."""
    case = subject.case(subject.draw(data, variant))
    logp = case.got.astype(np.float64)
    if (logp > case.bound.allowed).any():
        subject.fail(case.inputs, f"a log-probability is positive: {logp.max():.6g}")
    sums = np.exp(logp).sum(-1)  # (B, T)
    # d exp(l) = exp(l) dl: the sum moves by at most sum_v p_v * bound = bound
    subject.check(
        compare(
            sums,
            np.ones_like(sums),
            case.bound.times(2),
            "sum over the vocabulary of exp(log-probs)",
        ),
        case.inputs,
    )


def later_inputs_do_not_matter(
    subject: Subject, data: st.DataObject, variant: Modelling | None
) -> None:
    """(a) Changing the decoder input after step t (targets at positions >= t) leaves steps <= t
    unchanged."""
    inputs = subject.draw(data, variant)
    tgt = inputs["tgt_in"]
    t = data.draw(st.integers(0, tgt.shape[1] - 1), label="t")
    other = tgt.copy()
    other[:, t + 1 :] = (
        other[:, t + 1 :]
        + 1
        + np.random.default_rng(data.draw(seeds(), label="seed")).integers(
            0, VOCAB - 1, other[:, t + 1 :].shape
        )
    ) % VOCAB
    base = subject.case(inputs)
    upto = (np.arange(tgt.shape[1]) <= t)[None, :, None]  # (1, T, 1)
    base.assert_equivalent(
        base.got,
        subject.case({**inputs, "tgt_in": other}),
        f"steps <= {t} after changing later decoder inputs",
        select=upto,
    )


def step_by_step_equals_parallel(
    subject: Subject, data: st.DataObject, variant: Modelling | None
) -> None:
    """(b) Step-by-step decoding fed the ground-truth prefix (re-running it each step) equals the
    parallel teacher-forced pass at every step."""
    inputs = subject.draw(data, variant)
    parallel = subject.case(inputs)
    for t in range(inputs["tgt_in"].shape[1]):
        step = subject.case({**inputs, "tgt_in": inputs["tgt_in"][:, : t + 1]})
        parallel.assert_equivalent(
            parallel.got[:, t : t + 1], _last(step), f"step {t} decoded alone vs in parallel"
        )


def _last(case: Any) -> Any:
    """A view of a case whose output is its last position only (the step just decoded)."""

    class Last:
        bound = case.bound

        @property
        def got(self) -> np.ndarray:
            return case.got[:, -1:]

    return Last()


# Argument domains (spec/domains.py).
def _next_token(tokens: Any, inputs: Any) -> Any:
    """Every id one higher, modulo V (stays in [0, V))."""
    return (np.asarray(tokens) + 1) % VOCAB


def _tokens_arg(name: str, what: str, length: str) -> Arg:
    return Arg(
        name,
        f"int array (B, {length}) of ids in [0, V) (V = {VOCAB} here), {length} >= 1: {what}",
        kind="tokens",
        perturb=_next_token,
        regions=(
            region(f"{length} = 1", lambda v, i: v.shape[1] == 1),
            region(f"{length} > 1", lambda v, i: v.shape[1] > 1),
            region("id 0", lambda v, i: bool((v == 0).any())),
            region("id V - 1", lambda v, i: bool((v == VOCAB - 1).any())),
        ),
    )


def _source_mask(i: Any) -> Any:
    lengths = i.get("src_lengths")
    return (
        None
        if lengths is None
        else np.arange(i["src_tokens"].shape[1]) < np.asarray(lengths)[:, None]
    )  # (B, S)


def empty_source(inputs: Any) -> bool:
    """Whether some item's source is empty (src_lengths 0): its encoder and cross-attention rows see
    no key."""
    return has_empty_row(_source_mask(inputs))


def _stack_entry(name: str, decoder: bool) -> Arg:
    from spec.stacks import _layers_arg

    layers = _layers_arg(decoder)
    regions = (
        region("1 layer", lambda v, i: len(v) == 1),
        region("2 layers", lambda v, i: len(v) == 2),
    )
    return Arg(name, layers.domain, kind=layers.kind, perturb=layers.perturb, regions=regions)


def _norm_entries(name: str, stack: str) -> tuple[Arg, ...]:
    dropped = Arg(
        name,
        f"{{gamma (D,), beta (D,)}}: a LayerNorm after the {stack}, or absent",
        # not "params": so that dropping the norm (absent is its default) is a mutant too
        kind="other",
        default=None,
        regions=(
            region("absent", lambda v, i: v is None),
            region("present with pre-LN", lambda v, i: v is not None and i["norm_first"]),
            region(
                "present with post-LN (torch's nn.Transformer)",
                lambda v, i: v is not None and not i["norm_first"],
            ),
        ),
    )
    return (
        dropped,
        Arg(f"{name}.gamma", "float array (D,)"),
        Arg(f"{name}.beta", "float array (D,)"),
    )


def _src_lengths_one_fewer(lengths: Any, inputs: Any) -> Any:
    """Every length one position shorter, down to 0 (stays in [0, S]); None when all are 0."""
    return np.maximum(lengths - 1, 0) if (lengths > 0).any() else None


def _lengths(i: Any) -> Any:
    return np.asarray(i["src_lengths"])


def _width(i: Any) -> int:
    return i["params"]["src_table"].shape[1]


MODEL_ARGS = (
    _tokens_arg("src_tokens", "the source sentence", "S"),
    _tokens_arg("tgt_in", "shift_right(targets), the decoder's input under teacher forcing", "T"),
    Arg(
        "params",
        "dict src_table (V, D), tgt_table (V, D) (the output projection is tied to it), encoder / "
        "decoder (lists of "
        "layer params, reference/stacks.py), optional encoder_norm / decoder_norm {gamma, beta}",
        kind="params",
        entries=(
            Arg("src_table", "float array (V, D): the source embedding"),
            Arg("tgt_table", "float array (V, D): the target embedding and output projection"),
            _stack_entry("encoder", False),
            _stack_entry("decoder", True),
        )
        + _norm_entries("encoder_norm", "encoder")
        + _norm_entries("decoder_norm", "decoder"),
    ),
    heads_arg(_width),
    Arg(
        "src_lengths",
        "None (every source position real) or int array (B,) in [0, S]: positions from a length on "
        "are padding, in "
        "the encoder and in cross-attention; a length of 0 leaves rows that see no key (their "
        "attention gives b_o)",
        kind="int",
        default=None,
        perturb=_src_lengths_one_fewer,
        regions=(
            region("None", lambda v, i: v is None),
            region("a length of 0", lambda v, i: v is not None and bool((_lengths(i) == 0).any())),
            region(
                "a length of S",
                lambda v, i: (
                    v is not None and bool((_lengths(i) == i["src_tokens"].shape[1]).any())
                ),
            ),
            region(
                "a length strictly between",
                lambda v, i: (
                    v is not None
                    and bool(((_lengths(i) > 0) & (_lengths(i) < i["src_tokens"].shape[1])).any())
                ),
            ),
        ),
    ),
    *layer_options(),
)


def _bad(change: Any) -> Any:
    return lambda data, dtype: change(_model_inputs(data, dtype, None))


def _padded_bad(change: Any) -> Any:
    return lambda data, dtype: change(_model_inputs(data, dtype, Modelling(src_padding=True)))


ENCODER_DECODER = Component(
    name="encoder_decoder",
    family="model",
    signature=(
        "encoder_decoder(src_tokens, tgt_in, params, num_heads, src_lengths=None, "
        "norm_first=False, activation='relu', eps=1e-5)"
    ),
    shapes="src_tokens (B, S), tgt_in (B, T) int -> log-probs (B, T, V)",
    error_scale=_scale,
    args=MODEL_ARGS,
    draw=_model_inputs,
    variants=tuple(
        Modelling.parse(v)
        for v in ("post_ln", "pre_ln", "post_ln+src_padding", "pre_ln+src_padding")
    ),
    bad_inputs=(
        BadInput(
            "token_id_equals_V",
            f"a target-side id of V = {VOCAB}",
            _bad(lambda i: {**i, "tgt_in": np.full_like(i["tgt_in"], VOCAB)}),
        ),
        BadInput(
            "negative_source_id",
            "a source id of -1",
            _bad(lambda i: {**i, "src_tokens": np.full_like(i["src_tokens"], -1)}),
        ),
        BadInput(
            "source_length_beyond_S",
            "src_lengths = S + 1",
            _padded_bad(
                lambda i: {**i, "src_lengths": i["src_lengths"] * 0 + i["src_tokens"].shape[1] + 1}
            ),
        ),
        BadInput(
            "heads_do_not_divide_D",
            "num_heads = D + 1",
            _bad(lambda i: {**i, "num_heads": i["params"]["src_table"].shape[1] + 1}),
        ),
        BadInput(
            "unknown_activation", "activation='swish'", _bad(lambda i: {**i, "activation": "swish"})
        ),
        BadInput("negative_eps", "eps = -1e-5", _bad(lambda i: {**i, "eps": -1e-5})),
    ),
)


# Properties beside the differential one (the record's draw gives it), registered once the record
# exists.
prop(ENCODER_DECODER)(log_probs_are_normalised)
prop(ENCODER_DECODER, variants=(Modelling(), Modelling("pre_ln")))(later_inputs_do_not_matter)
# float64 and float32: T + 1 runs of the whole model per example, each prefix a new jax shape
prop(ENCODER_DECODER, dtypes=(FLOAT64, FLOAT32))(step_by_step_equals_parallel)
