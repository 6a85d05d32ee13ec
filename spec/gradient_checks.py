"""Which components are differentiated, with respect to what, and the gradient properties (spec/gradients.py
states the interface, the oracle and the bound). The registry appends these to the components' properties.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from reference.gradients import softmax_vjp
from spec import layers, multi_head, recurrent, seq2seq, stacks, training
from spec.attention import SCALED_DOT_PRODUCT_ATTENTION
from spec.core import Property, Subject
from spec.gradients import GRAD_DTYPES, GRAD_ULPS, GradBound, call_vjp, vjp_property
from spec.softmax import softmax_inputs
from spec.strategies import seeds
from spec.tolerance import compare


def _plain(draw: Any) -> Any:
    """Adapt a (data, dtype, variant) draw to the (data, subject, variant) form."""
    return lambda data, subject, variant: draw(data, subject.dtype, variant)


def _sdpa(data: st.DataObject, subject: Subject, variant: Any) -> dict[str, Any]:
    return SCALED_DOT_PRODUCT_ATTENTION.draw(data, subject.dtype, variant)


def _softmax(data: st.DataObject, subject: Subject, variant: str | None) -> dict[str, Any]:
    return data.draw(softmax_inputs(subject.dtype), label="inputs")


def _mha(data: st.DataObject, subject: Subject, variant: Any) -> dict[str, Any]:
    return multi_head.draw_mha(data, subject.dtype, variant or "cross")


def _relu_step(inputs: dict[str, Any], path: str, t: np.ndarray, u: float) -> float | None:
    """FFN with ReLU: a step that keeps every pre-activation x W1 + b1 on its side of 0. Inputs whose
    pre-activation is within rounding of 0 are rejected: there the adapter's branch is rounding too."""
    if inputs.get("activation") != "relu":
        return None
    x, p = inputs["x"].astype(np.float64), {k: v.astype(np.float64) for k, v in inputs["params"].items()}
    pre = x @ p["w1"] + p["b1"]  # (..., F)
    rounding = np.abs(x) @ np.abs(p["w1"]) + np.abs(p["b1"])  # the magnitude pre is rounded at
    assume(bool((np.abs(pre) > GRAD_ULPS * u * rounding).all()))
    moves = {"x": lambda: t @ p["w1"], "params.w1": lambda: x @ t, "params.b1": lambda: np.broadcast_to(t, pre.shape)}
    if path not in moves:
        return None  # w2, b2 act after the kink
    return 0.25 * float(np.abs(pre).min()) / max(float(np.abs(moves[path]()).max()), 1e-300)


def _fixed(*paths: str) -> Any:
    return lambda variant: paths


_MHA_WRT = ("query", "key", "value", "params.w_q", "params.w_k", "params.w_v", "params.w_o")

VJP_PROPERTIES: dict[str, Property] = {
    "softmax": vjp_property(_softmax, _fixed("x")),
    "scaled_dot_product_attention": vjp_property(
        _sdpa,
        lambda v: ("q", "k", "v", "mask") if v == "additive" else ("q", "k", "v"),
        ("none", "additive", "padding", "causal_top_left"),
    ),
    # self: one array (query is key is value); memory: key is value; cross: three arrays
    "multi_head_attention": vjp_property(
        _mha,
        lambda v: _MHA_WRT if str(v).startswith("cross") else _MHA_WRT[:2] + _MHA_WRT[3:] if str(v).startswith("memory") else _MHA_WRT[:1] + _MHA_WRT[3:],
        ("self", "cross", "cross+padding", "memory+padding"),
    ),
    "layer_norm": vjp_property(_plain(layers._ln_draw_for("layer_norm", gradient=True)), _fixed("x", "gamma", "beta")),
    "position_wise_ffn": vjp_property(
        _plain(layers._ffn_inputs), _fixed("x", "params.w1", "params.b1", "params.w2", "params.b2"), ("relu", "gelu"), _relu_step
    ),
    "encoder_layer": vjp_property(_plain(stacks._draw("encoder_layer")), _fixed("x"), ("post_ln+gelu", "pre_ln+gelu")),
    "decoder_layer": vjp_property(_plain(stacks._draw("decoder_layer")), _fixed("y", "memory"), ("post_ln+gelu",)),
    "cross_entropy": vjp_property(_plain(training._ce_inputs), _fixed("logits"), ("padded+smoothing",)),
    "recurrent_cell": vjp_property(_plain(recurrent._cell_inputs), _fixed("x", "state"), ("gru", "lstm")),
    "rnn_encoder": vjp_property(_plain(recurrent.encoder_inputs), _fixed("x"), ("lstm+bidirectional+lengths",)),
    "additive_attention_weights": vjp_property(_plain(seq2seq._weights_inputs("additive")), _fixed("s_prev", "h"), ("padding",)),
    "attention_decoder": vjp_property(
        _plain(seq2seq.decoder_inputs), _fixed("memory", "s0"), ("bahdanau+padding", "luong_general")
    ),
}


