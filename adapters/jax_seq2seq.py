"""The jax adapter's recurrent and seq2seq components (a mixin of JaxAdapter).

Cells and encoders are flax's own: nn.SimpleCell / GRUCell / LSTMCell, nn.RNN with seq_lengths and
nn.Bidirectional. flax keeps one Dense per gate and a single bias where input and recurrent terms
are summed, so the canonical b_x + b_h becomes that bias (GRU's candidate keeps both: b_xn on "in",
b_hn on "hn", inside the reset product). An LSTM carry is (c, h) in flax, [h | c] in the spec. flax
leaves the outputs past a sequence's length unspecified (it keeps computing there); the adapter
zeros them, as torch's pad_packed_sequence does. Bahdanau / Luong attention and the decoders are jnp
code around flax's GRUCell (flax has neither), jitted per shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reference.recurrent import GATES

_CELLS = {"rnn": nn.SimpleCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


def flax_cell_params(p: Mapping[str, np.ndarray], cell: str) -> dict[str, Any]:
    """Canonical cell params as the flax cell's tree (kernels (in, out), as canonical)."""
    G = len(GATES[cell])
    wx, wh = np.split(p["w_x"], G, axis=1), np.split(p["w_h"], G, axis=1)
    bx, bh = np.split(p["b_x"], G), np.split(p["b_h"], G)
    if cell == "rnn":
        return {"i": {"kernel": wx[0], "bias": bx[0] + bh[0]}, "h": {"kernel": wh[0]}}
    if cell == "gru":  # spec blocks (z, r, n)
        return {
            "iz": {"kernel": wx[0], "bias": bx[0] + bh[0]},
            "ir": {"kernel": wx[1], "bias": bx[1] + bh[1]},
            "in": {"kernel": wx[2], "bias": bx[2]},
            "hz": {"kernel": wh[0]},
            "hr": {"kernel": wh[1]},
            "hn": {"kernel": wh[2], "bias": bh[2]},
        }
    tree: dict[str, Any] = {}
    for g, name in enumerate("ifgo"):  # spec blocks (i, f, g, o)
        tree[f"i{name}"] = {"kernel": wx[g]}
        tree[f"h{name}"] = {"kernel": wh[g], "bias": bx[g] + bh[g]}
    return tree


def _cell_module(cell: str, N: int, dtype: str) -> nn.RNNCellBase:
    return _CELLS[cell](N, dtype=dtype, param_dtype=dtype, carry_init=nn.initializers.zeros_init())


@cache
def _cell_step(cell: str, N: int, dtype: str) -> Any:
    module = _cell_module(cell, N, dtype)
    return jax.jit(lambda params, carry, x: module.apply({"params": params}, carry, x)[0])


@cache
def _encoder(cell: str, N: int, dtype: str, bidirectional: bool) -> Any:
    rnn = lambda: nn.RNN(_cell_module(cell, N, dtype))
    module = (
        nn.Bidirectional(rnn(), rnn(), return_carry=True)
        if bidirectional
        else nn.RNN(_cell_module(cell, N, dtype))
    )
    if bidirectional:
        return jax.jit(
            lambda params, x, lengths: module.apply({"params": params}, x, seq_lengths=lengths)
        )
    return jax.jit(
        lambda params, x, lengths: module.apply(
            {"params": params}, x, seq_lengths=lengths, return_carry=True
        )
    )


def _additive(s: jax.Array, h: jax.Array, p: Mapping[str, jax.Array], mask: Any) -> jax.Array:
    e = jnp.tanh((s @ p["w"])[:, None, :] + h @ p["u"]) @ p["v"]  # (B, S, A) @ (A,) -> (B, S)
    return jax.nn.softmax(e if mask is None else jnp.where(mask, e, -jnp.inf), axis=-1)


def _multiplicative(
    s: jax.Array, h: jax.Array, p: Mapping[str, jax.Array], score: str, mask: Any
) -> jax.Array:
    if score == "dot":
        e = (h @ s[:, :, None])[..., 0]  # (B, S)
    elif score == "general":
        e = (h @ (s @ p["w"])[:, :, None])[..., 0]  # (B, S)
    elif score == "concat":
        N = s.shape[1]
        if p["w"].shape[0] != N + h.shape[2]:
            raise ValueError(
                f"concat W must have N + Dh = {N + h.shape[2]} rows; got {p['w'].shape}"
            )
        e = jnp.tanh((s @ p["w"][:N])[:, None, :] + h @ p["w"][N:]) @ p["v"]  # (B, S)
    else:
        raise ValueError(f"unknown score {score!r}")
    return jax.nn.softmax(e if mask is None else jnp.where(mask, e, -jnp.inf), axis=-1)


def _context(weights: jax.Array, h: jax.Array) -> jax.Array:
    # matmul, not einsum: einsum (numpy, torch and jax alike) broadcasts a size-1 axis, so S = 1
    # weights against S = 2 states would be silently accepted
    return (weights[:, None, :] @ h)[:, 0]  # (B, 1, S) @ (B, S, Dh) -> (B, Dh)


