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
    """The finite-difference self-check: the full gradient by central differences of the reference, one
    coordinate at a time, in extended precision. It shares no code path with the directional oracle
    it is checked against (one coordinate vs one random direction), so agreement tests the harness."""
    import reference
    from spec.core import Unsupported
    from spec.gradients import alias_paths, get_path, set_paths
    from spec.tolerance import cast_floats

    if any(get_path(inputs, p).dtype == np.float64 for p in wrt):
        # a central difference in x87 extended precision is good to ~1e-13 relative: coarser than the
        # float64 gradient bound, so the self-check runs at float32 (differences in extended precision)
        raise Unsupported("the finite-difference self-check runs at float32 only")
    if inputs.get("activation") == "relu":
        raise Unsupported("coordinate-wise differences of a ReLU network can straddle its kinks")
    wide = np.longdouble
    fn = getattr(reference, component)
    x = cast_floats(dict(inputs), np.dtype(wide))
    c = np.asarray(cotangent, dtype=wide)
    grads = {}
    for path in wrt:
        aliases = alias_paths(inputs, path)  # one array used as query, key and value moves in every use
        base = get_path(x, path)
        finite = base[np.isfinite(base)]
        e = np.cbrt(np.finfo(wide).eps / 2) * max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)
        g = np.zeros(base.shape, wide)
        for i in np.ndindex(base.shape):
            if not np.isfinite(base[i]):
                continue  # a -inf mask entry: no derivative (0)
            step = np.zeros(base.shape, wide)
            step[i] = e
            plus, minus = fn(**set_paths(x, aliases, base + step)), fn(**set_paths(x, aliases, base - step))
            g[i] = (c * (np.asarray(plus, wide) - np.asarray(minus, wide))).sum() / (2 * e)
        grads[path] = g.astype(get_path(inputs, path).dtype)
    return grads
