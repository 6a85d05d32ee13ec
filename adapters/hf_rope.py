"""HuggingFace transformers' own rotary helpers (`--adapter hf-rope`; `pip install -e
".[thirdparty]"`): rotary_embedding only.

- layout "half": Llama's `LlamaRotaryEmbedding(config)` gives cos and sin for the position ids
  (rope_theta = base, partial_rotary_factor = rotary_dim / K, the default rope type), and
  `apply_rotary_pos_emb(q, k, cos, sin)` rotates (B, H, T, r). The models with partial rotation
  (GPT-NeoX, Phi, StableLM) slice q[..., :r] and concatenate the rest back in their attention code;
  the adapter does that slicing, which is the model's, not the helpers'.
- layout "interleaved": GPT-J's `create_sinusoidal_positions(num_pos, r)` table, gathered at the
  position ids and split into sin and cos as GPTJAttention does, and `apply_rotary_pos_emb(tensor,
  sin, cos)` on (B, T, H, r). GPT-J fixes the base at 10000: any other base is unsupported.

Both take (B, T) position ids: the spec's positions (T,) or (B, T) plus its offset.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaConfig
from transformers.models.gptj import modeling_gptj
from transformers.models.llama import modeling_llama

from adapters.torch_adapter import TorchAdapter
from spec.core import Unsupported

GPTJ_BASE = 10_000
GPTJ_TABLE_LIMIT = 1 << 17  # GPT-J tabulates every position below the largest: 2^17 x r floats


class HFRope:
    """rotary_embedding through HF's Llama (half) and GPT-J (interleaved) helpers."""

    name = "hf-rope"

    def __init__(self, device: str = "cpu"):
        self._torch = TorchAdapter(device)
        self.device, self._t, self._np = self._torch.device, self._torch._t, self._torch._np
        float32_angles = (
            "HF forms the angles in float32 whatever the dtype: LlamaRotaryEmbedding.forward "
            "computes inv_freq @ position_ids under autocast(enabled=False) in float32 and casts "
            "cos, sin to x.dtype (modeling_llama.py); GPT-J's create_sinusoidal_positions returns "
            "a float32 table. A float64 x is rotated by float32 angles, off by ~6e-8 p rad"
        )
        unchecked = (
            "HF's rotary helpers check no argument: LlamaRotaryEmbedding takes any rope_theta and "
            "partial_rotary_factor (0 rotates nothing), apply_rotary_pos_emb any position ids "
            "(negative or float ones rotate backwards or by fractions); an odd rotary size "
            "broadcasts against its cos table of r + 1 entries (K = 1 comes back with 2 values; "
            "modeling_llama.py apply_rotary_pos_emb and rotate_half, transformers 4.57.1)"
        )
        self.deviations = {
            "rotary_embedding.matches_reference@float64": float32_angles,
            "rotary_embedding.scores_depend_on_distance_only@float64": float32_angles,
            **{
                f"rotary_embedding.refuses[{bad}]": unchecked
                for bad in (
                    "odd_rotary_dim",
                    "odd_K_without_rotary_dim",
                    "zero_rotary_dim",
                    "negative_position",
                    "float_positions",
                    "negative_offset",
                    "base_one",
                    "negative_base",
                    "nan_base",
                )
            },
        }

    def on_device(self, device: str) -> HFRope:
        return HFRope(device)

    def rotary_embedding(
        self, x, positions=None, offset=0, base=10000.0, rotary_dim=None, layout="half"
    ):
        B, H, T, K = x.shape
        r = K if rotary_dim is None else rotary_dim
        pos = np.arange(T) if positions is None else positions
        ids = np.broadcast_to(pos, (B, T)) + np.reshape(offset, (-1, 1))  # (B, T)
        xt = self._t(x)
        rot, rest = xt[..., :r], xt[..., r:]  # the model's split for partial rotation
        with torch.no_grad():
            if layout == "half":
                out = self._half(rot, torch.as_tensor(ids, device=self.device), base, r, K, H)
            elif layout == "interleaved":
                out = self._interleaved(rot, ids, base, r)
            else:  # the adapter's own dispatch: HF's helpers take no layout argument
                raise ValueError(f"no HF rotary helper has layout {layout!r}")
            return self._np(torch.cat([out, rest], dim=-1))

    def _half(self, rot: torch.Tensor, ids: torch.Tensor, base: float, r: int, K: int, H: int):
        config = LlamaConfig(
            hidden_size=H * K,
            num_attention_heads=H,
            head_dim=K,
            rope_theta=base,
            partial_rotary_factor=r / K,
            max_position_embeddings=int(ids.max()) + 1,
        )
        rope = modeling_llama.LlamaRotaryEmbedding(config, device=self.device)
        cos, sin = rope(rot, ids)  # (B, T, r), in rot's dtype
        q, _ = modeling_llama.apply_rotary_pos_emb(rot, rot, cos, sin)  # (B, H, T, r)
        return q

    def _interleaved(self, rot: torch.Tensor, ids: np.ndarray, base: float, r: int):
        if base != GPTJ_BASE:
            raise Unsupported(f"GPT-J's rotary base is fixed at {GPTJ_BASE}; got {base}")
        if int(ids.max()) >= GPTJ_TABLE_LIMIT:
            raise Unsupported(f"GPT-J tabulates every position; {int(ids.max())} is past the limit")
        table = modeling_gptj.create_sinusoidal_positions(int(ids.max()) + 1, r)  # (P, r) float32
        sincos = table.to(self.device)[torch.as_tensor(ids, device=self.device)]  # (B, T, r)
        sin, cos = torch.split(sincos, r // 2, dim=-1)  # GPTJAttention's split
        tensor = rot.transpose(1, 2)  # (B, T, H, r): GPT-J's layout
        # GPT-J multiplies by its float32 table as it is (a 16-bit x is promoted); the spec's
        # output is in x's dtype, so the result is rounded once
        out = modeling_gptj.apply_rotary_pos_emb(tensor, sin, cos).to(rot.dtype)
        return out.transpose(1, 2)  # (B, H, T, r)


adapter = HFRope()
