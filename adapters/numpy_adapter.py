"""The NumPy reference as an adapter: the oracle checked against its own spec (properties, bad inputs).

It runs every component in the test dtype, so it is also the "plain same-precision evaluation" the
tolerance policy measures, and must pass with room to spare.
"""

import numpy as np  # noqa: E402

from reference import (  # noqa: F401  (re-exported: the adapter IS these functions)
    add_and_norm,
    additive_attention_weights,
    attention_context,
    attention_decoder,
    attention_weights,
    attentional_hidden,
    beam_search,
    causal_mask,
    context_vector,
    cross_entropy,
    decoder,
    decoder_layer,
    dropout,
    embed_with_positions,
    encoder,
    encoder_decoder,
    encoder_layer,
    free_running_decoder,
    greedy_decode,
    incremental_decoder,
    key_padding_mask,
    layer_norm,
    multi_head_attention,
    multiplicative_attention_weights,
    position_wise_ffn,
    recurrent_cell,
    rnn_encoder,
    scaled_dot_product_attention,
    shift_right,
    sinusoidal_positional_encoding,
    softmax,
    tied_output_logits,
    token_embedding,
)

name = "numpy"
deviations: dict[str, str] = {}


def vjp(component: str, inputs: dict, cotangent: np.ndarray, wrt: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Reverse-mode derivatives of the reference itself in the test dtype (reference/autodiff.py, autograd).
    Checked against the finite differences of the oracle like any adapter's, this tests the harness:
    autograd's rules, the oracle's differences and the aliasing of one array used several times."""
    import reference
    from reference import autodiff
    from spec.gradients import alias_paths

    groups = tuple(alias_paths(inputs, p) for p in wrt)
    return dict(zip(wrt, autodiff.vjp(getattr(reference, component), inputs, cotangent, groups), strict=True))
