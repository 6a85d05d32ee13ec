"""The oracle for attention over an RNN encoder (Bahdanau et al. 2015; Luong et al. 2015) and the
attention decoders built on it.

Shapes: s decoder state (B, N), h encoder states (B, S, Dh) (Dh = N_enc or 2 N_enc bidirectional),
mask (B, S) bool, True = a real source position. Weights act on the right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.attention import _matmul, softmax
from reference.checks import is_array
from reference.recurrent import _check_float, _check_lengths, _fail, recurrent_cell

# The components (the numpy adapter re-exports exactly these).
__all__ = [
    "additive_attention_weights",
    "attention_context",
    "attention_decoder",
    "attentional_hidden",
    "free_running_decoder",
    "multiplicative_attention_weights",
]

SCORES = ("dot", "general", "concat")
ATTENTIONS = ("bahdanau", "luong_dot", "luong_general", "luong_concat")


def _check_attention(component: str, s: np.ndarray, h: np.ndarray, mask: np.ndarray | None) -> None:
    _check_float(component, "s", s, 2, "(B, N)")
    _check_float(component, "h", h, 3, "(B, S, Dh)")
    if h.shape[0] != s.shape[0]:
        _fail(component, f"h must be (B, S, Dh) with B={s.shape[0]} as s; got {h.shape}")
    if mask is not None and (
        not is_array(mask) or mask.dtype != np.bool_ or mask.shape != h.shape[:2]
    ):
        _fail(
            component,
            f"mask must be bool (B, S)={h.shape[:2]} (True = real position); got "
            f"{getattr(mask, 'shape', mask)}",
        )


def _shape(
    component: str, params: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]
) -> np.ndarray:
    if name not in params or params[name].shape != shape:
        _fail(
            component,
            f"params[{name!r}] must be {shape}; got {getattr(params.get(name), 'shape', None)}",
        )
    return params[name]


def _masked_softmax(e: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """alpha_j = softmax_j(e_j) over the real source positions; padded positions get exactly 0."""
    return softmax(
        e if mask is None else np.where(mask, e, -np.inf).astype(e.dtype), axis=-1
    )  # (B, S)


def additive_attention_weights(
    s_prev: np.ndarray,
    h: np.ndarray,
    params: Mapping[str, np.ndarray],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Bahdanau: e_ij = v^T tanh(s_{i-1} W + h_j U), alpha_ij = softmax_j(e_ij), from the decoder's
    PREVIOUS state.  s_prev (B, N), h (B, S, Dh), W (N, A), U (Dh, A), v (A,) -> (B, S)."""
    _check_attention("additive_attention_weights", s_prev, h, mask)
    A = params["v"].shape[0] if "v" in params else 0
    w = _shape("additive_attention_weights", params, "w", (s_prev.shape[1], A)).astype(h.dtype)
    u = _shape("additive_attention_weights", params, "u", (h.shape[2], A)).astype(h.dtype)
    hidden = np.tanh(_matmul(s_prev, w)[:, None, :] + _matmul(h, u))  # (B, S, A)
    e = _matmul(hidden, params["v"].astype(h.dtype))  # (B, S)
    return _masked_softmax(e, mask)


