"""Spec entries: encoder_layer, decoder_layer, encoder, decoder (canonical params in
reference/stacks.py).

    encoder_layer(x (B, T, D), params, num_heads, mask=None, norm_first=False, activation="relu",
    eps=1e-5) decoder_layer(y (B, T, D), memory (B, S, D), params, num_heads, memory_mask=None,
    norm_first=False, ...) encoder(x, layers, num_heads, mask=None, norm_first=False,
    activation="relu", eps=1e-5, final_norm=None) decoder(y, memory, layers, num_heads,
    memory_mask=None, ..., final_norm=None)
The decoder's self-attention is causal (top-left). Dropout is not part of these: evaluation mode. A
query row whose mask hides every key attends to nothing: its attention output is the output bias b_o
(multi_head_attention's convention), so an item of key-padding length 0 is in the domain. Pre-LN
inputs in float32 and float64 may carry a row offset (ROW_OFFSETS), which the residual stream
carries to every norm.
error_scale (compound components): (1 + max|output|) times the number of sublayers. The measured
same-precision error, which sees every rounding of the composition, carries the bound; the floor
only guards outputs of O(1) magnitude against a lucky exact same-precision run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from reference.layers import ACTIVATIONS
from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, Region, equals, region
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.layers import _mean_dominates
from spec.strategies import (
    AttentionShape,
    _keep_one_per_row,
    arrays,
    masks,
    mha_params,
    normal_params,
    seeds,
)


class StackShape(NamedTuple):
    B: int
    T: int
    S: int
    D: int
    H: int


# T = S = 1 with H = D (one dimension per head); T > S with 1 < H < D; T < S with a single head
STACK_BUCKETS = (StackShape(1, 1, 1, 4, 4), StackShape(2, 4, 3, 8, 2), StackShape(1, 5, 6, 8, 1))
# eps: the default, 1e-6 (T5, LLaMA), BERT's 1e-12, 1e-3 (above a small variance), and 0 (no floor)
EPS_VALUES = (1e-5, 1e-6, 1e-12, 1e-3, 0.0)
# The mask kinds a variant may name (spec/strategies.masks), or "masked" draws one per example: key
# padding, an item of length 0 (rows that see no key), bool masks of every broadcast shape, additive
# masks (-inf, finite biases, HuggingFace's finfo.min fill)
MASK_KINDS = ("padding", "padding_zero_length", "bool", "additive")
# A common offset added to every pre-LN input row (0 = none): over 100 std of the N(0, 1)-like rows.
# Only in float32 and float64: in 16 bits the offset's ulp (0.5 to 4 at 1e3) would round the rows'
# spread away, and the bound with it.
ROW_OFFSETS = (0.0, 1e3, 0.0, -2.5e3)
OFFSET_DTYPES = (FLOAT32, FLOAT64)


@st.composite
def layer_params(draw: Any, D: int, dtype: DType, decoder: bool) -> dict[str, Any]:
    """Return a strategy for one layer's canonical params (F = 2 D; attention biases all, none or
    some; LayerNorm gamma ~ 1, beta ~ 0)."""
    F = 2 * D
    params: dict[str, Any] = {"self_attn": draw(mha_params(D, dtype), label="self_attn")}
    if decoder:
        params["cross_attn"] = draw(mha_params(D, dtype), label="cross_attn")
    params["ffn"] = draw(
        normal_params(
            {"w1": (D, F), "b1": (F,), "w2": (F, D), "b2": (D,)}, dtype, {"b1": 0.1, "b2": 0.1}
        ),
        label="ffn",
    )
    for i in range(1, 4 if decoder else 3):
        params[f"norm{i}"] = draw(norm_params(D, dtype), label=f"norm{i}")
    return params


@st.composite
def norm_params(draw: Any, D: int, dtype: DType) -> dict[str, np.ndarray]:
    """Return a strategy for a LayerNorm's {gamma ~ N(1, 0.1^2), beta ~ N(0, 0.1^2)} (D,)."""
    p = draw(
        normal_params({"gamma": (D,), "beta": (D,)}, dtype, {"gamma": 0.1, "beta": 0.1}),
        label="affine",
    )
    return {"gamma": (p["gamma"].astype(np.float64) + 1).astype(dtype.np_dtype), "beta": p["beta"]}


