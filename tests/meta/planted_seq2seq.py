"""Deliberately broken variants of the seq2seq lineage (issue: RNN encoder-decoder, Bahdanau,
Luong)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import reference as R
from reference import recurrent, seq2seq


def _gru_gates_swapped(x, state, params, cell="gru"):
    """Reads the spec's (z, r, n) blocks as torch's (r, z, n): update and reset gates swapped."""
    if cell != "gru":
        return R.recurrent_cell(x, state, params, cell)
    swap = lambda a: np.concatenate([np.split(a, 3, -1)[i] for i in (1, 0, 2)], -1)
    return R.recurrent_cell(x, state, {k: swap(v) for k, v in params.items()}, cell)


def _backward_not_reversed_back(x, params, cell="gru", lengths=None):
    """Runs the backward direction over the reversed input but leaves its outputs in reversed
    order."""
    out = R.rnn_encoder(x, params, cell, lengths)
    if "backward" not in params:
        return out
    N = params["forward"]["w_h"].shape[0]
    return np.concatenate([out[..., :N], out[:, ::-1, N:]], axis=-1)


def _context_from_first_state(x, params, cell="gru", lengths=None):
    """Takes each direction's state after its FIRST step."""
    return R.context_vector(x[:, :1], params, cell, None)


def _softmax_over_batch(s_prev, h, params, mask=None):
    w = params["w"].astype(h.dtype)
    e = np.tanh((s_prev @ w)[:, None, :] + h @ params["u"].astype(h.dtype)) @ params["v"].astype(
        h.dtype
    )  # (B, S)
    return R.softmax(
        e if mask is None else np.where(mask, e, -np.inf).astype(e.dtype), axis=0
    )  # over B: wrong


def _bahdanau_with_current_state(
    tgt_in, memory, s0, params, attention="bahdanau", src_lengths=None
):
    """Attends from the CURRENT state s_i (updated with the previous context) where Bahdanau uses
    s_{i-1}."""
    if attention != "bahdanau":
        return R.attention_decoder(tgt_in, memory, s0, params, attention, src_lengths)
    mask = (
        None
        if src_lengths is None
        else np.arange(memory.shape[1])[None, :] < np.asarray(src_lengths)[:, None]
    )
    s, c, steps = s0, np.zeros(memory.shape[::2], memory.dtype), []
    for t in range(tgt_in.shape[1]):
        emb = params["embedding"][tgt_in[:, t]].astype(memory.dtype)
        s = recurrent.recurrent_cell(np.concatenate([emb, c], axis=1), s, params["cell"], "gru")
        c = seq2seq.attention_context(
            seq2seq.additive_attention_weights(s, memory, params["attention"], mask), memory
        )
        steps.append(np.concatenate([s, c], axis=1) @ params["w_out"] + params["b_out"])
    return np.stack(steps, axis=1)


def _free_running_feeds_second_best(
    memory, s0, params, attention="bahdanau", bos=1, steps=1, src_lengths=None
):
    """Feeds back the runner-up token instead of the argmax."""
    mask = seq2seq._src_mask(src_lengths, memory, "free_running_decoder")
    y, s, out = np.full(memory.shape[0], bos), s0, []
    for _ in range(steps):
        logits, s = seq2seq._decoder_step(y, s, memory, params, attention, mask)
        out.append(logits)
        y = np.argsort(logits.astype(np.float64), axis=-1)[:, -2]  # (B,): second best
    return np.stack(out, axis=1)


def _encoder_ignores_lengths(x, params, cell="gru", lengths=None):
    """Runs every sequence over all T steps (the backward direction starts in the padding), then
    zeros the tail."""
    out = R.rnn_encoder(x, params, cell, None)
    if lengths is None:
        return out
    return np.where(
        np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None], out, 0
    ).astype(out.dtype)


def _context_unnormalised(weights, h):
    """Sums the states with the weights doubled: no longer a convex combination."""
    return R.attention_context((weights * 2).astype(weights.dtype), h)


