"""The torch adapter's recurrent and seq2seq components (a mixin of TorchAdapter).

Cells and encoders are torch's own: nn.RNNCell / GRUCell / LSTMCell and nn.RNN / GRU / LSTM (packed
sequences for lengths). torch has no Bahdanau or Luong attention and no attention decoder: those are
written here with torch ops and nn.GRUCell, as a torch user would, and run on the adapter's device.
Weight mapping: torch stores W^T (G N, E) and orders GRU gate blocks (r, z, n) where the spec says
(z, r, n); LSTM (i, f, g, o) is the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# torch's gate block b holds the spec's block ORDER[cell][b]
_TORCH_GATE_ORDER = {"rnn": (0,), "gru": (1, 0, 2), "lstm": (0, 1, 2, 3)}
_CELLS = {"rnn": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}
_LAYERS = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def _blocks(a: np.ndarray, cell: str) -> np.ndarray:
    """Reorder the gate blocks (last axis, G blocks of N) from the spec's order to torch's."""
    order = _TORCH_GATE_ORDER[cell]
    parts = np.split(a, len(order), axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


_EMPTY_ROW = (
    "torch.softmax returns NaN for a row of only -inf: a decoder step with no real source position "
    "(torch.softmax(torch.full((1, 2), float('-inf')), -1) is NaN) gets NaN weights where the spec "
    "says 0"
)
_UNCHECKED_LENGTHS = (
    "no torch op checks the source lengths the padding mask is built from (arange(S) < length): a "
    "length of 0 "
    "masks every position (NaN from torch.softmax), a length beyond S masks none"
)
# Declared deviations of the seq2seq components (merged into TorchAdapter.deviations).
SEQ2SEQ_DEVIATIONS = {
    "additive_attention_weights.weights_are_distributions[padding_empty_row]": _EMPTY_ROW,
    "multiplicative_attention_weights.weights_are_distributions[general+padding_empty_row]": _EMPTY_ROW,  # noqa: E501 (a test id)
    **{
        f"{c}.refuses[mask_wider_than_S]": (
            "Tensor.masked_fill broadcasts the scores against a wider mask instead of refusing it, "
            "where S = 1: "
            "torch.zeros(1, 1).masked_fill(torch.tensor([[True, False]]), 0.0) is (1, 2) (torch "
            "2.13.0)"
        )
        for c in ("additive_attention_weights", "multiplicative_attention_weights")
    },
    "attention_decoder.refuses[zero_source_length]": _UNCHECKED_LENGTHS,
    "attention_decoder.refuses[source_length_beyond_S]": _UNCHECKED_LENGTHS,
    "free_running_decoder.refuses[zero_source_length]": _UNCHECKED_LENGTHS,
}


class TorchSeq2Seq:
    device: torch.device
    _t: Any
    _np: Any
    _no_grad: Any

    def _torch_weights(
        self, params: Mapping[str, np.ndarray], cell: str
    ) -> dict[str, torch.Tensor]:
        """weight_ih (G N, E), weight_hh (G N, N), bias_ih, bias_hh in torch's layout."""
        return {
            "weight_ih": self._t(_blocks(params["w_x"], cell).T),
            "weight_hh": self._t(_blocks(params["w_h"], cell).T),
            "bias_ih": self._t(_blocks(params["b_x"], cell)),
            "bias_hh": self._t(_blocks(params["b_h"], cell)),
        }

    def _cell(
        self, params: Mapping[str, np.ndarray], cell: str, dtype: torch.dtype
    ) -> torch.nn.Module:
        module = _CELLS[cell](
            params["w_x"].shape[0], params["w_h"].shape[0], device=self.device, dtype=dtype
        )
        with torch.no_grad():  # copy_ raises on a shape mismatch
            for name, value in self._torch_weights(params, cell).items():
                getattr(module, name).copy_(value)
        return module

    def recurrent_cell(
        self, x: np.ndarray, state: np.ndarray, params: Mapping[str, np.ndarray], cell: str = "gru"
    ) -> np.ndarray:
        xt, st = self._t(x), self._t(state)
        module = self._cell(params, cell, xt.dtype)
        with self._no_grad():
            if cell != "lstm":
                return self._np(module(xt, st))
            N = params["w_h"].shape[0]
            if st.shape[1] != 2 * N:
                raise ValueError(f"LSTM state must be [h | c] (B, {2 * N}); got {tuple(st.shape)}")
            h, c = module(xt, (st[:, :N].contiguous(), st[:, N:].contiguous()))
            return self._np(torch.cat([h, c], dim=1))

    def _encode(
        self, x: np.ndarray, params: Mapping[str, Any], cell: str, lengths: np.ndarray | None
    ) -> tuple[Any, Any]:
        """(outputs (B, T, dirs N), h_n (dirs, B, N)) from torch's nn.RNN / GRU / LSTM."""
        xt = self._t(x)
        B, T, E = x.shape
        bidirectional = "backward" in params
        rnn = _LAYERS[cell](
            E, params["forward"]["w_h"].shape[0], batch_first=True, bidirectional=bidirectional
        )
        rnn = rnn.to(device=self.device, dtype=xt.dtype)
        with torch.no_grad():
            for direction, suffix in (("forward", ""), ("backward", "_reverse")):
                if direction in params:
                    for name, value in self._torch_weights(params[direction], cell).items():
                        getattr(rnn, f"{name}_l0{suffix}").copy_(
                            value
                        )  # raises on a shape mismatch
        with self._no_grad():
            if lengths is None:
                out, h_n = rnn(xt)
            else:
                packed = pack_padded_sequence(
                    xt,
                    torch.as_tensor(lengths, dtype=torch.int64),
                    batch_first=True,
                    enforce_sorted=False,
                )
                out, h_n = rnn(packed)
                out, _ = pad_packed_sequence(
                    out, batch_first=True, total_length=T
                )  # zeros past each length
        return out, (h_n[0] if cell == "lstm" else h_n)

    def rnn_encoder(
        self,
        x: np.ndarray,
        params: Mapping[str, Any],
        cell: str = "gru",
        lengths: np.ndarray | None = None,
    ) -> np.ndarray:
        return self._np(self._encode(x, params, cell, lengths)[0])

    def context_vector(
        self,
        x: np.ndarray,
        params: Mapping[str, Any],
        cell: str = "gru",
        lengths: np.ndarray | None = None,
    ) -> np.ndarray:
        h_n = self._encode(x, params, cell, lengths)[
            1
        ]  # (dirs, B, N): final states, backward's at t = 0
        return self._np(torch.cat(list(h_n), dim=-1))  # (B, dirs N)

    # --- attention over encoder states: torch ops (torch has no additive / multiplicative module)
    # ----
    @staticmethod
    def _softmax_over_source(e: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return torch.softmax(
            e if mask is None else e.masked_fill(~mask, float("-inf")), dim=-1
        )  # (B, S)

    def _additive(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        p: Mapping[str, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        e = torch.tanh((s @ p["w"])[:, None, :] + h @ p["u"]) @ p["v"]  # (B, S, A) @ (A,) -> (B, S)
        return self._softmax_over_source(e, mask)

    def _multiplicative(
        self, s: torch.Tensor, h: torch.Tensor, p: Mapping[str, torch.Tensor], score: str, mask: Any
    ) -> torch.Tensor:
        if score == "dot":
            e = torch.bmm(h, s[:, :, None])[..., 0]  # (B, S)
        elif score == "general":
            e = torch.bmm(h, (s @ p["w"])[:, :, None])[..., 0]  # (B, S)
        elif score == "concat":
            N = s.shape[1]
            if p["w"].shape[0] != N + h.shape[2]:
                raise ValueError(
                    f"concat W must have N + Dh = {N + h.shape[2]} rows; got {tuple(p['w'].shape)}"
                )
            e = torch.tanh((s @ p["w"][:N])[:, None, :] + h @ p["w"][N:]) @ p["v"]  # (B, S)
        else:
            raise ValueError(f"unknown score {score!r}")
        return self._softmax_over_source(e, mask)

    def _tensors(self, params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: self._t(v) for k, v in params.items()}

    def _mask(self, mask: np.ndarray | None) -> torch.Tensor | None:
        return None if mask is None else self._t(mask)

    def additive_attention_weights(self, s_prev, h, params, mask=None):
        with self._no_grad():
            return self._np(
                self._additive(self._t(s_prev), self._t(h), self._tensors(params), self._mask(mask))
            )

    def multiplicative_attention_weights(self, s, h, params, score="dot", mask=None):
        with self._no_grad():
            return self._np(
                self._multiplicative(
                    self._t(s), self._t(h), self._tensors(params), score, self._mask(mask)
                )
            )

    def attention_context(self, weights: np.ndarray, h: np.ndarray) -> np.ndarray:
        return self._np(
            torch.bmm(self._t(weights)[:, None, :], self._t(h))[:, 0]
        )  # (B, 1, S) @ (B, S, Dh) -> (B, Dh)

    def attentional_hidden(self, context: np.ndarray, s: np.ndarray, w_c: np.ndarray) -> np.ndarray:
        return self._np(torch.tanh(torch.cat([self._t(context), self._t(s)], dim=1) @ self._t(w_c)))

    # --- attention decoders
    # ------------------------------------------------------------------------
    def _decode(self, memory, s0, params, attention, src_lengths, tokens=None, bos=1, steps=1):
        """Teacher forcing when tokens (B, T) are given, else free running from BOS for `steps`
        steps."""
        h, s = self._t(memory), self._t(s0)
        B, S, _ = memory.shape
        mask = (
            None
            if src_lengths is None
            else torch.arange(S, device=self.device)[None, :]
            < self._t(np.asarray(src_lengths))[:, None]
        )
        table, att = self._t(params["embedding"]), self._tensors(params["attention"])
        w_out, b_out = self._t(params["w_out"]), self._t(params["b_out"])
        gru = self._cell(params["cell"], "gru", h.dtype)
        if s.shape[1] != params["cell"]["w_h"].shape[0]:
            raise ValueError(
                f"s0 must be (B, N={params['cell']['w_h'].shape[0]}); got {tuple(s.shape)}"
            )
        y = (
            self._t(tokens[:, 0])
            if tokens is not None
            else torch.full((B,), bos, dtype=torch.int64, device=self.device)
        )
        out = []
        with self._no_grad():
            for t in range(tokens.shape[1] if tokens is not None else steps):
                emb = F.embedding(y, table)  # (B, M)
                if attention == "bahdanau":
                    c = torch.bmm(self._additive(s, h, att, mask)[:, None, :], h)[
                        :, 0
                    ]  # (B, Dh), from s_{i-1}
                    s = gru(torch.cat([emb, c], dim=1), s)
                    logits = torch.cat([s, c], dim=1) @ w_out + b_out
                else:
                    s = gru(emb, s)
                    c = torch.bmm(
                        self._multiplicative(s, h, att, attention.removeprefix("luong_"), mask)[
                            :, None, :
                        ],
                        h,
                    )[:, 0]
                    logits = (
                        torch.tanh(torch.cat([c, s], dim=1) @ self._t(params["w_c"])) @ w_out
                        + b_out
                    )
                out.append(logits)
                if tokens is not None:
                    y = self._t(tokens[:, t + 1]) if t + 1 < tokens.shape[1] else y
                else:
                    y = logits.argmax(dim=-1)  # the model's own previous output
        return self._np(torch.stack(out, dim=1))  # (B, T, V)

    def attention_decoder(self, tgt_in, memory, s0, params, attention="bahdanau", src_lengths=None):
        return self._decode(memory, s0, params, attention, src_lengths, tokens=np.asarray(tgt_in))

    def free_running_decoder(
        self, memory, s0, params, attention="bahdanau", bos=1, steps=1, src_lengths=None
    ):
        return self._decode(memory, s0, params, attention, src_lengths, bos=bos, steps=steps)
