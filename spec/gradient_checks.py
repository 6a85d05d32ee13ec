"""The vjp properties of the components whose records do not yet state their ``Gradient`` (spec/core.py):
which inputs are differentiated and over which variants (spec/gradients.py states the interface, the
oracle and the bound). The registry appends these to the components' properties.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from spec import layers, recurrent, seq2seq, stacks, training
from spec.core import Property
from spec.gradients import GRAD_ULPS, vjp_property


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


VJP_PROPERTIES: dict[str, Property] = {
    "layer_norm": vjp_property((layers._ln_draw_for("layer_norm", gradient=True)), _fixed("x", "gamma", "beta")),
    "position_wise_ffn": vjp_property(
        (layers._ffn_inputs), _fixed("x", "params.w1", "params.b1", "params.w2", "params.b2"), ("relu", "gelu"), _relu_step
    ),
    "encoder_layer": vjp_property((stacks._draw("encoder_layer")), _fixed("x"), ("post_ln+gelu", "pre_ln+gelu")),
    "decoder_layer": vjp_property((stacks._draw("decoder_layer")), _fixed("y", "memory"), ("post_ln+gelu",)),
    "cross_entropy": vjp_property((training._ce_inputs), _fixed("logits"), ("padded+smoothing",)),
    "recurrent_cell": vjp_property((recurrent._cell_inputs), _fixed("x", "state"), ("gru", "lstm")),
    "rnn_encoder": vjp_property((recurrent.encoder_inputs), _fixed("x"), ("lstm+bidirectional+lengths",)),
    "additive_attention_weights": vjp_property((seq2seq._weights_inputs("additive")), _fixed("s_prev", "h"), ("padding",)),
    "attention_decoder": vjp_property(
        (seq2seq.decoder_inputs), _fixed("memory", "s0"), ("bahdanau+padding", "luong_general")
    ),
}


def gradient_properties(component: str) -> tuple[Property, ...]:
    """The vjp property of a component whose record states no Gradient (being moved into the records)."""
    return (VJP_PROPERTIES[component],) if component in VJP_PROPERTIES else ()