def _bool_mask(data: st.DataObject, s: AttentionShape) -> np.ndarray:
    """A bool mask in one of the broadcast shapes models pass: per head (B, H, T, S), one (T, S) for
    the batch, per item and query (B, 1, T, S), key-only (B, 1, 1, S) or (S,), or per query row (T,
    1) (every key or none, here every one); every row keeps a key."""
    # the 2-D (T, S) and per-query-row (T, 1) shapes twice: they are the regions that need T > 1
    # too, and a domain drawn by luck flips when the draws change (found when the derandomized
    # examples were re-seeded)
    shapes = [
        (s.B, s.H, s.T, s.S),
        (s.T, s.S),
        (s.T, s.S),
        (s.B, 1, s.T, s.S),
        (s.B, 1, 1, s.S),
        (s.S,),
        (s.T, 1),
        (s.T, 1),
    ]
    shape = data.draw(st.sampled_from(shapes), label="mask_shape")
    rng = np.random.default_rng(data.draw(seeds(), label="mask_seed"))
    return _keep_one_per_row(rng.random(shape) < 0.6, rng)


@dataclass(frozen=True)
class Stacking:
    """A layer or stack variant: the LayerNorm placement (``norm``: "post_ln", the paper's, or
    "pre_ln"), the mask (``mask``: one of MASK_KINDS, "masked" to draw one per example, or None for
    none), the FFN activation (``activation``; None draws it) and, for a stack, whether a final norm
    follows the last layer (``final_norm``; None draws it). Its str is the test id's
    ("post_ln+masked", "pre_ln+final_norm", "post_ln+gelu")."""

    norm: str = "post_ln"
    mask: str | None = None
    activation: str | None = None
    final_norm: bool | None = None

    def __str__(self) -> str:
        final = {None: [], True: ["final_norm"], False: ["no_final_norm"]}[self.final_norm]
        return "+".join([self.norm, *filter(None, (self.mask, self.activation)), *final])

    @classmethod
    def parse(cls, text: Stacking | str | None) -> Stacking:
        """The variant a test id names (the strings of earlier versions and deviation keys); None is
        post-LN with everything else drawn."""
        if isinstance(text, Stacking):
            return text
        known = {
            str(v): v
            for v in (
                cls(n, m, a, f)
                for n in ("post_ln", "pre_ln")
                for m in (None, *MASK_KINDS, "masked")
                for a in (None, *ACTIVATIONS)
                for f in (None, True, False)
            )
        }
        if (text or "post_ln") not in known:
            raise ValueError(f"unknown stack variant {text!r}; expected post_ln|pre_ln[+...]")
        return known[text or "post_ln"]