@cache
def _decoder_step(attention: str, N: int, dtype: str) -> Any:
    """(params, cell params, y (B,), s (B, N), memory, mask) -> (logits (B, V), s)."""
    gru = _cell_module("gru", N, dtype)

    def step(params: Any, cell: Any, y: jax.Array, s: jax.Array, h: jax.Array, mask: Any) -> Any:
        emb = params["embedding"][y]  # (B, M)
        if attention == "bahdanau":
            c = _context(_additive(s, h, params["attention"], mask), h)  # from s_{i-1}
            s = gru.apply({"params": cell}, s, jnp.concatenate([emb, c], axis=1))[0]
            return jnp.concatenate([s, c], axis=1) @ params["w_out"] + params["b_out"], s
        s = gru.apply({"params": cell}, s, emb)[0]
        c = _context(
            _multiplicative(s, h, params["attention"], attention.removeprefix("luong_"), mask), h
        )
        return jnp.tanh(jnp.concatenate([c, s], axis=1) @ params["w_c"]) @ params["w_out"] + params[
            "b_out"
        ], s

    return jax.jit(step)


_EMPTY_ROW = (
    "jax.nn.softmax returns NaN for a row of only -inf: a decoder step with no real source "
    "position "
    "(jax.nn.softmax(jnp.full((1, 2), -jnp.inf)) is NaN) gets NaN weights where the spec says 0"
)
_UNCHECKED_LENGTHS = (
    "no jax op checks the source lengths the padding mask is built from (arange(S) < length): a "
    "length of 0 "
    "masks every position (NaN from jax.nn.softmax), a length beyond S masks none"
)
_CLAMPED = "jnp indexing clamps an out-of-range id (JAX's documented gather semantics): "
# Declared deviations of the recurrent and seq2seq components (merged into JaxAdapter.deviations).
SEQ2SEQ_DEVIATIONS = {
    **{
        f"{c}.refuses[{bad}]": reason
        for c in ("rnn_encoder", "context_vector")
        for bad, reason in (
            (
                "lengths_longer_than_T",
                "flax nn.RNN accepts seq_lengths > T without a check (flax 0.12.8)",
            ),
            (
                "zero_length",
                "flax nn.RNN accepts a sequence length of 0 without a check and computes its steps "
                "anyway: "
                "nn.RNN(nn.GRUCell(1)).apply(p, jnp.ones((1, 3, 1)), seq_lengths=jnp.array([0])) "
                "(flax 0.12.8)",
            ),
            (
                "lengths_not_per_item",
                "flax nn.RNN accepts seq_lengths of another length than the batch without a check: "
                "nn.RNN(nn.GRUCell(1)).apply(p, jnp.ones((2, 3, 1)), seq_lengths=jnp.array([1, 2, "
                "3])) (flax 0.12.8)",
            ),
        )
    },
    # seen where the state has batch 1 (a carry of batch B > 1 against B + 1 inputs raises)
    "recurrent_cell.refuses[batch_differs]": (
        "flax's cells broadcast a carry of batch 1 against inputs of batch B instead of refusing "
        "it: "
        "nn.GRUCell(1).apply(p, jnp.zeros((1, 1)), jnp.ones((2, 1))) returns a (2, 1) carry (flax "
        "0.12.8)"
    ),
    "attention_decoder.refuses[token_id_equals_V]": _CLAMPED + "id V reads row V - 1",
    "attention_decoder.refuses[negative_token_id]": _CLAMPED
    + "id -1 reads row V - 1 (NumPy's negative index)",
    "free_running_decoder.refuses[bos_equals_V]": _CLAMPED + "bos = V reads row V - 1",
    "additive_attention_weights.weights_are_distributions[padding_empty_row]": _EMPTY_ROW,
    "multiplicative_attention_weights.weights_are_distributions[general+padding_empty_row]": _EMPTY_ROW,  # noqa: E501 (a test id)
    **{
        f"{c}.refuses[mask_wider_than_S]": (
            "jnp.where broadcasts the scores against a wider mask instead of refusing it, where S "
            "= 1: "
            "jnp.where(jnp.array([[True, False]]), jnp.ones((1, 1)), -jnp.inf) is (1, 2) (jax "
            "0.10.2)"
        )
        for c in ("additive_attention_weights", "multiplicative_attention_weights")
    },
    "attention_decoder.refuses[zero_source_length]": _UNCHECKED_LENGTHS,
    "attention_decoder.refuses[source_length_beyond_S]": _UNCHECKED_LENGTHS,
    "free_running_decoder.refuses[zero_source_length]": _UNCHECKED_LENGTHS,
}


