"""The NumPy reference as an adapter: the oracle checked against its own spec (properties, bad inputs).

It runs every component in the test dtype, so it is also the "plain same-precision evaluation" the
tolerance policy measures, and must pass with room to spare.
"""

from reference import (  # noqa: F401  (re-exported: the adapter IS these functions)
    add_and_norm,
    attention_weights,
    beam_search,
    causal_mask,
    cross_entropy,
    decoder,
    decoder_layer,
    dropout,
    embed_with_positions,
    encoder,
    encoder_decoder,
    encoder_layer,
    greedy_decode,
    incremental_decoder,
    key_padding_mask,
    layer_norm,
    multi_head_attention,
    position_wise_ffn,
    scaled_dot_product_attention,
    shift_right,
    sinusoidal_positional_encoding,
    softmax,
    tied_output_logits,
    token_embedding,
)

name = "numpy"
deviations: dict[str, str] = {}
