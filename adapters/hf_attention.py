"""HuggingFace transformers' decoder attention modules, run whole (`--adapter hf-llama-eager`,
`hf-mistral-sdpa`, `hf-gemma2-flex`, `hf-gpt_oss-eager`, ...; `pip install -e ".[thirdparty]"`).

Each adapter builds one attention layer of a small random-free config (no download) and runs the
model's own path: the mask from `masking_utils.create_causal_mask` or
`create_sliding_window_causal_mask` as the model's forward calls them, the key/value cache
(`DynamicCache(config=...)`, whose sliding layers keep only the last window - 1 tokens), the
module's `forward` and through it the attention function the config selects (the model's
`eager_attention_forward`, or `ALL_ATTENTION_FUNCTIONS["sdpa" | "flex_attention"]`).

Two mappings of the spec onto a module:

- multi_head_attention (self-attention, H key/value heads): the spec's W_q, W_k, W_v, W_o go into
  q_proj, k_proj, v_proj, o_proj (nn.Linear holds W^T), the biases where the family has them, and
  RoPE is the identity (cos = 1, sin = 0: position ids are the cache positions, and the spec's
  component has no positions).
- scaled_dot_product_attention, grouped_query_attention, variant_attention: the projections are
  0/1 selections (exact), so hidden states [q | k_new | v_new] (B, T, Hq K + 2 Hkv K) give the
  module exactly the spec's q and the last T keys and values; the first S - T keys and values are
  the cache's past. Only S >= T is expressible (a decoder's queries are its newest keys), causality
  and windows are bottom-right (HF aligns at the cache position), and a window is causal with
  `sliding_window = left + 1` (HF keeps keys with q - W < kv <= q). The scale is the module's
  `scaling` attribute, softcaps are Gemma 2's `attn_logit_softcapping`, sinks gpt-oss's `sinks`
  parameter (an example without sinks gets sinks of -inf, which join no denominator).

Masks go in as HF takes them: a boolean key-padding mask (B or 1, 1, 1, S) as the 2-D
`attention_mask` the mask builders combine with causality and windows; without causality or a window
any other (B or 1, 1, T or 1, S) mask as a custom 4-D mask (returned as-is by the builders), bool
turned into HF's additive form (0 / finfo.min). Everything else raises Unsupported.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import cache_utils, masking_utils

from adapters import HF_ATTENTION, Deviation
from adapters.compose import ThroughVariants, check_align
from adapters.rows import row_without_keys
from adapters.torch_adapter import TorchAdapter
from spec.core import Unsupported

# family: (module of modeling code, config class, attention class, rotary class, what it offers)
FAMILIES: dict[str, tuple[str, str, str, str, frozenset[str]]] = {
    "llama": ("llama", "LlamaConfig", "LlamaAttention", "LlamaRotaryEmbedding", frozenset()),
    "mistral": (
        "mistral",
        "MistralConfig",
        "MistralAttention",
        "MistralRotaryEmbedding",
        frozenset({"window"}),
    ),
    "qwen2": (
        "qwen2",
        "Qwen2Config",
        "Qwen2Attention",
        "Qwen2RotaryEmbedding",
        frozenset({"window"}),
    ),
    "gemma2": (
        "gemma2",
        "Gemma2Config",
        "Gemma2Attention",
        "Gemma2RotaryEmbedding",
        frozenset({"window", "softcap"}),
    ),
    "gpt_oss": (
        "gpt_oss",
        "GptOssConfig",
        "GptOssAttention",
        "GptOssRotaryEmbedding",
        frozenset({"window", "sinks"}),
    ),
}


COMPONENTS = (
    "multi_head_attention",
    "grouped_multi_head_attention",
    "scaled_dot_product_attention",
    "grouped_query_attention",
    "variant_attention",
)


def _scale_at_most_zero(inputs: Mapping[str, Any]) -> bool:
    return inputs.get("scale") is not None and inputs["scale"] <= 0 and inputs.get("mask") is None


def _one_key_window_over_a_cache(inputs: Mapping[str, Any]) -> bool:
    window = inputs.get("window")
    return window is not None and window[0] == 0 and inputs["k"].shape[2] > inputs["q"].shape[2]


def _softcap(inputs: Mapping[str, Any]) -> bool:
    return inputs.get("softcap") is not None


def _additive(inputs: Mapping[str, Any]) -> bool:
    mask = inputs.get("mask")
    return mask is not None and mask.dtype != np.bool_


MIN_FILL = Deviation(
    "HF's masks fill hidden keys with finfo(dtype).min, not -inf (masking_utils.eager_mask, and "
    "the custom 4-D masks its docs describe): a row that sees no key averages V instead of giving "
    "0 (b_o in multi_head_attention)",
    lambda i: not _additive(i) and row_without_keys(i),
    "a query row sees no key through a boolean mask, causality or a window",
    convention=("fully_masked_row", "uniform"),
)
# measured under --semantics fully_masked_row=uniform: the fill is HF's own masks' only
ADDITIVE_NAN = Deviation(
    "an additive 4-D mask is added as it is (modeling_llama.py eager_attention_forward, "
    "'attn_weights = attn_weights + causal_mask'): a row whose mask is -inf at every key is the "
    "eager softmax of -inf, NaN (not the finfo.min fill of the masks HF builds)",
    lambda i: _additive(i) and row_without_keys(i),
    "an additive mask hides every key of a query row",
    convention=("fully_masked_row", "nan"),
)
FLOAT32_SOFTMAX = (
    "the models' eager_attention_forward softmaxes in float32 whatever the dtype "
    "(softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype), modeling_llama.py): "
    "float64 inputs come back at float32 accuracy (~1e-7)"
)
UNCHECKED = (
    "HF's attention modules check no argument: a NaN scaling runs (NaN out), "
    "attn_logit_softcapping 0 divides by 0 (tanh(inf) x 0: every logit 0), a negative or NaN one "
    "runs, a sliding_window <= 0 runs (modeling_gemma2.py eager_attention_forward divides by "
    "softcap unchecked: 'attn_weights = attn_weights / softcap'; transformers 4.57.1)"
)
SDPA_SCALE = Deviation(
    "without a mask HF's sdpa path passes is_causal=True to F.scaled_dot_product_attention (its "
    "_ignore_causal_mask_sdpa skip), whose CPU flash kernel returns NaN for scale <= 0 (torch "
    "2.13; see torch's own declaration)",
    _scale_at_most_zero,
    "scale <= 0 without a mask",
    concerns=("scale",),
)
ONE_KEY_WINDOW = Deviation(
    "sliding_window = 1 over a cache crashes: DynamicSlidingWindowLayer.update keeps "
    "full_key_states[:, :, -sliding_window + 1:], which for 1 is [:, :, 0:] (every token), while "
    "get_mask_sizes counts sliding_window - 1 = 0 past tokens, so the mask is T keys wide for "
    "S keys (cache_utils.py; RuntimeError 'The size of tensor a (S) must match ... (T)')",
    _one_key_window_over_a_cache,
    "window (0, 0) with S > T",
    concerns=("window",),
)
SDPA_LONG_V = (
    "HF hands k and v to F.scaled_dot_product_attention unchecked, and torch's CPU flash kernel "
    "accepts a V with more positions than K (torch's own declaration): q, k (1, 1, 1, 8) with "
    "v (1, 1, 2, 8) returns a result"
)
SDPA_SOFTCAP = Deviation(
    "Gemma 2's attention passes softcap=attn_logit_softcapping to every attention function, and "
    "sdpa_attention_forward drops it without a warning (integrations/sdpa_attention.py): the "
    "logits are not capped",
    _softcap,
    "a soft-cap is given",
    concerns=("softcap",),
)


def _deviations(family: str, implementation: str) -> dict[str, Any]:
    """What this family and implementation do differently (measured; each with its cause)."""
    offers = FAMILIES[family][4]
    found: list[tuple[str, Any]] = [
        (f"{c}.*", d) for c in COMPONENTS for d in (MIN_FILL, ADDITIVE_NAN)
    ]
    if implementation == "eager" and family != "gpt_oss":  # gpt-oss softmaxes in the dtype
        found += [(f"{c}.*@float64", FLOAT32_SOFTMAX) for c in COMPONENTS]
    if implementation == "sdpa":
        found += [(f"{c}.*", SDPA_SCALE) for c in COMPONENTS]
        found += [(f"{c}.refuses[kv_length_mismatch]", SDPA_LONG_V) for c in COMPONENTS[2:]]
        if family == "gemma2":
            found.append(("variant_attention.*", SDPA_SOFTCAP))
    if "window" in offers:
        found.append(("variant_attention.*", ONE_KEY_WINDOW))
        found.append(("variant_attention.refuses[window_below_minus_one]", UNCHECKED))
    if "softcap" in offers:
        found += [
            (f"variant_attention.refuses[{b}]", UNCHECKED)
            for b in ("zero_softcap", "negative_softcap", "nan_softcap")
        ]
    found += [(f"{c}.refuses[nan_scale]", UNCHECKED) for c in COMPONENTS[2:]]
    out: dict[str, Any] = {}
    for key, why in found:  # several on one key: the tuple form (any trigger covers)
        if key in out:
            before = out[key] if isinstance(out[key], tuple) else (out[key],)
            out[key] = (*before, why)
        else:
            out[key] = why
    return out


def _key_padding(mask: np.ndarray, B: int, S: int) -> np.ndarray | None:
    """The (B, S) int padding mask a boolean mask is, when it only hides keys; else None."""
    if mask.dtype != np.bool_:
        return None
    full = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
    if full.shape[1] != 1 or full.shape[2] != 1:
        return None
    return np.broadcast_to(full[:, 0, 0, :], (B, S)).astype(np.int64)  # (B, S): 1 = attend


class HFAttention(ThroughVariants):
    """One family's attention layer through one attention implementation."""

    def __init__(self, family: str, implementation: str, device: str = "cpu"):
        self._torch = TorchAdapter(device)
        self.device, self._t, self._np = self._torch.device, self._torch._t, self._torch._np
        self.family, self.implementation = family, implementation
        self.name = f"hf-{family}-{implementation}"
        module, config, attention, rotary, self.offers = FAMILIES[family]
        self._modeling = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
        self._config_class = getattr(importlib.import_module("transformers"), config)
        self._attention_class = getattr(self._modeling, attention)
        self._rotary_class = getattr(self._modeling, rotary)
        self.deviations: dict[str, Any] = _deviations(family, implementation)

    def on_device(self, device: str) -> HFAttention:
        return HFAttention(self.family, self.implementation, device)

    def vjp(
        self, component: str, inputs: Mapping, cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """torch.autograd through HF's module (the torch adapter's machinery, HF's forward)."""
        return self._torch.vjp_of(getattr(self, component), component, inputs, cotangent, wrt)

    # --- the components -------------------------------------------------------------------

    def multi_head_attention(self, query, key, value, params, num_heads, mask=None, causal=None):
        D = query.shape[-1]
        return self._projected(
            query, key, value, params, num_heads, num_heads, D // num_heads, mask, causal
        )

    def grouped_multi_head_attention(
        self, query, key, value, params, num_heads, num_kv_heads, mask=None, causal=None
    ):
        # the family's own grouping: num_key_value_heads in the config, k_proj/v_proj of Hkv heads
        K = params["w_q"].shape[1] // num_heads
        if params["w_v"].shape[1] != params["w_k"].shape[1]:
            raise Unsupported("HF's value heads are head_dim wide, as its key heads (Kv = K)")
        return self._projected(query, key, value, params, num_heads, num_kv_heads, K, mask, causal)

    def _projected(self, query, key, value, params, H, Hkv, K, mask, causal):
        """The layer with the spec's weights in q/k/v/o_proj (nn.Linear holds W^T)."""
        if key is not query or value is not query:
            raise Unsupported("HF's decoder attention is self-attention: key and value are query")
        B, T, D = query.shape
        if K % 2:
            raise Unsupported("HF's decoders rotate q and k in every layer: head_dim must be even")
        bias = any(np.any(params.get(f"b_{n}", 0) != 0) for n in "qkvo")
        config = self._config(D, H, Hkv, K, None, None, None)
        if bias and hasattr(config, "attention_bias"):
            config.attention_bias = True
        layer = self._layer(config, query.dtype)
        weights = {}
        for n in "qkvo":
            linear = getattr(layer, f"{n}_proj")
            weights[f"{n}_proj.weight"] = self._t(params[f"w_{n}"]).T  # (out, in)
            b = params.get(f"b_{n}")
            if linear.bias is not None:
                width = linear.weight.shape[0]
                weights[f"{n}_proj.bias"] = self._t(
                    np.zeros(width, query.dtype) if b is None else b
                )
            elif b is not None and np.any(b != 0):
                raise Unsupported(f"{self.family}'s {n}_proj has no bias")
        if "sinks" in self.offers:  # gpt-oss's parameter (H,): -inf joins no denominator
            weights["sinks"] = self._t(np.full(H, -np.inf, query.dtype))
        x = self._t(query)  # (B, T, D)
        out = self._run(layer, config, weights, x, None, T, mask, causal is not None, T, D)
        return self._np(out)  # (B, T, D)

    def variant_attention(
        self,
        q,
        k,
        v,
        mask=None,
        scale=None,
        causal=None,
        window=None,
        align="bottom_right",
        softcap=None,
        alibi_slopes=None,
        sinks=None,
    ):
        B, Hq, T, K = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        check_align(align)  # the mapping cannot translate another
        if v.shape[-1] != K or v.shape[1] != Hkv:
            raise Unsupported("v_proj gives every key/value head the head_dim of q and k")
        if S < T:
            raise Unsupported("a decoder's T queries are its newest keys: S >= T")
        if alibi_slopes is not None:
            raise Unsupported(f"{self.family} has no ALiBi", everywhere=True)
        if softcap is not None and "softcap" not in self.offers:
            raise Unsupported(f"{self.family} has no attention soft-cap", everywhere=True)
        if sinks is not None and "sinks" not in self.offers:
            raise Unsupported(f"{self.family} has no attention sinks", everywhere=True)
        if K % 2:
            raise Unsupported("HF's decoders rotate q and k in every layer: head_dim must be even")
        left, causal_too = self._window(window, causal)
        if (
            causal_too
            and T != S
            and (
                causal not in (None, "bottom_right")
                or (window is not None and align != "bottom_right")
            )
        ):
            raise Unsupported(
                "HF aligns causality and windows at the cache position (bottom-right)"
            )
        config = self._config(Hq * K + 2 * Hkv * K, Hq, Hkv, K, scale, left, softcap)
        layer = self._layer(config, q.dtype)
        weights = self._selections(layer, Hq, Hkv, K, q.dtype)
        if "sinks" in self.offers:  # gpt-oss's parameter (Hq,): -inf joins no denominator
            weights["sinks"] = self._t(np.full(Hq, -np.inf, q.dtype) if sinks is None else sinks)
        qt, kt, vt = self._t(q), self._t(k), self._t(v)
        Sv = v.shape[2]  # v's own length: a v longer or shorter than k goes to HF as it is
        x = torch.cat(  # (B, T, Hq K + 2 Hkv K): the hidden states the selections split again
            [
                qt.transpose(1, 2).reshape(B, T, Hq * K),
                kt[:, :, S - T :].transpose(1, 2).reshape(B, T, Hkv * K),
                vt[:, :, max(Sv - T, 0) :].transpose(1, 2).reshape(B, -1, Hkv * K),
            ],
            dim=-1,
        )
        has_past = S > T or Sv > T  # a v longer than k brings its own past
        past = (kt[:, :, : S - T], vt[:, :, : max(Sv - T, 0)]) if has_past else None
        out = self._run(layer, config, weights, x, past, T, mask, causal_too, S, Hq * K)
        return self._np(out.reshape(B, T, Hq, K).transpose(1, 2).contiguous())  # (B, Hq, T, K)

    # --- the mapping ----------------------------------------------------------------------

    def _window(self, window, causal) -> tuple[int | None, bool]:
        """The spec's window and causality as HF's: (the left bound of a sliding window or None,
        causal). HF's sliding windows are causal, with sliding_window = left + 1."""
        if window is None:
            return None, causal is not None
        left, right = int(window[0]), int(window[1])
        if causal is None and right != 0:
            if (left, right) == (-1, -1):
                return None, False  # no window at all
            raise Unsupported("HF's sliding windows are causal: right bound 0")
        if left == -1:
            return None, True  # (-1, 0): causal only
        if "window" not in self.offers:
            raise Unsupported(f"{self.family} has no sliding window")
        return left, True

    def _config(self, hidden, Hq, Hkv, K, scale, left, softcap):
        extra: dict[str, Any] = {}
        if "window" in self.offers:
            extra["sliding_window"] = None if left is None else left + 1
            if self.family != "mistral":
                extra["layer_types"] = ["full_attention" if left is None else "sliding_attention"]
                extra["use_sliding_window"] = left is not None
        if self.family == "gemma2":
            extra["attn_logit_softcapping"] = softcap
            extra["query_pre_attn_scalar"] = K
        if self.family == "gpt_oss":
            extra |= {"num_local_experts": 1, "num_experts_per_tok": 1}
        config = self._config_class(
            hidden_size=hidden,
            num_attention_heads=Hq,
            num_key_value_heads=Hkv,
            head_dim=K,
            attention_dropout=0.0,
            num_hidden_layers=1,
            **extra,
        )
        config._attn_implementation = (
            "flex_attention" if self.implementation == "flex" else self.implementation
        )
        config._spec_scale = K**-0.5 if scale is None else float(scale)
        return config

    def _layer(self, config, dtype) -> torch.nn.Module:
        if self.implementation == "flex" and np.dtype(dtype) == np.float64:
            raise Unsupported(
                "torch's flex_attention on CPU computes in float32, 16 and bfloat16",
                everywhere=True,
            )
        layer = self._attention_class(config, layer_idx=0).eval()
        layer.scaling = config._spec_scale  # the attribute forward passes as `scaling`
        return layer.to(self.device, self._t(np.zeros(0, dtype)).dtype)

    def _selections(self, layer, Hq, Hkv, K, dtype) -> dict[str, torch.Tensor]:
        """0/1 projections: q_proj keeps the first Hq K features, k_proj the next Hkv K, v_proj the
        last Hkv K; o_proj writes the context back into the first Hq K."""
        hidden = Hq * K + 2 * Hkv * K
        eye = np.eye(hidden, dtype=dtype)
        q_rows, k_rows = eye[: Hq * K], eye[Hq * K : Hq * K + Hkv * K]
        weights = {
            "q_proj.weight": self._t(q_rows),  # (Hq K, hidden)
            "k_proj.weight": self._t(k_rows),  # (Hkv K, hidden)
            "v_proj.weight": self._t(eye[Hq * K + Hkv * K :]),  # (Hkv K, hidden)
            "o_proj.weight": self._t(np.ascontiguousarray(q_rows.T)),  # (hidden, Hq K)
        }
        for n in "qkvo":
            linear = getattr(layer, f"{n}_proj")
            if linear.bias is not None:
                weights[f"{n}_proj.bias"] = self._t(np.zeros(linear.out_features, dtype))
        return weights

    def _mask(self, config, x, mask, causal, cache, cache_position, T, S) -> Any:
        """The attention_mask the model's forward would hand this layer."""
        B = x.shape[0]
        padding = None if mask is None else _key_padding(mask, B, S)
        if causal:
            if mask is not None and padding is None:
                raise Unsupported("HF combines causality with a (B, S) key-padding mask only")
            builder = (
                masking_utils.create_sliding_window_causal_mask
                if getattr(config, "sliding_window", None) is not None
                and getattr(config, "layer_types", ["sliding_attention"])[0] == "sliding_attention"
                else masking_utils.create_causal_mask
            )
            return builder(
                config=config,
                input_embeds=x,
                attention_mask=None if padding is None else self._t(padding),
                cache_position=cache_position,
                past_key_values=cache,
                position_ids=cache_position[None],
            )
        if mask is None:
            return None
        full = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
        if full.shape[1] != 1:
            raise Unsupported("HF's 4-D masks are (B, 1, T, S): one mask for every head")
        full = np.broadcast_to(full, (full.shape[0], 1, T, S))  # (B|1, 1, T, S)
        t = self._t(np.ascontiguousarray(full))
        if t.dtype == torch.bool:  # HF's additive form (masking_utils.eager_mask): 0 or finfo.min
            low = torch.tensor(torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device)
            return torch.where(t, torch.zeros_like(low), low)
        return t.to(x.dtype)

    def _run(self, layer, config, weights, x, past, T, mask, causal, S, out_dim):
        """The layer's forward on hidden states x (B, T, hidden) after `past` in the cache."""
        cache = None
        if past is not None or causal:
            cache = cache_utils.DynamicCache(config=config)
            if past is not None:
                cache.update(past[0], past[1], 0)  # the first S - T keys and values
        cache_position = torch.arange(S - T, S, device=x.device)
        if not causal:
            layer.is_causal = False  # as HF's encoders declare it: SDPA then gets is_causal=False
        attention_mask = self._mask(config, x, mask, causal, cache, cache_position, T, S)
        rotary = self._rotary_class(config, device=x.device)
        cos, sin = rotary(x, cache_position[None].expand(x.shape[0], -1))
        identity = (torch.ones_like(cos), torch.zeros_like(sin))  # RoPE off: the spec's q and k
        with self._torch._no_grad():
            out = torch.func.functional_call(
                layer,
                weights,
                (x,),
                {
                    "position_embeddings": identity,
                    "attention_mask": attention_mask,
                    "past_key_values": cache,
                    "cache_position": cache_position,
                },
                strict=False,
            )
        out = out[0] if isinstance(out, tuple) else out  # (B, T, hidden)
        return out[..., :out_dim]  # (B, T, out_dim)


def _make(family: str, implementation: str) -> HFAttention:
    return HFAttention(family, implementation)


globals().update(
    {
        f"{family}_{implementation}": _make(family, implementation)
        for family, implementations in HF_ATTENTION.items()
        for implementation in implementations
    }
)