class JaxSeq2Seq:
    _j: Any  # the adapter's converters (JaxAdapter): traced under vjp()
    _np: Any

    def recurrent_cell(
        self, x: np.ndarray, state: np.ndarray, params: Mapping[str, np.ndarray], cell: str = "gru"
    ) -> np.ndarray:
        N = params["w_h"].shape[0]
        step = _cell_step(cell, N, np.dtype(x.dtype).name)
        xj, sj = self._j(x), self._j(state)
        if cell != "lstm":
            return self._np(step(flax_cell_params(params, cell), sj, xj))
        if state.shape[1] != 2 * N:
            raise ValueError(f"LSTM state must be [h | c] (B, {2 * N}); got {state.shape}")
        c, h = step(flax_cell_params(params, cell), (sj[:, N:], sj[:, :N]), xj)
        return self._np(jnp.concatenate([h, c], axis=1))  # [h | c]

    def _encode(
        self, x: np.ndarray, params: Mapping[str, Any], cell: str, lengths: np.ndarray | None
    ) -> tuple[jax.Array, jax.Array]:
        """(outputs (B, T, dirs N) zeroed past each length, final h (B, dirs N))."""
        N = params["forward"]["w_h"].shape[0]
        bidirectional = "backward" in params
        tree = (
            {
                d + "_rnn": {"cell": flax_cell_params(params[d], cell)}
                for d in ("forward", "backward")
            }
            if bidirectional
            else {"cell": flax_cell_params(params["forward"], cell)}
        )
        lens = None if lengths is None else jnp.asarray(lengths)
        carry, out = _encoder(cell, N, np.dtype(x.dtype).name, bidirectional)(
            tree, self._j(x), lens
        )
        final = lambda c: c[1] if cell == "lstm" else c
        h = jnp.concatenate([final(c) for c in carry], axis=-1) if bidirectional else final(carry)
        if lengths is not None:  # (B, T, 1): True at real steps
            real = np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
            out = jnp.where(real, out, 0).astype(out.dtype)
        return out, h

    def rnn_encoder(self, x, params, cell="gru", lengths=None):
        return self._np(self._encode(x, params, cell, lengths)[0])

    def context_vector(self, x, params, cell="gru", lengths=None):
        return self._np(self._encode(x, params, cell, lengths)[1])

    @staticmethod
    def _tree(params: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        return {k: jnp.asarray(v) for k, v in params.items()}

    def additive_attention_weights(self, s_prev, h, params, mask=None):
        return self._np(_additive(self._j(s_prev), self._j(h), self._tree(params), mask))

    def multiplicative_attention_weights(self, s, h, params, score="dot", mask=None):
        return self._np(_multiplicative(self._j(s), self._j(h), self._tree(params), score, mask))

    def attention_context(self, weights: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.asarray(_context(jnp.asarray(weights), jnp.asarray(h)))

    def attentional_hidden(self, context: np.ndarray, s: np.ndarray, w_c: np.ndarray) -> np.ndarray:
        return np.asarray(
            jnp.tanh(
                jnp.concatenate([jnp.asarray(context), jnp.asarray(s)], axis=1) @ jnp.asarray(w_c)
            )
        )

    def _decode(self, memory, s0, params, attention, src_lengths, tokens=None, bos=1, steps=1):
        """Teacher forcing when tokens (B, T) are given, else free running from BOS for `steps`
        steps."""
        B, S, _ = memory.shape
        N = params["cell"]["w_h"].shape[0]
        step = _decoder_step(attention, N, np.dtype(memory.dtype).name)
        tree: dict[str, Any] = {
            k: jnp.asarray(v) for k, v in params.items() if k not in ("cell", "attention")
        }
        tree["attention"] = self._tree(params["attention"])
        cell = flax_cell_params(params["cell"], "gru")
        mask = (
            None
            if src_lengths is None
            else jnp.arange(S)[None, :] < jnp.asarray(src_lengths)[:, None]
        )  # (B, S)
        h, s = self._j(memory), self._j(s0)
        y = jnp.asarray(tokens[:, 0]) if tokens is not None else jnp.full((B,), bos, jnp.int64)
        out = []
        for t in range(tokens.shape[1] if tokens is not None else steps):
            logits, s = step(tree, cell, y, s, h, mask)
            out.append(logits)
            if tokens is None:
                y = jnp.argmax(
                    logits, axis=-1
                )  # the model's own previous output (first index on ties)
            elif t + 1 < tokens.shape[1]:
                y = jnp.asarray(tokens[:, t + 1])
        return self._np(jnp.stack(out, axis=1))  # (B, T, V)

    def attention_decoder(self, tgt_in, memory, s0, params, attention="bahdanau", src_lengths=None):
        return self._decode(memory, s0, params, attention, src_lengths, tokens=np.asarray(tgt_in))

    def free_running_decoder(
        self, memory, s0, params, attention="bahdanau", bos=1, steps=1, src_lengths=None
    ):
        return self._decode(memory, s0, params, attention, src_lengths, bos=bos, steps=steps)