def multiplicative_attention_weights(
    s: np.ndarray,
    h: np.ndarray,
    params: Mapping[str, np.ndarray],
    score: str = "dot",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Luong, from the decoder's CURRENT state s_t: alpha_tj = softmax_j(score(s_t, h_j)) with
        dot:     s_t . h_j                    (N = Dh)
        general: s_t^T W h_j                  W (N, Dh)
        concat:  v^T tanh([s_t; h_j] W)       W (N + Dh, A), v (A,)
    s (B, N), h (B, S, Dh) -> (B, S)."""
    component = "multiplicative_attention_weights"
    _check_attention(component, s, h, mask)
    N, Dh = s.shape[1], h.shape[2]
    if score == "dot":
        if N != Dh:
            _fail(component, f"the dot score must have N = Dh; got s (B, N={N}), h (B, S, Dh={Dh})")
        e = _matmul(h, s[:, :, None])[..., 0]  # (B, S)
    elif score == "general":
        sw = _matmul(s, _shape(component, params, "w", (N, Dh)).astype(s.dtype))  # (B, Dh)
        e = _matmul(h, sw[:, :, None])[..., 0]  # (B, S)
    elif score == "concat":
        A = params["v"].shape[0] if "v" in params else 0
        w = _shape(component, params, "w", (N + Dh, A)).astype(s.dtype)
        # [s; h_j] W = s W[:N] + h_j W[N:]
        hidden = np.tanh(_matmul(s, w[:N])[:, None, :] + _matmul(h, w[N:]))  # (B, S, A)
        e = _matmul(hidden, params["v"].astype(s.dtype))  # (B, S)
    else:
        _fail(component, f"score must be one of {SCORES}; got {score!r}")
    return _masked_softmax(e, mask)


def attention_context(weights: np.ndarray, h: np.ndarray) -> np.ndarray:
    """c_i = sum_j alpha_ij h_j.  weights (B, S), h (B, S, Dh) -> (B, Dh)."""
    _check_float("attention_context", "weights", weights, 2, "(B, S)")
    _check_float("attention_context", "h", h, 3, "(B, S, Dh)")
    if h.shape[:2] != weights.shape:
        _fail(
            "attention_context", f"h must be (B, S, Dh) with (B, S)={weights.shape}; got {h.shape}"
        )
    return _matmul(weights[:, None, :], h)[:, 0]  # (B, 1, S) @ (B, S, Dh) -> (B, Dh)


def attentional_hidden(context: np.ndarray, s: np.ndarray, w_c: np.ndarray) -> np.ndarray:
    """Luong's attentional hidden state h~_t = tanh([c_t; s_t] W_c).  c (B, Dh), s (B, N), W_c (Dh +
    N, N) -> (B, N)."""
    _check_float("attentional_hidden", "context", context, 2, "(B, Dh)")
    _check_float("attentional_hidden", "s", s, 2, "(B, N)")
    want = (context.shape[1] + s.shape[1], s.shape[1])
    if context.shape[0] != s.shape[0] or not is_array(w_c) or w_c.shape != want:
        _fail(
            "attentional_hidden",
            f"w_c must be (Dh + N, N)={want} for batch {s.shape[0]}; got "
            f"{getattr(w_c, 'shape', w_c)}",
        )
    return np.tanh(_matmul(np.concatenate([context, s], axis=1), w_c.astype(s.dtype)))


def _decoder_step(
    y_prev: np.ndarray,
    s_prev: np.ndarray,
    memory: np.ndarray,
    params: Mapping[str, Any],
    attention: str,
    mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One step from the previous token (B,) and state (B, N) -> (logits (B, V), new state (B, N)).

    bahdanau: alpha = additive(s_{i-1}, h); c = sum alpha h; s_i = GRU([E y_{i-1}; c], s_{i-1});
              logits = [s_i; c] W_out + b_out
    luong_*:  s_t = GRU(E y_{t-1}, s_{t-1}); alpha = score(s_t, h); c = sum alpha h;
              logits = tanh([c; s_t] W_c) W_out + b_out    (no input feeding)
    """
    emb = params["embedding"][y_prev].astype(memory.dtype)  # (B, M)
    if attention == "bahdanau":
        c = attention_context(
            additive_attention_weights(s_prev, memory, params["attention"], mask), memory
        )  # (B, Dh)
        s = recurrent_cell(
            np.concatenate([emb, c], axis=1), s_prev, params["cell"], "gru"
        )  # (B, N)
        out = np.concatenate([s, c], axis=1)  # (B, N + Dh)
    else:
        s = recurrent_cell(emb, s_prev, params["cell"], "gru")  # (B, N)
        score = attention.removeprefix("luong_")
        c = attention_context(
            multiplicative_attention_weights(s, memory, params["attention"], score, mask), memory
        )
        out = attentional_hidden(c, s, params["w_c"])  # (B, N)
    return _matmul(out, params["w_out"].astype(out.dtype)) + params["b_out"].astype(out.dtype), s


