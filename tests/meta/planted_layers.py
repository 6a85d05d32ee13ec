"""Deliberately broken variants of the Transformer's layers (issue: the whole Transformer)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import reference as R


def _pe(
    T: int,
    D: int,
    base: float = 10000.0,
    dtype: str = "float32",
    *,
    swap: bool = False,
    wrong_base: float | None = None,
    work: type = np.float64,
) -> np.ndarray:
    angle = np.arange(T, dtype=work)[:, None] / work(wrong_base or base) ** (
        np.arange(0, D, 2, dtype=work) / work(D)
    )
    angle = angle.astype(work)
    pe = np.zeros((T, D), work)
    first, second = (np.cos, np.sin) if swap else (np.sin, np.cos)
    pe[:, 0::2] = first(angle)
    pe[:, 1::2] = second(angle[:, : D // 2])
    return pe.astype(dtype)


pe_sin_cos_swapped = SimpleNamespace(
    name="pe_sin_cos_swapped",
    sinusoidal_positional_encoding=lambda T, D, base=10000.0, dtype="float32": _pe(
        T, D, base, dtype, swap=True
    ),
)
pe_base_1000 = SimpleNamespace(
    name="pe_base_1000",
    sinusoidal_positional_encoding=lambda T, D, base=10000.0, dtype="float32": _pe(
        T, D, base, dtype, wrong_base=1000.0
    ),
)
# the tutorial formulation: positions times frequencies in float32
pe_float32_angles = SimpleNamespace(
    name="pe_float32_angles",
    sinusoidal_positional_encoding=lambda T, D, base=10000.0, dtype="float32": _pe(
        T, D, base, dtype, work=np.float32
    ),
)
embedding_not_scaled = SimpleNamespace(
    name="embedding_not_scaled", token_embedding=lambda tokens, table: table[tokens]
)


def _layer_norm(x, gamma, beta, eps=1e-5, *, ddof=0, eps_outside=False):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True, ddof=ddof)
    denominator = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return ((x - mean) / denominator * gamma + beta).astype(x.dtype)


layer_norm_unbiased = SimpleNamespace(
    name="layer_norm_unbiased",
    layer_norm=lambda x, gamma, beta, eps=1e-5: _layer_norm(x, gamma, beta, eps, ddof=1),
)
layer_norm_eps_outside_root = SimpleNamespace(
    name="layer_norm_eps_outside_root",
    layer_norm=lambda x, gamma, beta, eps=1e-5: _layer_norm(x, gamma, beta, eps, eps_outside=True),
)


def _shift_by_two(targets, bos, pad):
    out = np.concatenate(
        [np.full((targets.shape[0], 2), bos, targets.dtype), targets[:, :-2]], axis=1
    )[:, : targets.shape[1]]
    return np.where(targets == pad, pad, out)


shift_right_off_by_one = SimpleNamespace(name="shift_right_off_by_one", shift_right=_shift_by_two)


def _ce_smoothing_on_padding(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """The smoothing term is averaged over every position, padding included."""
    logp = R.training.log_softmax(logits)
    keep = targets != ignore_index
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], -1)[..., 0]
    nll = -(1 - label_smoothing) * picked[keep].mean()
    return np.asarray(nll - label_smoothing * logp.mean(-1).mean(), dtype=logits.dtype)


cross_entropy_smoothing_on_padding = SimpleNamespace(
    name="cross_entropy_smoothing_on_padding", cross_entropy=_ce_smoothing_on_padding
)

CAUGHT_BY = [
    (
        pe_sin_cos_swapped,
        "sinusoidal_positional_encoding",
        "values_bounded_and_pairs_on_circle",
        None,
        "float32",
    ),
    (pe_sin_cos_swapped, "sinusoidal_positional_encoding", "matches_reference", None, "float64"),
    (pe_base_1000, "sinusoidal_positional_encoding", "matches_reference", None, "float32"),
    (
        pe_base_1000,
        "sinusoidal_positional_encoding",
        "relative_positions_are_rotations",
        None,
        "float64",
    ),
    (pe_float32_angles, "sinusoidal_positional_encoding", "matches_reference", "long", "float32"),
    (embedding_not_scaled, "token_embedding", "matches_reference", None, "float32"),
    (layer_norm_unbiased, "layer_norm", "matches_reference", None, "float32"),
    (layer_norm_unbiased, "layer_norm", "normalised_moments", None, "float64"),
    (layer_norm_eps_outside_root, "layer_norm", "matches_reference", "small_variance", "float32"),
    (shift_right_off_by_one, "shift_right", "bos_first_last_dropped", None, "exact"),
    (
        cross_entropy_smoothing_on_padding,
        "cross_entropy",
        "matches_reference",
        "padded+smoothing",
        "float32",
    ),
]


def _encoder_layer_always_pre_ln(
    x, params, num_heads, mask=None, norm_first=False, activation="relu", eps=1e-5
):
    return R.encoder_layer(x, params, num_heads, mask, True, activation, eps)


def _decoder_layer_not_causal(
    y, memory, params, num_heads, memory_mask=None, norm_first=False, activation="relu", eps=1e-5
):
    from reference.stacks import _decoder_block

    self_attend = lambda h: R.multi_head_attention(h, h, h, params["self_attn"], num_heads)
    return _decoder_block(
        y, memory, params, num_heads, self_attend, memory_mask, norm_first, activation, eps
    )


def _decoder_cache_lost(
    y,
    memory,
    layers,
    num_heads,
    memory_mask=None,
    norm_first=False,
    activation="relu",
    eps=1e-5,
    final_norm=None,
):
    """The key/value cache is reset every step (its index never advances): a position sees only
    itself."""
    from reference.stacks import _row

    steps = [
        R.decoder(
            y[:, t : t + 1],
            memory,
            layers,
            num_heads,
            _row(memory_mask, t),
            norm_first,
            activation,
            eps,
            final_norm,
        )
        for t in range(y.shape[1])
    ]
    return np.concatenate(steps, axis=1)  # (B, T, D)


post_ln_wired_as_pre_ln = SimpleNamespace(
    name="post_ln_wired_as_pre_ln", encoder_layer=_encoder_layer_always_pre_ln
)
decoder_without_causal_mask = SimpleNamespace(
    name="decoder_without_causal_mask", decoder_layer=_decoder_layer_not_causal
)
kv_cache_lost = SimpleNamespace(
    name="kv_cache_lost", incremental_decoder=_decoder_cache_lost, decoder=R.decoder
)

CAUGHT_BY += [
    (post_ln_wired_as_pre_ln, "encoder_layer", "matches_reference", "post_ln", "float32"),
    (
        decoder_without_causal_mask,
        "decoder_layer",
        "future_targets_do_not_matter",
        "post_ln",
        "float32",
    ),
    (kv_cache_lost, "incremental_decoder", "matches_reference", "post_ln", "float32"),
    (kv_cache_lost, "incremental_decoder", "cache_equals_parallel", "pre_ln+final_norm", "float64"),
]


def _beam_without_length_penalty(logprobs, bos, eos, max_len, beam_width, alpha=0.0):
    return R.beam_search(logprobs, bos, eos, max_len, beam_width, 0.0)


def _beam_unsorted(logprobs, bos, eos, max_len, beam_width, alpha=0.0):
    return R.beam_search(logprobs, bos, eos, max_len, beam_width, alpha)[::-1]


beam_without_length_penalty = SimpleNamespace(
    name="beam_without_length_penalty", beam_search=_beam_without_length_penalty
)
beam_unsorted = SimpleNamespace(name="beam_unsorted", beam_search=_beam_unsorted)
greedy_ignores_eos = SimpleNamespace(
    name="greedy_ignores_eos",
    greedy_decode=lambda logprobs, bos, eos, max_len: R.greedy_decode(
        logprobs, bos, -1 % logprobs.shape[0] if eos != logprobs.shape[0] - 1 else 0, max_len
    ),
)

CAUGHT_BY += [
    (beam_without_length_penalty, "beam_search", "matches_reference", "length_penalty", "exact"),
    (beam_without_length_penalty, "beam_search", "ordered_by_score", "length_penalty", "exact"),
    (beam_unsorted, "beam_search", "ordered_by_score", "no_penalty", "exact"),
    (greedy_ignores_eos, "greedy_decode", "matches_reference", None, "exact"),
]
