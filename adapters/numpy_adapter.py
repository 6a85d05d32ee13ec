"""The NumPy reference as an adapter: the oracle checked against its own spec (properties, bad inputs).

It runs every component in the test dtype, so it is also the "plain same-precision evaluation" the
tolerance policy measures, and must pass with room to spare.
"""

from reference import (  # noqa: F401  (re-exported: the adapter IS these functions)
    add_and_norm,
    attention_weights,
    beam_search,
    greedy_decode,
    cross_entropy,
    decoder,
    decoder_layer,
    encoder,
    encoder_decoder,
    encoder_layer,
    dropout,
    embed_with_positions,
    layer_norm,
    position_wise_ffn,
    shift_right,
    sinusoidal_positional_encoding,
    tied_output_logits,
    token_embedding,
    causal_mask,
    key_padding_mask,
    multi_head_attention,
    scaled_dot_product_attention,
    softmax,
)

name = "numpy"
deviations: dict[str, str] = {}