def _check_decoder(
    component: str, memory: np.ndarray, s0: np.ndarray, params: Mapping[str, Any], attention: str
) -> None:
    _check_float(component, "memory", memory, 3, "(B, S, Dh)")
    _check_float(component, "s0", s0, 2, "(B, N)")
    if attention not in ATTENTIONS:
        _fail(component, f"attention must be one of {ATTENTIONS}; got {attention!r}")
    if s0.shape[0] != memory.shape[0] or s0.shape[1] != params["cell"]["w_h"].shape[0]:
        _fail(
            component,
            f"s0 must be (B, N)=({memory.shape[0]}, {params['cell']['w_h'].shape[0]}); got "
            f"{s0.shape}",
        )


def _src_mask(
    src_lengths: np.ndarray | None, memory: np.ndarray, component: str
) -> np.ndarray | None:
    if src_lengths is None:
        return None
    _check_lengths(component, src_lengths, memory.shape[0], memory.shape[1])
    return np.arange(memory.shape[1])[None, :] < np.asarray(src_lengths)[:, None]  # (B, S)


def attention_decoder(
    tgt_in: np.ndarray,
    memory: np.ndarray,
    s0: np.ndarray,
    params: Mapping[str, Any],
    attention: str = "bahdanau",
    src_lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Teacher forcing: step t is fed the ground-truth previous token tgt_in[:, t] (=
    shift_right(targets)). tgt_in (B, T) int, memory (B, S, Dh), s0 (B, N) -> logits (B, T, V).
    params: embedding (V, M), cell (GRU params; input [E y; c] for bahdanau, E y for luong),
    attention (scoring params), w_out, b_out, w_c (luong). src_lengths (B,) masks the source's
    padded tail."""
    _check_decoder("attention_decoder", memory, s0, params, attention)
    tokens = np.asarray(tgt_in)
    V = params["embedding"].shape[0]
    if (
        tokens.ndim != 2
        or tokens.shape[0] != memory.shape[0]
        or tokens.dtype.kind not in "iu"
        or (tokens < 0).any()
        or (tokens >= V).any()
    ):
        _fail(
            "attention_decoder",
            f"tgt_in must be (B, T) ints in [0, V={V}) with B={memory.shape[0]}; got "
            f"{tokens.shape} {tokens.dtype}",
        )
    mask = _src_mask(src_lengths, memory, "attention_decoder")
    s, steps = s0, []
    for t in range(tokens.shape[1]):
        logits, s = _decoder_step(tokens[:, t], s, memory, params, attention, mask)
        steps.append(logits)
    return np.stack(steps, axis=1)  # (B, T, V)


def free_running_decoder(
    memory: np.ndarray,
    s0: np.ndarray,
    params: Mapping[str, Any],
    attention: str = "bahdanau",
    bos: int = 1,
    steps: int = 1,
    src_lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Free running: step 0 is fed BOS, step t > 0 the argmax of step t-1's logits (the model's own
    output; ties to the lowest id). Same model as attention_decoder. -> logits (B, steps, V)."""
    _check_decoder("free_running_decoder", memory, s0, params, attention)
    V = params["embedding"].shape[0]
    if not (0 <= bos < V) or not (isinstance(steps, (int, np.integer)) and steps >= 1):
        _fail(
            "free_running_decoder",
            f"bos must be in [0, V={V}) and steps a positive int; got bos={bos}, steps={steps!r}",
        )
    mask = _src_mask(src_lengths, memory, "free_running_decoder")
    y, s, out = np.full(memory.shape[0], bos), s0, []
    for _ in range(steps):
        logits, s = _decoder_step(y, s, memory, params, attention, mask)
        out.append(logits)
        y = np.argmax(logits.astype(np.float64), axis=-1)  # (B,)
    return np.stack(out, axis=1)  # (B, steps, V)
