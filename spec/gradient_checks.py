"""The vjp properties of the components whose records do not yet state their ``Gradient``
(spec/core.py): which inputs are differentiated and over which variants (spec/gradients.py states
the interface, the oracle and the bound). The registry appends these to the components' properties.
"""

from __future__ import annotations

from typing import Any

from spec import recurrent, seq2seq, stacks
from spec.core import Property
from spec.gradients import vjp_property


def _fixed(*paths: str) -> Any:
    return lambda variant: paths


VJP_PROPERTIES: dict[str, Property] = {
    "encoder_layer": vjp_property(
        (stacks._draw("encoder_layer")), _fixed("x"), ("post_ln+gelu", "pre_ln+gelu")
    ),
    "decoder_layer": vjp_property(
        (stacks._draw("decoder_layer")), _fixed("y", "memory"), ("post_ln+gelu",)
    ),
    "recurrent_cell": vjp_property((recurrent._cell_inputs), _fixed("x", "state"), ("gru", "lstm")),
    "rnn_encoder": vjp_property(
        (recurrent.encoder_inputs), _fixed("x"), ("lstm+bidirectional+lengths",)
    ),
    "additive_attention_weights": vjp_property(
        (seq2seq._weights_inputs("additive")), _fixed("s_prev", "h"), ("padding",)
    ),
    "attention_decoder": vjp_property(
        (seq2seq.decoder_inputs), _fixed("memory", "s0"), ("bahdanau+padding", "luong_general")
    ),
}


def gradient_properties(component: str) -> tuple[Property, ...]:
    """The vjp property of a component whose record states no Gradient (being moved into the
    records)."""
    return (VJP_PROPERTIES[component],) if component in VJP_PROPERTIES else ()
