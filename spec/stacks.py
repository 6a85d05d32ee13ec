"""Spec entries: encoder_layer, decoder_layer, encoder, decoder (canonical params in reference/stacks.py).

    encoder_layer(x (B, T, D), params, num_heads, mask=None, norm_first=False, activation="relu", eps=1e-5)
    decoder_layer(y (B, T, D), memory (B, S, D), params, num_heads, memory_mask=None, norm_first=False, ...)
    encoder(x, layers, num_heads, mask=None, norm_first=False, activation="relu", eps=1e-5, final_norm=None)
    decoder(y, memory, layers, num_heads, memory_mask=None, ..., final_norm=None)
The decoder's self-attention is causal (top-left). Dropout is not part of these: evaluation mode.
error_scale (compound components): (1 + max|output|) times the number of sublayers. The measured
same-precision error, which sees every rounding of the composition, carries the bound; the floor only
guards outputs of O(1) magnitude against a lucky exact same-precision run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import FLOAT32, FLOAT64, DType
from spec.strategies import AttentionShape, arrays, masks, mha_params, normal_params, seeds


class StackShape(NamedTuple):
    B: int
    T: int
    S: int
    D: int
    H: int


STACK_BUCKETS = (StackShape(1, 1, 1, 4, 1), StackShape(2, 4, 3, 8, 2), StackShape(1, 5, 6, 8, 4))


@st.composite
def layer_params(draw: Any, D: int, dtype: DType, decoder: bool) -> dict[str, Any]:
    """Return a strategy for one layer's canonical params (F = 2 D; LayerNorm gamma ~ 1, beta ~ 0)."""
    F = 2 * D
    params: dict[str, Any] = {"self_attn": draw(mha_params(D, dtype, biases=True), label="self_attn")}
    if decoder:
        params["cross_attn"] = draw(mha_params(D, dtype, biases=True), label="cross_attn")
    params["ffn"] = draw(
        normal_params({"w1": (D, F), "b1": (F,), "w2": (F, D), "b2": (D,)}, dtype, {"b1": 0.1, "b2": 0.1}), label="ffn"
    )
    for i in range(1, 4 if decoder else 3):
        p = draw(normal_params({"gamma": (D,), "beta": (D,)}, dtype, {"gamma": 0.1, "beta": 0.1}), label=f"norm{i}")
        params[f"norm{i}"] = {"gamma": (p["gamma"].astype(np.float64) + 1).astype(dtype.np_dtype), "beta": p["beta"]}
    return params