def _draw(component: str, offsets: bool = True) -> Any:
    """The component's draw; ``offsets=False`` never adds ROW_OFFSETS (the gradient property: a
    float32 LayerNorm backward rounds at u |x| / std on such rows, a residue its bound, scaled by
    the gradient's magnitude, does not hold; the forward properties draw them)."""
    decoder = "decoder" in component
    stack = component in ("encoder", "decoder", "incremental_decoder")

    def draw(data: st.DataObject, dtype: DType, variant: Stacking | str | None) -> dict[str, Any]:
        """Inputs under a variant (Stacking); what the variant does not name (the mask's kind when
        "masked", activation, eps, the number of layers, the final norm) is drawn."""
        v = Stacking.parse(variant)
        s: StackShape = data.draw(st.sampled_from(STACK_BUCKETS), label="shape")
        x = data.draw(arrays((s.B, s.T, s.D), dtype, allow_large=False), label="x")
        eps = data.draw(st.sampled_from(EPS_VALUES), label="eps")
        # eps = 0 leaves no floor under the variance: a row whose variance is 0 in the test dtype (a
        # constant row, or |x| ~ 1e-4 in float16, where the squares underflow) is 0 / 0, outside the
        # domain; BERT's 1e-12 is 0 in float16 too
        held = float(np.asarray(eps).astype(dtype.np_dtype))
        variance = float(x.astype(np.float64).var(-1).min())
        if held == 0 and not dtype.holds_normally(variance):
            eps = EPS_VALUES[0]
        if offsets and v.norm == "pre_ln" and dtype in OFFSET_DTYPES:
            # A pre-LN residual stream carries what it is given past every norm: a row offset makes
            # each norm (and a stack's final one) see rows whose |mean| >> std, where a one-pass
            # variance E[x^2] - E[x]^2 cancels (flax's default; found surviving as a mutant of the
            # flax stacks' final norm, which no N(0, 1)-like input could catch)
            offset = data.draw(st.sampled_from(ROW_OFFSETS), label="row_offset")
            x = (x.astype(np.float64) + offset).astype(x.dtype)
        inputs: dict[str, Any] = {"y" if decoder else "x": x}
        if decoder:
            inputs["memory"] = data.draw(
                arrays((s.B, s.S, s.D), dtype, allow_large=False), label="memory"
            )
        n = data.draw(st.sampled_from([2, 1, 3]), label="layers") if stack else 1
        layers = [data.draw(layer_params(s.D, dtype, decoder), label=f"layer{i}") for i in range(n)]
        if stack:
            inputs["layers"] = layers
        else:
            inputs["params"] = layers[0]
        inputs["num_heads"] = s.H
        kind = v.mask
        if kind == "masked":
            # bool twice: its six broadcast shapes share its draws
            kind = data.draw(st.sampled_from((*MASK_KINDS, "bool")), label="mask_kind")
        if kind is not None:
            shape = AttentionShape(s.B, s.H, s.T, s.S if decoder else s.T, s.D // s.H, s.D // s.H)
            mask = (
                _bool_mask(data, shape)
                if kind == "bool"
                else data.draw(masks(shape, kind, dtype), label="mask").mask
            )
            inputs["memory_mask" if decoder else "mask"] = mask
        inputs["norm_first"] = v.norm == "pre_ln"
        inputs["activation"] = v.activation or data.draw(
            st.sampled_from(ACTIVATIONS), label="activation"
        )
        inputs["eps"] = eps
        if stack:
            final = v.final_norm
            if final is None:
                final = data.draw(st.booleans(), label="final_norm")
            if final:
                inputs["final_norm"] = data.draw(norm_params(s.D, dtype), label="final_norm")
        return inputs

    return draw


# relative size of the probe that measures how a stack amplifies an error in what it is given
_PROBE = 2.0**-20


def _amplification(fn: Any, wide: Mapping[str, Any], out: np.ndarray) -> float:
    """How much the stack amplifies a relative error in its inputs (x, memory): max|f(x (1 + d r)) -
    f(x)| / (d (1 + max|f(x)|)), r a fixed random sign pattern, at least 1. A rounding error made
    inside is carried to the output through the same weights and norms: each pre-LN norm divides it
    by its input's std, each weight matrix multiplies it by its norm (found by sweep seed 20: jax's
    float64 pre-LN encoder at 1.02 of a floor that did not grow with that)."""
    rng = np.random.default_rng(0)
    moved = dict(wide)
    for name in ("x", "y", "memory"):
        a = wide.get(name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            moved[name] = a * (1 + _PROBE * rng.choice([-1.0, 1.0], a.shape))
    delta = float(np.abs(fn(**moved) - out).max())
    return max(1.0, delta / (_PROBE * (1.0 + float(np.abs(out).max()))))


def _scale(sublayers: int) -> Any:
    def scale(inputs: Mapping[str, Any]) -> float:
        from spec.tolerance import cast_floats

        component = "decoder" if "memory" in inputs else "encoder"
        import reference

        fn = getattr(reference, component + ("" if "layers" in inputs else "_layer"))
        wide = cast_floats(inputs, np.dtype(np.float64))
        out = fn(**wide)
        n = len(inputs.get("layers", [None]))
        base = (1.0 + float(np.abs(out).max())) * sublayers * n * _amplification(fn, wide, out)
        x = wide["y" if "memory" in inputs else "x"]
        if inputs.get("norm_first") and _offset_rows(x.reshape(-1, x.shape[-1])):
            # Every pre-LN norm then sees rows whose |mean| >> std (ROW_OFFSETS): their mean, a sum
            # of D terms, is rounded at up to D u |mean| whatever the algorithm (spec/layers.py's
            # scale has the same D), and that error lands in every normalised entry, which a
            # relative probe of x (whose mean the norm removes) does not see (found by seed 203:
            # torch's pre-LN decoder in float32 at 1.2x a bound without it, 6.7x numpy's error)
            base *= x.shape[-1]
        if wide.get("final_norm") is None:
            return base
        # A final LayerNorm divides what reaches it by its std (found by the seed sweep: jax,
        # pre-LN, D = 4, float64 off by 1.2x a bound without this): the stack's error is amplified
        # by max|gamma| / std, and the norm adds its own rounding (spec/layers.py's scale).
        from spec.layers import _ln_scale

        h = fn(**{**wide, "final_norm": None})  # (B, T, D): what the final norm normalises
        gamma, eps = wide["final_norm"]["gamma"], wide.get("eps", 1e-5)
        amplification = float(np.abs(gamma).max()) / float(np.sqrt(h.var(-1).min() + eps))
        return base * max(1.0, amplification) + _ln_scale(
            {"x": h, "gamma": gamma, "beta": wide["final_norm"]["beta"], "eps": eps}
        )

    return scale


def future_targets_do_not_matter(subject: Subject, data: st.DataObject, variant: Stacking) -> None:
    """Changing the decoder input at positions >= t leaves every output before t unchanged
    (causality)."""
    inputs = subject.draw(data, variant)
    y = inputs["y"]
    t = data.draw(st.integers(0, y.shape[1] - 1), label="t")
    noise = (
        3
        * np.random.default_rng(data.draw(seeds(), label="noise_seed")).standard_normal(
            y[:, t:].shape
        )
    ).astype(y.dtype)
    changed = {**inputs, "y": np.concatenate([y[:, :t], noise], axis=1)}
    base = subject.case(inputs)
    earlier = (np.arange(y.shape[1]) < t)[None, :, None]  # (1, T, 1)
    base.assert_equivalent(
        base.got,
        subject.case(changed),
        f"outputs before t={t} after changing the inputs from t on",
        select=earlier,
    )


def _item(key: str, value: Any, b: int) -> Any:
    """Item b of a batched argument; a mask without a batch axis (or with batch 1) is shared."""
    if not isinstance(value, np.ndarray) or value.ndim < 3 or value.shape[0] == 1:
        return value
    if key in ("mask", "memory_mask") and value.ndim < 4:
        return value  # (H, T, S): no batch axis
    return value[b : b + 1]


def batch_equals_items(subject: Subject, data: st.DataObject, variant: Stacking) -> None:
    """A batch equals its items computed one at a time."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    for b in range(whole.got.shape[0]):
        item = {k: _item(k, v, b) for k, v in inputs.items()}
        whole.assert_equivalent(
            whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch"
        )


def cache_equals_parallel(subject: Subject, data: st.DataObject, variant: Stacking) -> None:
    """Decoding one position at a time with a key/value cache equals the same adapter's parallel
    (teacher-forced) decoder at every position: issue 3's property 7(b) with a cache. The model's
    log-probs are a per-position function of the decoder output, so equality here carries over to
    them."""
    inputs = subject.draw(data, variant)
    cached = subject.case(inputs)
    cached.assert_equivalent(
        cached.got,
        subject.sibling("decoder").case(inputs),
        "cached step-by-step vs parallel decoder",
    )


# Argument domains (spec/domains.py).
def _width(inputs: Any) -> int:
    return inputs["y" if "y" in inputs else "x"].shape[-1]


def _scaled(tree: Any, factor: float) -> Any:
    """Every floating array in a nested dict times factor."""
    if isinstance(tree, dict):
        return {k: _scaled(v, factor) for k, v in tree.items()}
    return (tree.astype(np.float64) * factor).astype(tree.dtype)


def _last_layer_perturbed(layers: Any, inputs: Any) -> Any:
    """The last layer's weights times 1 + 1e-3: a slight change of the list."""
    return [*layers[:-1], _scaled(layers[-1], 1 + 1e-3)]


def _allowed(mask: Any) -> np.ndarray | None:
    if mask is None:
        return None
    return mask if mask.dtype == np.bool_ else np.isfinite(mask.astype(np.float64))


def has_empty_row(mask: Any) -> bool:
    """Whether a mask hides every key from some query row (an item of key-padding length 0)."""
    allowed = _allowed(mask)
    return allowed is not None and not allowed.any(-1).all()


def _mask_regions(keys: str) -> tuple[Any, ...]:
    """The regions of an attention mask over (B, H, T, keys)."""

    def bias(v: Any) -> np.ndarray:
        return v.astype(np.float64) if v is not None and v.dtype != np.bool_ else np.zeros(0)

    return (
        region("None", lambda v, i: v is None),
        region(
            f"key padding (B, 1, 1, {keys})",
            lambda v, i: v is not None and v.ndim == 4 and v.shape[1:3] == (1, 1),
        ),
        region("an item of length 0 (rows that see no key)", lambda v, i: has_empty_row(v)),
        region(
            f"bool 2-D (T, {keys}) with T > 1",
            lambda v, i: v is not None and v.dtype == np.bool_ and v.ndim == 2 and v.shape[0] > 1,
        ),
        region(
            "bool per head (B, H, T, keys) with H > 1",
            lambda v, i: v is not None and v.ndim == 4 and v.shape[1] > 1,
        ),
        region(
            "per-query rows (..., T, 1)",
            lambda v, i: v is not None and v.ndim >= 2 and v.shape[-1] == 1 and v.shape[-2] > 1,
        ),
        region("additive with -inf", lambda v, i: bool(np.isneginf(bias(v)).any())),
        region(
            "additive with finite nonzero biases",
            lambda v, i: bool((np.isfinite(bias(v)) & (bias(v) != 0)).any()),
        ),
    )


_KEY_BIAS = {
    kind: "the key bias shifts every logit of a row by the same q . b_k; softmax is invariant to "
    "that shift"
    for kind in ("default", "perturbed")
}


def _attention_entries(prefix: str) -> tuple[Arg, ...]:
    weights = tuple(
        Arg(f"{prefix}.{w}", "float array (D, D), acting on the right (y = x W + b)")
        for w in ("w_q", "w_k", "w_v", "w_o")
    )
    biases = tuple(
        Arg(
            f"{prefix}.{b}",
            "float array (D,), or absent (0)",
            default=None,
            invisible=_KEY_BIAS if b == "b_k" else {},
        )
        for b in ("b_q", "b_k", "b_v", "b_o")
    )
    return weights + biases


def _norm_entries(prefix: str) -> tuple[Arg, ...]:
    return (
        Arg(f"{prefix}.gamma", "float array (D,): the LayerNorm's scale"),
        Arg(f"{prefix}.beta", "float array (D,): its shift"),
    )


def _layer_entries(decoder: bool) -> tuple[Arg, ...]:
    ffn = (
        Arg("ffn.w1", "float array (D, F), F >= 1"),
        Arg("ffn.b1", "float array (F,)"),
        Arg("ffn.w2", "float array (F, D)"),
        Arg("ffn.b2", "float array (D,)"),
    )
    attention = _attention_entries("self_attn") + (
        _attention_entries("cross_attn") if decoder else ()
    )
    norms = sum((_norm_entries(f"norm{i}") for i in range(1, 4 if decoder else 3)), ())
    return attention + ffn + norms


def _biases(v: Any) -> int:
    return sum(b in v["self_attn"] for b in ("b_q", "b_k", "b_v", "b_o"))


def _params_arg(decoder: bool) -> Arg:
    parts = (
        "self_attn, cross_attn (MHA params), ffn {w1, b1, w2, b2}, norm1, norm2, norm3"
        if decoder
        else ("self_attn (MHA params), ffn {w1, b1, w2, b2}, norm1, norm2 {gamma, beta}")
    )
    return Arg(
        "params",
        f"dict of one layer's canonical weights: {parts} (reference/stacks.py)",
        kind="params",
        regions=(
            region("every attention bias", lambda v, i: _biases(v) == 4),
            region("no attention bias", lambda v, i: _biases(v) == 0),
            region("some attention biases", lambda v, i: 0 < _biases(v) < 4),
        ),
        entries=_layer_entries(decoder),
    )


def _rows_of(name: str) -> Any:
    """x or y as (rows, D) in float64."""
    return lambda i: i[name].astype(np.float64).reshape(-1, i[name].shape[-1])


def _offset_rows(rows: np.ndarray) -> bool:
    """Every row's |mean| exceeds 100 standard deviations (ROW_OFFSETS): layer_norm's own region
    '|mean| >> std', asked of the rows a stack's first norm sees."""
    return _mean_dominates({"x": rows})


def _input_arg(name: str, what: str) -> Arg:
    rows = _rows_of(name)
    return Arg(
        name,
        f"float array (B, T, D), every axis >= 1, {what}; finite values",
        regions=(
            region("T = 1", lambda v, i: v.shape[1] == 1),
            region("B > 1", lambda v, i: v.shape[0] > 1),
            region(
                "tiny values (|x| < 1e-2: LayerNorm's variance near eps)",
                lambda v, i: float(np.abs(rows(i)).max()) < 1e-2,
            ),
            region("outliers (|x| >= 10)", lambda v, i: float(np.abs(rows(i)).max()) >= 10),
            region(
                "a row offset under pre-LN (every |mean| > 100 std: a one-pass variance cancels)",
                lambda v, i: i["norm_first"] and _offset_rows(rows(i)),
            ),
            region(
                "ties (repeated values)",
                lambda v, i: bool(np.isin(rows(i), [-2, -1, 0, 1, 2]).all()),
            ),
        ),
    )


def heads_arg(width: Any) -> Arg:
    """num_heads, for inputs whose model width D is width(inputs)."""

    def next_divisor(H: int, inputs: Any) -> int | None:
        """Another head count that divides D: the nearest one above H, else below (None if D has
        only H)."""
        D = width(inputs)
        others = [h for h in range(1, D + 1) if D % h == 0 and h != H]
        above = [h for h in others if h > H]
        return above[0] if above else (others[-1] if others else None)

    return Arg(
        "num_heads",
        "int H >= 1 dividing D",
        kind="int",
        perturb=next_divisor,
        regions=(
            region("H = 1", lambda v, i: v == 1),
            region("H = D (one dimension per head)", lambda v, i: v == width(i)),
            region("1 < H < D", lambda v, i: 1 < v < width(i)),
        ),
    )


def layer_options(rows: Any = None) -> tuple[Arg, ...]:
    """norm_first, activation and eps, which every layer shares; rows(inputs): the (rows, D) a first
    LayerNorm normalises, where known."""
    eps_regions: tuple[Region, ...] = (
        region("the default 1e-5", lambda v, i: v == 1e-5),
        region("1e-6", lambda v, i: v == 1e-6),
        region("1e-12 (BERT)", lambda v, i: v == 1e-12),
        region("1e-3", lambda v, i: v == 1e-3),
        region("0", lambda v, i: v == 0),
    )
    if rows is not None:
        eps_regions += (
            region(
                "above a normalised input's variance", lambda v, i: v > float(rows(i).var(-1).min())
            ),
        )
    return (
        Arg(
            "norm_first",
            "bool: False post-LN (LN(x + f(x)), the paper), True pre-LN (x + f(LN(x)))",
            kind="flag",
            default=False,
            regions=(
                region("post-LN", lambda v, i: v is False),
                region("pre-LN", lambda v, i: v is True),
            ),
        ),
        Arg(
            "activation",
            "the FFN's 'relu', 'gelu' (exact) or 'gelu_tanh' (the tanh approximation); anything "
            "else is refused",
            kind="choice",
            default="relu",
            choices=ACTIVATIONS,
            regions=tuple(region(a, equals(a)) for a in ACTIVATIONS),
        ),
        Arg(
            "eps",
            "finite float >= 0 inside every LayerNorm's square root (0: no floor, where no "
            "normalised row is constant); "
            "a negative eps is refused",
            kind="number",
            default=1e-5,
            regions=eps_regions,
        ),
    )


def _options(mask_name: str, keys: str, stack: bool) -> tuple[Arg, ...]:
    """num_heads, the mask and the options every layer and stack shares (and a stack's
    final_norm)."""
    mask = Arg(
        mask_name,
        "None, bool (True = may attend) or additive float (-inf hides a key), broadcastable to "
        f"(B, H, T, {keys}); "
        "a row that sees no key attends to nothing (its attention output is b_o)",
        kind="mask",
        default=None,
        regions=_mask_regions(keys),
    )
    options = (heads_arg(_width), mask) + layer_options(
        _rows_of("y" if mask_name == "memory_mask" else "x")
    )
    if not stack:
        return options
    final = Arg(
        "final_norm",
        "None or {gamma (D,), beta (D,)}: a LayerNorm after the last layer (pre-LN stacks need "
        "one; torch's "
        "nn.Transformer has one after post-LN stacks too)",
        kind="other",  # not "params": so that dropping the final norm (its default) is a mutant too
        default=None,
        regions=(
            region("None", lambda v, i: v is None),
            region("present with pre-LN", lambda v, i: v is not None and i["norm_first"]),
            region("present with post-LN", lambda v, i: v is not None and not i["norm_first"]),
        ),
        entries=(
            Arg("gamma", "float array (D,): the final LayerNorm's scale"),
            Arg("beta", "float array (D,): its shift"),
        ),
    )
    return options + (final,)


def _layers_arg(decoder: bool) -> Arg:
    return Arg(
        "layers",
        f"a non-empty list of {'decoder' if decoder else 'encoder'} layer params (as the layer's "
        "params), applied in order",
        # a list, but "array" gives it the perturbation below as a mutant ("params" would give none)
        kind="array",
        perturb=_last_layer_perturbed,
        regions=(
            region("1 layer", lambda v, i: len(v) == 1),
            region("2 layers", lambda v, i: len(v) == 2),
            region("3 layers", lambda v, i: len(v) == 3),
        ),
    )


_MEMORY = Arg(
    "memory",
    "float array (B, S, D) with y's B and D, S >= 1: the encoder's output; finite values",
    regions=(
        region("S = 1", lambda v, i: v.shape[1] == 1),
        region("S < T", lambda v, i: v.shape[1] < i["y"].shape[1]),
        region("S > T", lambda v, i: v.shape[1] > i["y"].shape[1]),
    ),
)
ENCODER_LAYER_ARGS = (_input_arg("x", "the layer's input"), _params_arg(False)) + _options(
    "mask", "T", False
)
DECODER_LAYER_ARGS = (
    _input_arg("y", "the decoder's input (shifted targets)"),
    _MEMORY,
    _params_arg(True),
) + _options("memory_mask", "S", False)
ENCODER_ARGS = (_input_arg("x", "the stack's input"), _layers_arg(False)) + _options(
    "mask", "T", True
)
DECODER_ARGS = (
    _input_arg("y", "the decoder's input (shifted targets)"),
    _MEMORY,
    _layers_arg(True),
) + _options("memory_mask", "S", True)


def _bad(component: str, variant: str | None, change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(_draw(component)(data, dtype, variant))

    return draw


def _heads_not_dividing(inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "num_heads": _width(inputs) + 1}


def _mask_too_wide(inputs: dict[str, Any]) -> dict[str, Any]:
    decoder = "memory" in inputs
    T = inputs["y" if decoder else "x"].shape[1]
    keys = inputs["memory"].shape[1] if decoder else T
    return {
        **inputs,
        "memory_mask" if decoder else "mask": np.ones((T, keys + 1), bool),
    }  # (T, keys + 1)


def _memory_narrower(inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "memory": inputs["memory"][..., :-1]}  # (B, S, D - 1)


def _bad_inputs(component: str) -> tuple[BadInput, ...]:
    bad: tuple[BadInput, ...] = (
        BadInput(
            "heads_do_not_divide_D", "num_heads = D + 1", _bad(component, None, _heads_not_dividing)
        ),
        BadInput(
            "unknown_activation",
            "activation='swish'",
            _bad(component, None, lambda i: {**i, "activation": "swish"}),
        ),
        BadInput(
            "negative_eps", "eps = -1e-5", _bad(component, None, lambda i: {**i, "eps": -1e-5})
        ),
        BadInput(
            "mask_not_broadcastable", "mask (T, keys + 1)", _bad(component, None, _mask_too_wide)
        ),
    )
    if "decoder" in component:
        bad += (
            BadInput(
                "memory_width_differs",
                "memory (B, S, D - 1)",
                _bad(component, None, _memory_narrower),
            ),
        )
    if component in ("encoder", "decoder", "incremental_decoder"):
        bad += (
            BadInput(
                "no_layers", "layers = []", _bad(component, None, lambda i: {**i, "layers": []})
            ),
        )
    return bad


def _variants(*names: str) -> tuple[Stacking, ...]:
    return tuple(Stacking.parse(n) for n in names)


# The placements real models use, post-LN (the paper, BERT) and pre-LN (GPT-2, T5), each unmasked
# and with a mask of a drawn kind (MASK_KINDS)
LAYER_VARIANTS = _variants("post_ln", "pre_ln", "post_ln+masked", "pre_ln+masked")
STACK_VARIANTS = _variants("post_ln", "pre_ln+final_norm", "post_ln+masked", "pre_ln+masked")


def _component(
    name: str,
    sublayers: int,
    variants: tuple[Stacking, ...],
    signature: str,
    args: tuple[Arg, ...],
    **more: Any,
) -> Component:
    return Component(
        name=name,
        family="stacks",
        signature=signature,
        shapes="x/y (B, T, D), memory (B, S, D) -> (B, T, D)",
        error_scale=_scale(sublayers),
        args=args,
        draw=_draw(name),
        variants=variants,
        bad_inputs=_bad_inputs(name),
        **more,
    )


ENCODER_LAYER = _component(
    "encoder_layer",
    2,
    LAYER_VARIANTS,
    "encoder_layer(x, params, num_heads, mask=None, norm_first=False, activation='relu', eps=1e-5)",
    ENCODER_LAYER_ARGS,
    gradient=Gradient(
        wrt=paths("x"),
        variants=_variants("post_ln+gelu", "pre_ln+gelu"),
        draw=_draw("encoder_layer", offsets=False),
    ),
)
DECODER_LAYER = _component(
    "decoder_layer",
    3,
    LAYER_VARIANTS,
    "decoder_layer(y, memory, params, num_heads, memory_mask=None, norm_first=False, "
    "activation='relu', eps=1e-5)",
    DECODER_LAYER_ARGS,
    gradient=Gradient(wrt=paths("y", "memory"), variants=_variants("post_ln+gelu")),
)
ENCODER = _component(
    "encoder",
    2,
    STACK_VARIANTS,
    "encoder(x, layers, num_heads, mask=None, ..., final_norm=None)",
    ENCODER_ARGS,
)
DECODER = _component(
    "decoder",
    3,
    STACK_VARIANTS,
    "decoder(y, memory, layers, num_heads, memory_mask=None, ..., final_norm=None)",
    DECODER_ARGS,
)
INCREMENTAL_DECODER = _component(
    "incremental_decoder",
    3,
    STACK_VARIANTS,
    "incremental_decoder(y, memory, layers, num_heads, memory_mask=None, ..., final_norm=None): "
    "one position per step, "
    "key/value cache",
    DECODER_ARGS,
    # float64 and float32: the cached path compiles one jax step per layer, shape and dtype, and its
    # arithmetic is the parallel decoder's, which runs at all four dtypes.
    dtypes=(FLOAT64, FLOAT32),
)

# Properties beside the differential one (the records' draws give it), registered once the records
# they belong to exist.
_LAYERS_AND_STACKS = (ENCODER_LAYER, DECODER_LAYER, ENCODER, DECODER, INCREMENTAL_DECODER)
prop(*_LAYERS_AND_STACKS, variants=_variants("post_ln+masked"))(batch_equals_items)
prop(DECODER_LAYER, DECODER, INCREMENTAL_DECODER, variants=_variants("post_ln", "pre_ln+masked"))(
    future_targets_do_not_matter
)
prop(INCREMENTAL_DECODER, variants=_variants("post_ln", "pre_ln+final_norm"))(cache_equals_parallel)
