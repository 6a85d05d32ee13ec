"""The NumPy oracle: one small pure function per component, named exactly as in the spec.

This module is also the built-in ``numpy`` adapter (``--adapter numpy``): the oracle checked against
its own spec, in the test dtype, which is the "plain same-precision evaluation" the tolerance policy
measures, so it must pass with room to spare. Its ``vjp`` is reverse-mode differentiation of these
very functions (reference/autodiff.py), judged against the finite differences of the oracle like any
adapter's.
"""

from reference.attention import (
    attention_weights,
    multi_head_attention,
    scaled_dot_product_attention,
    softmax,
)
from reference.decoding import beam_search, greedy_decode
from reference.layers import (
    add_and_norm,
    dropout,
    embed_with_positions,
    layer_norm,
    position_wise_ffn,
    sinusoidal_positional_encoding,
    tied_output_logits,
    token_embedding,
)
from reference.masks import causal_mask, key_padding_mask
from reference.model import encoder_decoder
from reference.recurrent import context_vector, recurrent_cell, rnn_encoder
from reference.seq2seq import (
    additive_attention_weights,
    attention_context,
    attention_decoder,
    attentional_hidden,
    free_running_decoder,
    multiplicative_attention_weights,
)
from reference.stacks import decoder, decoder_layer, encoder, encoder_layer, incremental_decoder
from reference.training import cross_entropy, shift_right

__all__ = [
    "add_and_norm",
    "additive_attention_weights",
    "attention_context",
    "attention_decoder",
    "attention_weights",
    "attentional_hidden",
    "beam_search",
    "causal_mask",
    "context_vector",
    "cross_entropy",
    "decoder",
    "decoder_layer",
    "dropout",
    "embed_with_positions",
    "encoder",
    "encoder_decoder",
    "encoder_layer",
    "free_running_decoder",
    "greedy_decode",
    "incremental_decoder",
    "key_padding_mask",
    "layer_norm",
    "multi_head_attention",
    "multiplicative_attention_weights",
    "position_wise_ffn",
    "recurrent_cell",
    "rnn_encoder",
    "scaled_dot_product_attention",
    "shift_right",
    "sinusoidal_positional_encoding",
    "softmax",
    "tied_output_logits",
    "token_embedding",
]

# The adapter interface (adapters/__init__.py): the reference is the built-in numpy adapter.
name = "numpy"
deviations: dict[str, str] = {}


def vjp(component: str, inputs: dict, cotangent, wrt: tuple[str, ...]) -> dict:
    """Gradients of <cotangent, component(**inputs)> for the inputs at the paths in wrt, in their
    dtype."""
    from reference import autodiff

    groups = tuple(autodiff.alias_paths(inputs, p) for p in wrt)
    return dict(
        zip(wrt, autodiff.vjp(globals()[component], inputs, cotangent, groups), strict=True)
    )