def _draw(component: str) -> Any:
    decoder = "decoder" in component
    stack = component in ("encoder", "decoder", "incremental_decoder")

    def draw(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
        variant = variant or "post_ln"
        s: StackShape = data.draw(st.sampled_from(STACK_BUCKETS), label="shape")
        x = data.draw(arrays((s.B, s.T, s.D), dtype, allow_large=False), label="x")
        inputs: dict[str, Any] = {"y" if decoder else "x": x}
        if decoder:
            inputs["memory"] = data.draw(arrays((s.B, s.S, s.D), dtype, allow_large=False), label="memory")
        n = 2 if stack else 1
        layers = [data.draw(layer_params(s.D, dtype, decoder), label=f"layer{i}") for i in range(n)]
        if stack:
            inputs["layers"] = layers
        else:
            inputs["params"] = layers[0]
        inputs["num_heads"] = s.H
        if "padding" in variant:
            S = s.S if decoder else s.T
            m = data.draw(masks(AttentionShape(s.B, s.H, s.T, S, s.D // s.H, s.D // s.H), "padding", dtype), label="mask")
            inputs["memory_mask" if decoder else "mask"] = m.mask
        inputs["norm_first"] = variant.startswith("pre_ln")
        inputs["activation"] = "gelu" if "gelu" in variant else "relu"
        if stack and "final_norm" in variant:
            inputs["final_norm"] = data.draw(
                normal_params({"gamma": (s.D,), "beta": (s.D,)}, dtype, {"gamma": 1.0, "beta": 0.1}), label="final_norm"
            )
        return inputs

    return draw


def _scale(sublayers: int) -> Any:
    def scale(inputs: dict[str, Any]) -> float:
        from spec.tolerance import cast_floats

        component = "decoder" if "memory" in inputs else "encoder"
        import reference

        fn = getattr(reference, component + ("" if "layers" in inputs else "_layer"))
        wide = cast_floats(inputs, np.dtype(np.float64))
        out = fn(**wide)
        n = len(inputs.get("layers", [None]))
        base = (1.0 + float(np.abs(out).max())) * sublayers * n
        if wide.get("final_norm") is None:
            return base
        # A final LayerNorm divides what reaches it by its std (found by the seed sweep: jax, pre-LN,
        # D = 4, float64 off by 1.2x a bound without this): the stack's error is amplified by
        # max|gamma| / std, and the norm adds its own rounding (spec/layers.py's scale).
        from spec.layers import _ln_scale

        h = fn(**{**wide, "final_norm": None})  # (B, T, D): what the final norm normalises
        gamma, eps = wide["final_norm"]["gamma"], wide.get("eps", 1e-5)
        amplification = float(np.abs(gamma).max()) / float(np.sqrt(h.var(-1).min() + eps))
        return base * max(1.0, amplification) + _ln_scale(
            {"x": h, "gamma": gamma, "beta": wide["final_norm"]["beta"], "eps": eps}
        )

    return scale


def future_targets_do_not_matter(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Changing the decoder input at positions >= t leaves every output before t unchanged (causality)."""
    inputs = _draw(subject.component.name)(data, subject.dtype, variant)
    y = inputs["y"]
    t = data.draw(st.integers(0, y.shape[1] - 1), label="t")
    noise = (3 * np.random.default_rng(data.draw(seeds(), label="noise_seed")).standard_normal(y[:, t:].shape)).astype(y.dtype)
    changed = {**inputs, "y": np.concatenate([y[:, :t], noise], axis=1)}
    base = subject.case(inputs)
    earlier = (np.arange(y.shape[1]) < t)[None, :, None]  # (1, T, 1)
    base.assert_equivalent(
        base.got, subject.case(changed), f"outputs before t={t} after changing the inputs from t on", select=earlier
    )


def batch_equals_items(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """A batch equals its items computed one at a time."""
    inputs = _draw(subject.component.name)(data, subject.dtype, variant)
    whole = subject.case(inputs)
    for b in range(whole.got.shape[0]):
        item = {
            k: (v[b : b + 1] if isinstance(v, np.ndarray) and v.ndim >= 3 and v.shape[0] > 1 else v) for k, v in inputs.items()
        }
        whole.assert_equivalent(whole.got[b : b + 1], subject.case(item), f"batch item {b} alone vs in the batch")


def cache_equals_parallel(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Decoding one position at a time with a key/value cache equals the same adapter's parallel
    (teacher-forced) decoder at every position: issue 3's property 7(b) with a cache. The model's
    log-probs are a per-position function of the decoder output, so equality here carries over to them."""
    inputs = _draw(subject.component.name)(data, subject.dtype, variant)
    cached = subject.case(inputs)
    cached.assert_equivalent(cached.got, subject.sibling("decoder").case(inputs), "cached step-by-step vs parallel decoder")


def _bad_heads(component: str) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = _draw(component)(data, dtype, None)
        return {**inputs, "num_heads": (inputs.get("y", inputs.get("x"))).shape[-1] + 1}

    return draw


def _bad_memory(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _draw("incremental_decoder")(data, dtype, None)
    return {**inputs, "memory": inputs["memory"][..., :-1]}  # (B, S, D - 1)


ENCODER_VARIANTS = ("post_ln", "pre_ln", "post_ln+padding", "pre_ln+gelu")
DECODER_VARIANTS = ("post_ln", "pre_ln", "post_ln+padding")


def _component(name: str, sublayers: int, variants: tuple[str, ...], extra: tuple[Property, ...], signature: str) -> Component:
    return Component(
        name=name,
        family="stacks",
        signature=signature,
        shapes="x/y (B, T, D), memory (B, S, D) -> (B, T, D)",
        error_scale=_scale(sublayers),
        properties=(
            matches_reference(_draw(name), variants),
            Property("batch_equals_items", batch_equals_items.__doc__, batch_equals_items, variants[:1]),
        )
        + extra,
        bad_inputs=(BadInput("heads_do_not_divide_D", "num_heads = D + 1", _bad_heads(name)),),
    )


_CAUSAL = (
    Property(
        "future_targets_do_not_matter", future_targets_do_not_matter.__doc__, future_targets_do_not_matter, ("post_ln", "pre_ln")
    ),
)

ENCODER_LAYER = _component(
    "encoder_layer",
    2,
    ENCODER_VARIANTS,
    (),
    "encoder_layer(x, params, num_heads, mask=None, norm_first=False, activation='relu', eps=1e-5)",
)
DECODER_LAYER = _component(
    "decoder_layer",
    3,
    DECODER_VARIANTS,
    _CAUSAL,
    "decoder_layer(y, memory, params, num_heads, memory_mask=None, norm_first=False, activation='relu', eps=1e-5)",
)
_STACK_VARIANTS = ("post_ln", "pre_ln+final_norm")
ENCODER = _component("encoder", 2, _STACK_VARIANTS, (), "encoder(x, layers, num_heads, mask=None, ..., final_norm=None)")
DECODER = _component(
    "decoder",
    3,
    ("post_ln", "pre_ln+final_norm"),
    _CAUSAL,
    "decoder(y, memory, layers, num_heads, memory_mask=None, ..., final_norm=None)",
)
INCREMENTAL_DECODER = _component(
    "incremental_decoder",
    3,
    ("post_ln", "pre_ln+final_norm", "post_ln+padding"),
    _CAUSAL + (Property("cache_equals_parallel", cache_equals_parallel.__doc__, cache_equals_parallel, _STACK_VARIANTS),),
    "incremental_decoder(y, memory, layers, num_heads, memory_mask=None, ..., final_norm=None): one position per step, "
    "key/value cache",
)
# float64 and float32: the cached path compiles one jax step per layer, shape and dtype, and its
# arithmetic is the parallel decoder's, which runs at all four dtypes.
INCREMENTAL_DECODER = replace(
    INCREMENTAL_DECODER,
    bad_inputs=INCREMENTAL_DECODER.bad_inputs + (BadInput("memory_width_differs", "memory (B, S, D - 1)", _bad_memory),),
    dtypes=(FLOAT64, FLOAT32),
)
