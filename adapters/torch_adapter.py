"""PyTorch adapter: maps the spec's canonical inputs onto torch's own code.

softmax -> torch.softmax; scaled_dot_product_attention -> F.scaled_dot_product_attention (is_causal
for top-left, torch.nn.attention.bias.causal_lower_right for bottom-right); attention_weights -> the
same SDPA with V = identity, so the weights come out of torch's kernel itself; multi_head_attention
-> nn.MultiheadAttention with the canonical weights loaded; causal_mask -> torch.nn.attention.bias.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right, causal_upper_left

from adapters import Declared, Deviation, carried_over
from adapters.grouped_mha import TorchGroupedMHA
from adapters.torch_flex import (
    FLEX_DEVIATIONS,
    FLEX_EXAMPLE_SHARES,
    PAGED_DEVIATIONS,
    TorchFlex,
    TorchPacked,
    TorchPaged,
)
from adapters.torch_seq2seq import SEQ2SEQ_DEVIATIONS, TorchSeq2Seq
from spec.core import Unsupported
from spec.grouped import CHECKS as GQA_CHECKS
from spec.grouped import VARIANT_IDS as GQA_VARIANTS
from spec.model import empty_source
from spec.stacks import has_empty_row

_CAUSAL = {"top_left": causal_upper_left, "bottom_right": causal_lower_right}


def positional_encoding_table(
    T: int, D: int, base: float, dtype: str, device: torch.device
) -> torch.Tensor:
    """The (T, D) sinusoidal table on ``device``. torch has no sinusoidal encoding: user code with
    torch ops, the angle formed in float64 (a float32 pos * frequency product is ~1e-3 rad off at
    pos 1e4; see the spec). Also what benchmarks/ times."""
    pos = torch.arange(T, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    freq = base ** (torch.arange(0, D, 2, dtype=torch.float64, device=device) / D)  # (ceil(D/2),)
    angle = pos / freq  # (T, ceil(D/2))
    pe = torch.empty(T, D, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : D // 2])
    return pe.to(_TORCH_DTYPES[dtype])


SCALE_ZERO_CAUSAL_NAN = Deviation(
    "the CPU flash kernel returns NaN for a scale <= 0 under a causal mask (the math backend is "
    "right): "
    "F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.0) (or scale=-0.7) is NaN; "
    "the kernel "
    "scales logits already set to -inf, and -inf * 0 = NaN, -inf * -0.7 = +inf (torch 2.13.0)",
    when=lambda i: i.get("scale") is not None and i["scale"] <= 0 and i.get("causal") is not None,
    trigger="scale <= 0 with a causal mask",
    concerns=("scale",),
)
MASK_1D_REFUSED = Deviation(
    "F.scaled_dot_product_attention raises IndexError for a 1-D attn_mask (S,), which broadcasts "
    "to (T, S): "
    "F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(S, dtype=torch.bool)) (torch "
    "2.13.0)",
    when=lambda i: getattr(i.get("mask"), "ndim", 2) == 1,
    trigger="a 1-D mask",
    concerns=("mask_shape",),
)

FAST_PATH_EMPTY_ROW = Deviation(
    "nn.TransformerEncoderLayer's inference fast path (eval, no grad: "
    "torch._transformer_encoder_layer_fwd) returns "
    "NaN for a query row whose mask hides every key, where the spec's attention gives b_o (grad "
    "mode is right): "
    "layer.eval()(torch.randn(1, 1, 4), src_mask=torch.ones(2, 1, 1, dtype=torch.bool)) under "
    "torch.no_grad() (torch 2.13.0)",
    when=lambda i: has_empty_row(i.get("mask")),
    trigger="a query row that sees no key",
    concerns=("fully_masked_row",),
)


def _finite_bias(mask: Any) -> bool:
    return (
        mask is not None
        and mask.dtype != np.bool_
        and bool((np.isfinite(mask.astype(np.float64)) & (mask != 0)).any())
    )


FAST_PATH_FLOAT_MASK = Deviation(
    "nn.TransformerEncoderLayer's inference fast path treats an additive float src_mask as "
    "boolean: a finite bias "
    "b != 0 masks its key as -inf does (a row of nonzero biases is NaN); grad mode adds the bias: "
    "with a (3, 3) mask "
    "of -1 in column 1, layer.eval()(x, src_mask=m) under torch.no_grad() equals the output with "
    "column 1 at -inf "
    "(torch 2.13.0)",
    when=lambda i: _finite_bias(i.get("mask")),
    trigger="an additive mask with a finite nonzero bias",
    concerns=("mask_polarity",),
)
_EPS_UNCHECKED = (
    "nn.LayerNorm (layer_norm_eps) accepts a negative eps without a check (torch 2.13.0)"
)


LINEAR_BIAS_BROADCAST = (
    "F.linear broadcasts a bias of shape (1,) over any number of output features instead of "
    "refusing it: "
    "F.linear(torch.randn(3, 2), torch.randn(3, 2), torch.randn(1)) returns (3, 3) (torch 2.13.0)"
)
# LayerNorm's eps and D, refused by the spec, accepted by F.layer_norm (torch 2.13.0)
LAYER_NORM_UNCHECKED = {
    "negative_eps": "F.layer_norm accepts eps < 0 without a check: F.layer_norm(x, (4,), "
    "eps=-1e-5) returns finite values",
    "nan_eps": "F.layer_norm accepts eps = NaN without a check and returns NaN: F.layer_norm(x, "
    "(4,), eps=float('nan'))",
    "eps_zero_on_a_constant_row": (
        "F.layer_norm returns NaN (0/0) for a constant row at eps = 0 instead of refusing: "
        "F.layer_norm(torch.ones(1, 4), (4,), eps=0.0)"
    ),
    "empty_model_dim": (
        "F.layer_norm normalises over D = 0 features without a check: "
        "F.layer_norm(torch.zeros(2, 0), (0,), torch.zeros(0), torch.zeros(0)) returns an empty "
        "(2, 0)"
    ),
}


CE_INT32_TARGETS = Deviation(
    "F.cross_entropy refuses int32 class targets (it takes int64 or uint8): "
    "F.cross_entropy(torch.randn(3, 5), torch.tensor([0, 1, 2], dtype=torch.int32)) raises "
    "RuntimeError (torch 2.13.0)",
    when=lambda i: getattr(i.get("targets"), "dtype", None) == np.int32,
    trigger="int32 targets",
    concerns=("target_dtype",),
)


def _smoothing_sum_overflows(inputs: Mapping[str, Any]) -> bool:
    """float16 with label smoothing, where the sum over kept positions of sum_v |log p_v| passes
    65504."""
    logits = inputs["logits"]
    if logits.dtype != np.float16 or not inputs.get("label_smoothing"):
        return False
    x = logits.astype(np.float64)
    logp = x - x.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))  # (..., V)
    kept = inputs["targets"] != inputs.get("ignore_index", -100)
    return float(np.abs(logp.sum(-1))[kept].sum()) > 65504


CE_FLOAT16_SMOOTHING = Deviation(
    "F.cross_entropy in float16 sums the label-smoothing term over every position and class in "
    "float16 before the "
    "mean and overflows to inf where the loss itself is ~1e3: with logits = (torch.rand(10, 11) * "
    "2 - 1) * 1000 "
    "(seed 0), F.cross_entropy(logits.half(), t, label_smoothing=0.1) is inf, 1124.3 in float64 "
    "(torch 2.13.0)",
    when=_smoothing_sum_overflows,
    trigger="float16, label smoothing, and a smoothing sum over 65504",
)


class TorchAdapter(TorchFlex, TorchPacked, TorchPaged, TorchSeq2Seq, TorchGroupedMHA):
    name = "torch"
    deviations: dict[str, Declared] = {
        "softmax.all_neg_inf_slice_is_zero": Deviation(
            "torch.softmax returns NaN for a slice of only -inf (SDPA has its own _safe_softmax)",
            convention=("fully_masked_row", "nan"),
        ),
        "attention_weights.refuses[nan_scale]": "F.scaled_dot_product_attention accepts scale=NaN "
        "without a check",
        "scaled_dot_product_attention.refuses[nan_scale]": "F.scaled_dot_product_attention accepts "
        "scale=NaN without a check",
        "attention_weights.refuses[empty_keys]": "accepts S = 0 and returns zeros (the "
        "fully-masked answer)",
        "scaled_dot_product_attention.refuses[empty_keys]": "accepts S = 0 and returns zeros (the "
        "fully-masked answer)",
        "attention_weights.refuses[empty_head_dim]": "accepts K = 0: logits are all 0, so V is "
        "averaged uniformly",
        "scaled_dot_product_attention.refuses[empty_head_dim]": "accepts K = 0: logits are all 0, "
        "so V is averaged uniformly",
        "scaled_dot_product_attention.refuses[kv_length_mismatch]": (
            "the CPU flash kernel does not check that V has as many positions as K and returns a "
            "result "
            "(the math backend raises): torch 2.13.0"
        ),
        **{
            f"multi_head_attention.fully_masked_rows_are_zero[{v}]": (
                "nn.MultiheadAttention's self-attention fast path (eval, no grad, query is key is "
                "value) returns NaN "
                "for a fully masked row; its cross-attention path returns zeros"
            )
            for v in ("self+padding_zero_length", "self+bool_empty_rows")
        },
        "causal_mask.refuses[empty_length]": "causal_upper_left(0, S) builds an empty bias instead "
        "of refusing T = 0",
        "causal_mask.refuses[no_keys]": "causal_upper_left(T, 0) builds an empty bias instead of "
        "refusing S = 0",
        **{
            f"{c}.*": (SCALE_ZERO_CAUSAL_NAN, MASK_1D_REFUSED)
            for c in ("attention_weights", "scaled_dot_product_attention")
        },
        "position_wise_ffn.refuses[bias_of_one]": LINEAR_BIAS_BROADCAST,
        # seen where D = 1: b2 then has shape (1,), so any W2 width is accepted
        "position_wise_ffn.refuses[w2_shape_mismatch]": LINEAR_BIAS_BROADCAST
        + "; with D = 1 (b2 of shape (1,)) any W2 width",
        **{
            f"{c}.refuses[{b}]": reason
            for c in ("layer_norm", "add_and_norm")
            for b, reason in LAYER_NORM_UNCHECKED.items()
        },
        # F.rms_norm checks neither eps nor D (torch 2.13.0)
        "rms_norm.refuses[negative_eps]": (
            "F.rms_norm accepts eps < 0: F.rms_norm(torch.ones(1, 4), (4,), torch.ones(4), -1e-6) "
            "is finite"
        ),
        "rms_norm.refuses[nan_eps]": "F.rms_norm accepts eps = NaN and returns NaN",
        "rms_norm.refuses[eps_zero_on_a_zero_row]": (
            "F.rms_norm returns NaN (0/0) for a row of zeros at eps = 0 instead of refusing: "
            "F.rms_norm(torch.zeros(1, 4), (4,), torch.ones(4), 0.0)"
        ),
        "rms_norm.refuses[empty_model_dim]": (
            "F.rms_norm normalises over D = 0 features: F.rms_norm(torch.ones(1, 0), (0,), "
            "torch.ones(0)) is (1, 0)"
        ),
        "token_embedding.refuses[empty_tokens]": (
            "F.embedding accepts an empty id array: F.embedding(torch.zeros(2, 0, "
            "dtype=torch.long), table) is (2, 0, D)"
        ),
        "tied_output_logits.refuses[empty_model_dim]": (
            "F.linear with D = 0 returns zeros (an empty sum): F.linear(torch.randn(1, 1, 0), "
            "torch.randn(11, 0))"
        ),
        "cross_entropy.*": (CE_INT32_TARGETS, CE_FLOAT16_SMOOTHING),
        "cross_entropy.refuses[every_target_ignored]": (
            "F.cross_entropy returns NaN (a mean over no positions) when every target is "
            "ignore_index: "
            "F.cross_entropy(torch.zeros(3, 5), torch.full((3,), -100))"
        ),
        **{
            f"cross_entropy.refuses[{b}]": (
                "F.cross_entropy checks only label_smoothing <= 1: it accepts label_smoothing=-0.1 "
                "or NaN and silently "
                "computes the unsmoothed loss (F.cross_entropy(x, t, label_smoothing=-0.1) == "
                "F.cross_entropy(x, t))"
            )
            for b in ("negative_label_smoothing", "nan_label_smoothing")
        },
        **SEQ2SEQ_DEVIATIONS,
        "encoder_layer.*": (FAST_PATH_EMPTY_ROW, FAST_PATH_FLOAT_MASK),
        "encoder.*": (FAST_PATH_EMPTY_ROW, FAST_PATH_FLOAT_MASK),
        **{
            f"{c}.refuses[negative_eps]": _EPS_UNCHECKED
            for c in ("encoder_layer", "decoder_layer", "encoder", "decoder", "encoder_decoder")
        },
        "encoder_decoder.*": Deviation(
            "an empty source (src_lengths 0) reaches nn.TransformerEncoderLayer's inference fast "
            "path as rows that see no "
            "key, which it returns as NaN (see encoder_layer); the whole model's log-probs are NaN",
            when=empty_source,
            trigger="a source of length 0",
            concerns=("fully_masked_row",),
        ),
        "encoder_decoder.refuses[source_length_beyond_S]": (
            "no torch op checks the source lengths the key-padding mask is built from (arange(S) < "
            "length): a length "
            "beyond S masks nothing"
        ),
    }
    deviations["grouped_query_attention.refuses[kv_heads_mismatch]"] = (
        "F.scaled_dot_product_attention(enable_gqa=True) groups k and v each by its own head "
        "count: q (1, 2, 1, 4), k (1, 1, 1, 4), v (1, 2, 1, 4) returns (1, 2, 1, 4) instead of "
        "refusing v's heads differing from k's (torch 2.13.0)"
    )
    deviations["dropout.seed_names_the_mask"] = Deviation(
        "torch's CPU generator (mt19937) keeps only the low 32 bits of a seed: torch.manual_seed("
        "2**32 - 1) and torch.manual_seed(2**63 - 1) give the same torch.rand(4) (torch 2.13.0), "
        "so seeds that differ only above bit 31 give the same dropout mask (sweep seed 17)",
        when=lambda i: not 0 <= int(i.get("seed", 0)) < 2**32,
        trigger="a seed outside [0, 2^32)",
    )
    deviations |= FLEX_DEVIATIONS | PAGED_DEVIATIONS
    example_shares = FLEX_EXAMPLE_SHARES
    # grouped_query_attention is the same library call with fewer key/value heads
    deviations |= carried_over(
        deviations,
        "scaled_dot_product_attention",
        "grouped_query_attention",
        GQA_CHECKS,
        GQA_VARIANTS,
    )
    # grouped_multi_head_attention's attention is that call too: its whole-component declarations
    deviations |= carried_over(
        deviations, "scaled_dot_product_attention", "grouped_multi_head_attention", {"*"}, set()
    )

    def __init__(self, device: str = "cpu"):
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        self.device = torch.device(device)
        self._leaves: dict[int, torch.Tensor] | None = None  # set only while vjp() runs a component
        self._output: torch.Tensor | None = None

    def _no_grad(self) -> Any:
        """torch.no_grad() for plain calls (it selects the inference fast paths), a no-op under
        vjp()."""
        return contextlib.nullcontext() if self._leaves is not None else torch.no_grad()

    def vjp(
        self, component: str, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """torch.autograd: the component's own forward, run with the inputs named in ``wrt`` (paths
        such as "q" or "params.w_q") as leaves, and the gradient of <cotangent, output> with respect
        to each."""
        return self.vjp_of(getattr(self, component), component, inputs, cotangent, wrt)

    def vjp_of(
        self,
        forward: Any,
        component: str,
        inputs: Mapping[str, Any],
        cotangent: np.ndarray,
        wrt: tuple[str, ...],
    ) -> dict[str, np.ndarray]:
        """vjp() of any forward that converts through this adapter's _t / _np (a third party's torch
        module too: adapters/hf_adapter.py)."""
        from spec.gradients import get_path

        arrays = {path: get_path(inputs, path) for path in wrt}
        self._leaves = {id(a): self._plain(a).requires_grad_() for a in arrays.values()}
        self._output = None
        try:
            forward(**inputs)
            out, leaves = self._output, [self._leaves[id(a)] for a in arrays.values()]
        finally:
            self._leaves = None
        if out is None or not out.requires_grad:
            raise Unsupported(f"{component} does not carry {wrt} to its output differentiably")
        grads = torch.autograd.grad(
            out, leaves, grad_outputs=self._plain(cotangent), allow_unused=True
        )
        missing = [p for p, g in zip(arrays, grads, strict=True) if g is None]
        if missing:
            raise Unsupported(f"{component} does not carry {missing} to its output differentiably")
        return {p: self._np(g) for p, g in zip(arrays, grads, strict=True)}

    def _plain(self, a: np.ndarray) -> torch.Tensor:
        leaves, self._leaves = self._leaves, None
        try:
            return self._t(a)
        finally:
            self._leaves = leaves

    def on_device(self, device: str) -> TorchAdapter:
        return TorchAdapter(device)

    # conversions: NumPy <-> torch, bfloat16 through a 16-bit integer view (NumPy has no bfloat16)
    def _t(self, a: np.ndarray) -> torch.Tensor:
        if (
            self._leaves is not None and id(a) in self._leaves
        ):  # vjp(): this input is differentiated
            return self._leaves[id(a)]
        a = np.array(
            a, order="C", copy=True
        )  # writable and contiguous: torch may not share read-only memory
        if a.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(self.device)
        return torch.from_numpy(a).to(self.device)

    def _np(self, t: torch.Tensor) -> np.ndarray:
        if (
            self._leaves is not None
        ):  # vjp(): the last tensor converted back is the component's output
            self._output = t
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy()

    def softmax(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        return self._np(torch.softmax(self._t(x), dim=axis))

    def _sdpa_mask(
        self, mask: np.ndarray | None, causal: str | None, T: int, S: int
    ) -> tuple[Any, bool]:
        """(attn_mask, is_causal) for F.scaled_dot_product_attention: torch's own causal paths where
        they exist; a causal mask combined with another mask has to be materialised."""
        if causal is None:
            return (None if mask is None else self._t(mask)), False
        if mask is None:
            return (None, True) if causal == "top_left" else (_CAUSAL[causal](T, S), False)
        allowed = _CAUSAL[causal](T, S)._materialize(self.device)  # (T, S) bool, True = may attend
        m = self._t(mask)
        if m.dtype == torch.bool:
            return m & allowed, False
        return m.masked_fill(~allowed, float("-inf")), False

    def scaled_dot_product_attention(
        self, q, k, v, mask=None, scale=None, causal=None, enable_gqa=False
    ):
        attn_mask, is_causal = self._sdpa_mask(mask, causal, q.shape[-2], k.shape[-2])
        out = F.scaled_dot_product_attention(
            self._t(q),
            self._t(k),
            self._t(v),
            attn_mask=attn_mask,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
        )
        return self._np(out)

    def grouped_query_attention(self, q, k, v, mask=None, scale=None, causal=None):
        # torch's own grouping: enable_gqa repeats each key/value head for Hq / Hkv query heads
        return self.scaled_dot_product_attention(q, k, v, mask, scale, causal, enable_gqa=True)

    def attention_weights(self, q, k, mask=None, scale=None, causal=None):
        # SDPA(q, k, I) = softmax(...) I: torch's own kernel produces the weights.
        B, H, S = k.shape[0], k.shape[1], k.shape[2]
        eye = np.broadcast_to(np.eye(S, dtype=q.dtype), (B, H, S, S))  # (B, H, S, S)
        return self.scaled_dot_product_attention(q, k, eye, mask=mask, scale=scale, causal=causal)

    def causal_mask(self, T: int, S: int, alignment: str = "top_left") -> np.ndarray:
        return self._np(_CAUSAL[alignment](T, S)._materialize(self.device))

    def multi_head_attention(
        self,
        query,
        key,
        value,
        params: Mapping[str, np.ndarray],
        num_heads: int,
        mask=None,
        causal=None,
    ):
        B, T, D = query.shape
        S = key.shape[1]
        dtype = self._t(query[:0]).dtype
        mha = torch.nn.MultiheadAttention(
            D, num_heads, bias=True, batch_first=True, device=self.device, dtype=dtype
        )
        w = {n: self._t(params[n]) for n in ("w_q", "w_k", "w_v", "w_o")}
        b = {
            n: self._t(params[n])
            if n in params
            else torch.zeros(D, dtype=dtype, device=self.device)
            for n in ("b_q", "b_k", "b_v", "b_o")
        }
        # torch computes x W^T + b with W (D_out, D_in): it stores the canonical weights transposed.
        # The weights go in through functional_call, so vjp() can differentiate with respect to
        # them.
        weights = {
            "in_proj_weight": torch.cat([w["w_q"].T, w["w_k"].T, w["w_v"].T]),  # (3D, D)
            "in_proj_bias": torch.cat([b["b_q"], b["b_k"], b["b_v"]]),  # (3D,)
            "out_proj.weight": w["w_o"].T,  # (D, D)
            "out_proj.bias": b["b_o"],
        }
        mha.eval()
        q = self._t(query)
        k = q if key is query else self._t(key)
        v = k if value is key else self._t(value)
        attn_mask = self._mha_mask(mask, causal, B, num_heads, T, S)
        with self._no_grad():
            out, _ = torch.func.functional_call(
                mha, weights, (q, k, v), {"attn_mask": attn_mask, "need_weights": False}
            )
        return self._np(out)

    def _mha_mask(
        self, mask: np.ndarray | None, causal: str | None, B: int, H: int, T: int, S: int
    ) -> torch.Tensor | None:
        """nn.MultiheadAttention's attn_mask: (B*H, T, S), boolean True = NOT allowed (the opposite
        of the spec)."""
        if mask is None and causal is None:
            return None
        m = (
            self._t(np.broadcast_to(mask, (B, H, T, S)).reshape(B * H, T, S))
            if mask is not None
            else None
        )  # (B*H, T, S)
        if causal is not None:
            allowed = _CAUSAL[causal](T, S)._materialize(self.device)  # (T, S)
            m = (
                allowed.expand(B * H, T, S)
                if m is None
                else (
                    m & allowed if m.dtype == torch.bool else m.masked_fill(~allowed, float("-inf"))
                )
            )
        assert m is not None  # a mask or causal is given (None returned above otherwise)
        return ~m if m.dtype == torch.bool else m

    # --- embeddings -------------------------------------------------------------------------------
    def sinusoidal_positional_encoding(
        self, T: int, D: int, base: float = 10000.0, dtype: str = "float32"
    ) -> np.ndarray:
        if T < 1 or D < 1 or not (base > 1 and np.isfinite(base)):
            raise ValueError(f"need T >= 1, D >= 1, finite base > 1; got T={T}, D={D}, base={base}")
        return self._np(positional_encoding_table(T, D, base, dtype, self.device))

    def token_embedding(self, tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
        t = self._t(table)
        return self._np(F.embedding(self._t(tokens), t) * math.sqrt(table.shape[1]))

    def embed_with_positions(
        self, tokens: np.ndarray, table: np.ndarray, base: float = 10000.0
    ) -> np.ndarray:
        pe = self._t(
            self.sinusoidal_positional_encoding(
                tokens.shape[1], table.shape[1], base, table.dtype.name
            )
        )
        return self._np(self._t(self.token_embedding(tokens, table)) + pe)

    def tied_output_logits(self, h: np.ndarray, table: np.ndarray) -> np.ndarray:
        return self._np(F.linear(self._t(h), self._t(table)))  # h E^T

    # --- position-wise layers ---------------------------------------------------------------------
    def position_wise_ffn(
        self, x: np.ndarray, params: Mapping[str, np.ndarray], activation: str = "relu"
    ) -> np.ndarray:
        act = {
            "relu": F.relu,
            "gelu": lambda h: F.gelu(h, approximate="none"),
            "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
        }[activation]
        p = {k: self._t(v) for k, v in params.items()}
        h = act(
            F.linear(self._t(x), p["w1"].T, p["b1"])
        )  # F.linear computes x W^T + b: pass the canonical W transposed
        return self._np(F.linear(h, p["w2"].T, p["b2"]))

    def layer_norm(
        self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
    ) -> np.ndarray:
        return self._np(
            F.layer_norm(self._t(x), (x.shape[-1],), self._t(gamma), self._t(beta), eps)
        )

    def rms_norm(self, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        # eps explicitly: F.rms_norm's own default (None) is finfo(x.dtype).eps, not the spec's 1e-6
        return self._np(F.rms_norm(self._t(x), (x.shape[-1],), self._t(gamma), eps))

    def add_and_norm(
        self,
        x: np.ndarray,
        sublayer_out: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        eps: float = 1e-5,
    ) -> np.ndarray:
        if sublayer_out.shape != x.shape:  # x + sublayer_out would broadcast silently in torch
            raise ValueError(f"sublayer_out must be {x.shape}; got {sublayer_out.shape}")
        return self._np(
            F.layer_norm(
                self._t(x) + self._t(sublayer_out),
                (x.shape[-1],),
                self._t(gamma),
                self._t(beta),
                eps,
            )
        )

    def dropout(self, x: np.ndarray, p: float, training: bool = False, seed: int = 0) -> np.ndarray:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self._np(F.dropout(self._t(x), p, training))

    # --- teacher forcing and the loss -------------------------------------------------------------
    def shift_right(self, targets: np.ndarray, bos: int, pad: int) -> np.ndarray:
        # torch has no shift-right: user code with torch ops
        t = self._t(targets)
        if t.ndim != 2 or t.shape[1] == 0 or t.dtype.is_floating_point:
            raise ValueError(
                f"targets must be int ids (B, T) with T >= 1; got {t.dtype} {tuple(t.shape)}"
            )
        shifted = torch.cat([torch.full_like(t[:, :1], bos), t[:, :-1]], dim=1)  # (B, T)
        return self._np(torch.where(t == pad, torch.full_like(t, pad), shifted))

    def cross_entropy(
        self,
        logits: np.ndarray,
        targets: np.ndarray,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> np.ndarray:
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"targets must be {logits.shape[:-1]}; got {targets.shape}")
        V = logits.shape[-1]
        flat_logits, flat_targets = (
            self._t(logits).reshape(-1, V),
            self._t(targets).reshape(-1),
        )  # (N, V), (N,)
        return self._np(
            F.cross_entropy(
                flat_logits,
                flat_targets,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            )
        )

    # --- encoder and decoder: nn.TransformerEncoderLayer / DecoderLayer, nn.TransformerEncoder /
    # Decoder
    def _load_mha(
        self, state: dict[str, torch.Tensor], prefix: str, p: Mapping[str, np.ndarray]
    ) -> None:
        zeros = np.zeros(p["w_q"].shape[0], dtype=p["w_q"].dtype)
        state[f"{prefix}.in_proj_weight"] = self._t(
            np.concatenate([p[w].T for w in ("w_q", "w_k", "w_v")])
        )  # (3D, D)
        state[f"{prefix}.in_proj_bias"] = self._t(
            np.concatenate([p.get(b, zeros) for b in ("b_q", "b_k", "b_v")])
        )
        state[f"{prefix}.out_proj.weight"] = self._t(p["w_o"].T)
        state[f"{prefix}.out_proj.bias"] = self._t(p.get("b_o", zeros))

    def _layer_state(self, params: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
        """The canonical layer params as a torch state dict (torch's Linear stores W transposed)."""
        state: dict[str, torch.Tensor] = {}
        self._load_mha(state, f"{prefix}self_attn", params["self_attn"])
        if "cross_attn" in params:
            self._load_mha(state, f"{prefix}multihead_attn", params["cross_attn"])
        ffn = params["ffn"]
        state.update(
            {
                f"{prefix}linear1.weight": self._t(ffn["w1"].T),
                f"{prefix}linear1.bias": self._t(ffn["b1"]),
                f"{prefix}linear2.weight": self._t(ffn["w2"].T),
                f"{prefix}linear2.bias": self._t(ffn["b2"]),
            }
        )
        for i in (1, 2, 3):
            if f"norm{i}" in params:
                state[f"{prefix}norm{i}.weight"] = self._t(params[f"norm{i}"]["gamma"])
                state[f"{prefix}norm{i}.bias"] = self._t(params[f"norm{i}"]["beta"])
        return state

    def _make_layer(
        self,
        decoder: bool,
        D: int,
        H: int,
        width: int,
        norm_first: bool,
        activation: str,
        eps: float,
        dtype: torch.dtype,
    ) -> torch.nn.Module:
        acts: dict[str, str | Callable[[torch.Tensor], torch.Tensor]] = {
            "relu": "relu",
            "gelu": "gelu",
            "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
        }
        act = acts[activation]
        cls = torch.nn.TransformerDecoderLayer if decoder else torch.nn.TransformerEncoderLayer
        return cls(
            D,
            H,
            width,
            dropout=0.0,
            activation=act,
            layer_norm_eps=eps,
            batch_first=True,
            norm_first=norm_first,
            device=self.device,
            dtype=dtype,
        )

    def _run_stack(
        self,
        x: np.ndarray,
        memory: np.ndarray | None,
        layers: list[Mapping[str, Any]],
        num_heads: int,
        mask: np.ndarray | None,
        norm_first: bool,
        activation: str,
        eps: float,
        final_norm: Mapping[str, np.ndarray] | None,
        single: bool,
    ) -> np.ndarray:
        B, T, D = x.shape
        width = layers[0]["ffn"]["w1"].shape[1]  # F, the FFN's inner width
        dtype = self._t(x[:0]).dtype
        layer = self._make_layer(
            memory is not None, D, num_heads, width, norm_first, activation, eps, dtype
        )
        norm = None
        if final_norm is not None:
            norm = torch.nn.LayerNorm(D, eps=eps, device=self.device, dtype=dtype)
        if single:
            module, state = layer, self._layer_state(layers[0])
        elif memory is None:
            module = torch.nn.TransformerEncoder(
                cast(torch.nn.TransformerEncoderLayer, layer),
                len(layers),
                norm=norm,
                enable_nested_tensor=False,
            )
            state = {
                k: v
                for i, p in enumerate(layers)
                for k, v in self._layer_state(p, f"layers.{i}.").items()
            }
        else:
            module = torch.nn.TransformerDecoder(
                cast(torch.nn.TransformerDecoderLayer, layer), len(layers), norm=norm
            )
            state = {
                k: v
                for i, p in enumerate(layers)
                for k, v in self._layer_state(p, f"layers.{i}.").items()
            }
        if final_norm is not None and not single:  # where norm was made
            state.update(
                {
                    "norm.weight": self._t(final_norm["gamma"]),
                    "norm.bias": self._t(final_norm["beta"]),
                }
            )
        module.load_state_dict(state)
        module.eval()
        with self._no_grad():
            if memory is None:
                S = T
                out = (
                    module(self._t(x), mask=self._mha_mask(mask, None, B, num_heads, T, S))
                    if not single
                    else module(self._t(x), src_mask=self._mha_mask(mask, None, B, num_heads, T, S))
                )
            else:
                S = memory.shape[1]
                causal = torch.nn.Transformer.generate_square_subsequent_mask(
                    T, device=self.device, dtype=dtype
                )  # (T, T): -inf above
                out = module(
                    self._t(x),
                    self._t(memory),
                    tgt_mask=causal,
                    memory_mask=self._mha_mask(mask, None, B, num_heads, T, S),
                    tgt_is_causal=True,
                )
        return self._np(out)

    def encoder_layer(
        self, x, params, num_heads, mask=None, norm_first=False, activation="relu", eps=1e-5
    ):
        return self._run_stack(
            x, None, [params], num_heads, mask, norm_first, activation, eps, None, single=True
        )

    def decoder_layer(
        self,
        y,
        memory,
        params,
        num_heads,
        memory_mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
    ):
        return self._run_stack(
            y,
            memory,
            [params],
            num_heads,
            memory_mask,
            norm_first,
            activation,
            eps,
            None,
            single=True,
        )

    def encoder(
        self,
        x,
        layers,
        num_heads,
        mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
        final_norm=None,
    ):
        return self._run_stack(
            x,
            None,
            list(layers),
            num_heads,
            mask,
            norm_first,
            activation,
            eps,
            final_norm,
            single=False,
        )

    def decoder(
        self,
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
        return self._run_stack(
            y,
            memory,
            list(layers),
            num_heads,
            memory_mask,
            norm_first,
            activation,
            eps,
            final_norm,
            single=False,
        )

    def encoder_decoder(
        self,
        src_tokens,
        tgt_in,
        params,
        num_heads,
        src_lengths=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
    ):
        from adapters.compose import encoder_decoder_from

        log_softmax = lambda logits: self._np(F.log_softmax(self._t(logits), dim=-1))
        return encoder_decoder_from(
            self,
            log_softmax,
            src_tokens,
            tgt_in,
            params,
            num_heads,
            src_lengths,
            norm_first,
            activation,
            eps,
        )


_TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

adapter = TorchAdapter("cpu")
