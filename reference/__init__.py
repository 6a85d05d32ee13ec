"""The NumPy oracle: one small pure function per component, named exactly as in the spec."""

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
from reference.stacks import decoder, decoder_layer, encoder, encoder_layer, incremental_decoder
from reference.training import cross_entropy, shift_right

__all__ = [
    "beam_search",
    "greedy_decode",
    "incremental_decoder",
    "decoder",
    "decoder_layer",
    "encoder",
    "encoder_decoder",
    "encoder_layer",
    "add_and_norm",
    "cross_entropy",
    "dropout",
    "embed_with_positions",
    "layer_norm",
    "position_wise_ffn",
    "shift_right",
    "sinusoidal_positional_encoding",
    "tied_output_logits",
    "token_embedding",
    "attention_weights",
    "causal_mask",
    "key_padding_mask",
    "multi_head_attention",
    "scaled_dot_product_attention",
    "softmax",
]