def _cotangent(data: st.DataObject, shape: tuple[int, ...], subject: Subject) -> np.ndarray:
    rng = np.random.default_rng(data.draw(seeds(), label="cotangent_seed"))
    return np.asarray(rng.standard_normal(shape), dtype=subject.dtype.np_dtype)


def masked_keys_get_no_gradient(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Keys and values a query may not attend to (key padding) receive exactly zero gradient."""
    inputs = _sdpa(data, subject, "padding")
    cotangent = _cotangent(data, subject.case(inputs).expected.shape, subject)
    grads = call_vjp(subject, inputs, cotangent, ("k", "v"))
    padded = ~inputs["mask"][:, :, 0, :, None]  # (B, 1, 1, S) key-padding mask -> (B, 1, S, 1)
    for name in ("k", "v"):
        leaked = np.abs(grads[name].astype(np.float64)) * padded  # (B, H, S, K), nonzero only at padded keys
        if leaked.max() != 0:
            where = tuple(int(i) for i in np.unravel_index(np.argmax(leaked), leaked.shape))
            subject.fail(inputs, f"gradient leaks into masked key position: d{name}{list(where)} = {grads[name][where]}")


def causal_future_gets_no_gradient(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Under top-left causality, a cotangent on outputs before t sends exactly zero gradient to q, k, v at >= t."""
    inputs = _sdpa(data, subject, "causal_top_left")
    shape = subject.case(inputs).expected.shape  # (B, H, T, Kv)
    t = data.draw(st.integers(0, min(shape[2], inputs["k"].shape[2]) - 1), label="t")
    cotangent = _cotangent(data, shape, subject)
    cotangent[:, :, t:] = 0  # only outputs before t are differentiated
    grads = call_vjp(subject, inputs, cotangent, ("q", "k", "v"))
    for name in ("q", "k", "v"):
        later = np.abs(grads[name][:, :, t:].astype(np.float64))
        if later.size and later.max() != 0:
            where = tuple(int(i) for i in np.unravel_index(np.argmax(later), later.shape))
            subject.fail(inputs, f"outputs before t={t} send gradient to {name} at position {where[2] + t}: {later[where]:.3g}")


def softmax_gradient_sums_to_zero(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Softmax's Jacobian rows sum to zero: the input gradient sums to 0 along the softmax axis."""
    inputs = _softmax(data, subject, variant)
    cotangent = _cotangent(data, inputs["x"].shape, subject)
    g = call_vjp(subject, inputs, cotangent, ("x",))["x"].astype(np.float64)
    # dx_i = y_i (c_i - <c, y>): the sum rounds at the magnitude of its terms (reference/gradients.py)
    magnitude = softmax_vjp(**inputs, cotangent=cotangent)[1]["x"].sum(inputs["axis"])
    floor = GRAD_ULPS * subject.dtype.unit_roundoff * float(magnitude.max())
    sums = g.sum(inputs["axis"])
    bound = GradBound(floor, 0.0, floor, subject.dtype.name)
    subject.check(compare(sums, np.zeros_like(sums), bound, "sum of the input gradient along the softmax axis"), inputs)


def _gradient_property(name: str, check: Any) -> Property:
    return Property(name, check.__doc__, check, (None,), GRAD_DTYPES, "gradient")


EXTRA_PROPERTIES: dict[str, tuple[Property, ...]] = {
    "scaled_dot_product_attention": (
        _gradient_property("masked_keys_get_no_gradient", masked_keys_get_no_gradient),
        _gradient_property("causal_future_gets_no_gradient", causal_future_gets_no_gradient),
    ),
    "softmax": (_gradient_property("gradient_rows_sum_to_zero", softmax_gradient_sums_to_zero),),
}


def gradient_properties(component: str) -> tuple[Property, ...]:
    """Every gradient property of a component, in the order the tests list them."""
    own = (VJP_PROPERTIES[component],) if component in VJP_PROPERTIES else ()
    return own + EXTRA_PROPERTIES.get(component, ())