def _scores_scaled_by_state(s_prev, h, params, mask=None):
    """A "temperature" taken from the decoder state: e_j = (1 + sum |s|) v . tanh(s W + h_j U)."""
    dt = h.dtype
    e = np.tanh(
        (s_prev @ params["w"].astype(dt))[:, None, :] + h @ params["u"].astype(dt)
    ) @ params["v"].astype(dt)
    e = (e * (1 + np.abs(s_prev).sum(-1, keepdims=True))).astype(dt)  # (B, S)
    return R.softmax(e if mask is None else np.where(mask, e, -np.inf).astype(dt), axis=-1)


def _context_is_all_outputs(x, params, cell="gru", lengths=None):
    """Returns every step's output flattened (B, T dirs N) instead of the final state."""
    out = R.rnn_encoder(x, params, cell, lengths)
    return out.reshape(out.shape[0], -1)


gru_gates_swapped = SimpleNamespace(name="gru_gates_swapped", recurrent_cell=_gru_gates_swapped)
backward_not_reversed_back = SimpleNamespace(
    name="backward_not_reversed_back", rnn_encoder=_backward_not_reversed_back
)
context_from_first_state = SimpleNamespace(
    name="context_from_first_state",
    context_vector=_context_from_first_state,
    rnn_encoder=R.rnn_encoder,
)
softmax_over_batch = SimpleNamespace(
    name="softmax_over_batch", additive_attention_weights=_softmax_over_batch
)
bahdanau_current_state = SimpleNamespace(
    name="bahdanau_current_state", attention_decoder=_bahdanau_with_current_state
)
feeds_second_best = SimpleNamespace(
    name="feeds_second_best",
    free_running_decoder=_free_running_feeds_second_best,
    attention_decoder=R.attention_decoder,
)

encoder_ignores_lengths = SimpleNamespace(
    name="encoder_ignores_lengths", rnn_encoder=_encoder_ignores_lengths
)
context_unnormalised = SimpleNamespace(
    name="context_unnormalised", attention_context=_context_unnormalised
)

scores_scaled_by_state = SimpleNamespace(
    name="scores_scaled_by_state", additive_attention_weights=_scores_scaled_by_state
)
context_is_all_outputs = SimpleNamespace(
    name="context_is_all_outputs", context_vector=_context_is_all_outputs
)
# the encoder is right but its cell has the gates swapped: running the cell by hand disagrees
cell_disagrees_with_run = SimpleNamespace(
    name="cell_disagrees_with_run", recurrent_cell=_gru_gates_swapped, rnn_encoder=R.rnn_encoder
)

CAUGHT_BY = [
    (scores_scaled_by_state, "additive_attention_weights", "state_blind_scores", None, "float32"),
    (
        context_is_all_outputs,
        "context_vector",
        "size_independent_of_T",
        "gru+bidirectional",
        "float32",
    ),
    (cell_disagrees_with_run, "rnn_encoder", "run_equals_cell_steps", "gru", "float64"),
    (
        encoder_ignores_lengths,
        "rnn_encoder",
        "padding_does_not_matter",
        "lstm+bidirectional+lengths",
        "float32",
    ),
    (context_unnormalised, "attention_context", "within_range", None, "float64"),
    (gru_gates_swapped, "recurrent_cell", "matches_reference", "gru", "float32"),
    (
        backward_not_reversed_back,
        "rnn_encoder",
        "matches_reference",
        "gru+bidirectional",
        "float32",
    ),
    (
        backward_not_reversed_back,
        "rnn_encoder",
        "reversal_swaps_directions",
        "gru+bidirectional",
        "float64",
    ),
    (
        context_from_first_state,
        "context_vector",
        "is_encoder_ends",
        "lstm+bidirectional+lengths",
        "float32",
    ),
    (
        softmax_over_batch,
        "additive_attention_weights",
        "weights_are_distributions",
        "padding",
        "float32",
    ),
    (bahdanau_current_state, "attention_decoder", "matches_reference", "bahdanau", "float32"),
    (
        feeds_second_best,
        "free_running_decoder",
        "matches_oracle_on_own_tokens",
        "luong_dot",
        "float32",
    ),
    (
        feeds_second_best,
        "free_running_decoder",
        "teacher_forcing_own_output",
        "bahdanau+padding",
        "float64",
    ),
]
