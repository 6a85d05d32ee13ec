"""HuggingFace transformers adapter: MarianAttention (the BART family's attention) with random
weights.

Selectable as `--adapter hf-eager` or `--adapter hf-sdpa` (config._attn_implementation) once `pip
install -e ".[thirdparty]"` has installed transformers; no download: the module is built from a
MarianConfig. It maps multi_head_attention: q_proj / k_proj / v_proj / out_proj are nn.Linear (W^T),
self-attention passes hidden_states only, cross-attention key_value_states (key and value must then
be the same array: Marian projects one memory into both). Masks go in as HF does it, an additive
float mask (B or 1, H or 1, T, S), with -inf where the spec forbids a key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from transformers import MarianConfig
from transformers.models.marian.modeling_marian import MarianAttention

from adapters.torch_adapter import TorchAdapter
from reference.masks import causal_mask
from spec.core import Unsupported


class HFMarianAdapter:
    """Offers multi_head_attention only (a TorchAdapter is held for the NumPy <-> torch
    conversions)."""

    deviations: dict[str, str] = {}

    def __init__(self, implementation: str = "eager", device: str = "cpu"):
        self._torch = torch_adapter = TorchAdapter(device)
        self.device, self._t, self._np = torch_adapter.device, torch_adapter._t, torch_adapter._np
        self.implementation, self.name = implementation, f"hf-{implementation}"
        if implementation == "eager":
            self.deviations = {
                "multi_head_attention.fully_masked_rows_are_zero": (
                    "eager_attention_forward softmaxes a row of only -inf to NaN (the sdpa "
                    "implementation returns "
                    "zeros); HF's own models build masks with finfo.min instead, which averages V "
                    "there"
                )
            }

    def on_device(self, device: str) -> HFMarianAdapter:
        return HFMarianAdapter(self.implementation, device)

    def vjp(
        self, component: str, inputs: Mapping, cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """torch.autograd through HF's own module (the torch adapter's machinery, HF's forward)."""
        return self._torch.vjp_of(getattr(self, component), component, inputs, cotangent, wrt)

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
        if key is not value:
            raise Unsupported(
                "MarianAttention projects one memory into keys and values: key and value must be "
                "the same"
            )
        S = key.shape[1]
        config = MarianConfig(d_model=D, encoder_attention_heads=num_heads, attention_dropout=0.0)
        config._attn_implementation = self.implementation
        dtype = self._t(query[:0]).dtype
        attention = (
            MarianAttention(D, num_heads, dropout=0.0, bias=True, config=config)
            .to(self.device, dtype)
            .eval()
        )
        zeros = np.zeros(D, dtype=query.dtype)
        # nn.Linear stores W^T; the weights go in through functional_call, so vjp() differentiates
        # them in place
        weights = {}
        for n, layer in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "out_proj")):
            weights[f"{layer}.weight"] = self._t(params[f"w_{n}"]).T  # (D_out, D_in)
            weights[f"{layer}.bias"] = self._t(params.get(f"b_{n}", zeros))
        bias = self._bias(mask, causal, T, S, query.dtype)
        kwargs = {"attention_mask": bias} | (
            {} if key is query else {"key_value_states": self._t(key)}
        )
        with self._torch._no_grad():
            out, _ = torch.func.functional_call(attention, weights, (self._t(query),), kwargs)
        return self._np(out)

    def _bias(
        self, mask: np.ndarray | None, causal: str | None, T: int, S: int, dtype: np.dtype
    ) -> torch.Tensor | None:
        """The spec's mask and causal alignment as HF's additive attention_mask (4-D, -inf where
        forbidden)."""
        if mask is None and causal is None:
            return None
        bias = np.zeros((1, 1, T, S))
        if mask is not None:
            m = mask.astype(np.float64) if mask.dtype != np.bool_ else np.where(mask, 0.0, -np.inf)
            bias = bias + m.reshape((1,) * (4 - m.ndim) + m.shape)
        if causal is not None:
            bias = np.where(causal_mask(T, S, causal), bias, -np.inf)
        return self._t(np.ascontiguousarray(bias.astype(dtype)))


eager = HFMarianAdapter("eager")
sdpa = HFMarianAdapter("sdpa")
