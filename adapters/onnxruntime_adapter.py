"""ONNX Runtime (`--adapter onnxruntime`; `pip install onnx onnxruntime`): the standard ONNX
`Attention` operator (opset 25) as a one-node model built with `onnx.helper`, run by ORT's CPU
kernel.

The spec's inputs map onto the op's own inputs and attributes, nothing computed beside it:
- q, k, v (B, H, L, K) are its 4-D Q, K, V; grouped heads come from the shapes (Hq a multiple of
  Hkv), as the op defines GQA;
- a bool mask (True = may attend) or an additive float mask is its attn_mask, same polarity;
- causality is `is_causal`, which the op aligns at the count of valid keys before the query block:
  with no cache input that count is 0 (top-left); `bottom_right` passes `nonpad_kv_seqlen = S` for
  every row, so the count is S - T, as the op's documentation draws it;
- the window is `left_window_size` / `right_window_size` (-1 unbounded, the spec's convention),
  around the same aligned position; the soft-cap is `softcap` (the op caps before adding the mask);
- ALiBi goes in as an additive float attn_mask (-slope_h |t + off - s|), the bias the op adds after
  its cap, which is the spec's order. Sinks and the log-sum-exp have no counterpart in the op:
  unsupported.
One InferenceSession per (dtype, attributes, inputs given), its shapes dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from adapters import Deviation
from adapters.jax_variants import _alibi  # the bias jax's adapter passes too (numpy only)
from spec.core import Unsupported

OPSET = 25  # Attention with left/right windows (onnx 1.20+); ORT 1.32 runs it on CPU
_TYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
}


@cache
def _session(dtype: str, mask: str | None, nonpad: bool, attrs: tuple) -> ort.InferenceSession:
    """A one-node Attention model: Q, K, V [, attn_mask] [, nonpad_kv_seqlen] -> Y."""
    t = _TYPES[dtype]
    names = ["Q", "K", "V"]
    inputs = [helper.make_tensor_value_info(n, t, None) for n in names]
    if mask is not None or nonpad:
        names.append("attn_mask" if mask is not None else "")
        if mask is not None:
            kind = TensorProto.BOOL if mask == "bool" else t
            inputs.append(helper.make_tensor_value_info("attn_mask", kind, None))
    if nonpad:
        names += ["", "", "nonpad_kv_seqlen"]  # past_key, past_value left out
        inputs.append(helper.make_tensor_value_info("nonpad_kv_seqlen", TensorProto.INT64, None))
    node = helper.make_node("Attention", names, ["Y"], **dict(attrs))
    graph = helper.make_graph(
        [node], "attention", inputs, [helper.make_tensor_value_info("Y", t, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _negative_scale(inputs: Mapping[str, Any]) -> bool:
    return inputs.get("scale") is not None and inputs["scale"] < 0


def _short_last_mask_axis(inputs: Mapping[str, Any]) -> bool:
    mask = inputs.get("mask")
    return mask is not None and mask.ndim >= 1 and mask.shape[-1] == 1 < inputs["k"].shape[2]


# The sources cited below: onnx at f7546912 (1.23's Attention-23/24/25, as onnx 1.23.2 installs
# them), onnxruntime 1.32.0 (lines as its wheel records them).
NEGATIVE_SCALE = Deviation(
    "the ONNX Attention op multiplies Q and K by sqrt(scale) each (its definition, against "
    "overflow: onnx/defs/nn/defs.cc:3780 'ScaleFactorSqrt = Sqrt(ScaleFactor)', :3940-3941 "
    "'QScaled = Mul(QReshaped, ScaleFactorF)'): a negative scale gives NaN (onnxruntime 1.32 "
    "runs that function body at opset 25, where it registers no kernel: scale=-0.7 -> NaN; its "
    "own float kernel for opsets 23-24 refuses it, core/providers/cpu/llm/attention.cc:233)",
    _negative_scale,
    "scale < 0",
    concerns=("scale",),
)
SHORT_MASK = Deviation(
    "the ONNX Attention op pads an attn_mask whose last axis is shorter than the keys with "
    "-inf / False instead of broadcasting it (its definition from opset 24: onnx/defs/nn/"
    "defs.cc:3615 'will be padded to total_sequence_length with negative infinity', the function "
    "body's Pad in onnx/defs/nn/utils.cc:198-204): a (1, 1, 1, 1) True mask lets only key 0 "
    "through",
    _short_last_mask_axis,
    "a mask whose last axis is 1 < S",
    concerns=("mask_shape",),
)
FLOAT64 = (
    "onnxruntime 1.32 has no double Attention kernel (core/providers/cpu/llm/attention.cc "
    "registers float and MLFloat16), so double runs the ONNX function body, which makes the scale "
    "a float32 constant (onnx/defs/nn/defs.cc:3767 'float scale = ...', :3778 'ScaleF') and casts "
    "sqrt(scale) to double: float64 inputs get float32 accuracy (~5e-8 against a float64 bound of "
    "~1e-14; 1.8e-15 off a reference whose sqrt(scale) is rounded to float32)"
)
ATTENTION = ("scaled_dot_product_attention", "grouped_query_attention", "variant_attention")


class OrtAttention:
    name = "onnxruntime"
    deviations: dict[str, Any] = {
        **{f"{c}.*": (NEGATIVE_SCALE, SHORT_MASK) for c in ATTENTION},
        **{f"{c}.matches_reference@float64": FLOAT64 for c in ATTENTION},
        "scaled_dot_product_attention.fully_masked_rows_are_zero@float64": FLOAT64,
        **{
            f"{c}.refuses[nan_scale]": "the Attention op takes scale=NaN without a check"
            for c in ATTENTION
        },
        **{
            f"{c}.refuses[mask_not_broadcastable]": (
                "the Attention op takes an attn_mask whose last axis is longer than the keys "
                "((T, S + 1) returns finite values; a shorter one is padded)"
            )
            for c in ATTENTION
        },
        **{
            f"variant_attention.refuses[{b}]": (
                "the Attention op's softcap 0 means no cap (its default), and a negative or NaN "
                "softcap is taken without a check"
            )
            for b in ("zero_softcap", "negative_softcap", "nan_softcap")
        },
    }

    def _run(self, q, k, v, mask, scale, causal, window=None, align="top_left", softcap=None):
        if causal not in (None, "top_left", "bottom_right"):
            raise ValueError(f"unknown causal {causal!r}")
        if align not in ("top_left", "bottom_right"):
            raise ValueError(f"unknown align {align!r}")
        dtype = np.dtype(q.dtype).name
        attrs: list[tuple[str, Any]] = []
        if scale is not None:
            attrs.append(("scale", float(scale)))
        if causal is not None:
            attrs.append(("is_causal", 1))
        if window is not None:
            left, right = window
            attrs += [("left_window_size", int(left)), ("right_window_size", int(right))]
        if softcap is not None:
            attrs.append(("softcap", float(softcap)))
        # the op's aligned position counts the valid keys before the query block: S - T through
        # nonpad_kv_seqlen (bottom-right), 0 without it (top-left)
        windowed = window is not None
        bottom_right = causal == "bottom_right" or (windowed and align == "bottom_right")
        if bottom_right and (causal == "top_left" or (windowed and align == "top_left")):
            raise Unsupported("the op aligns causality and the window at one position")
        kind = None if mask is None else "bool" if mask.dtype == np.bool_ else "float"
        feed = {"Q": q, "K": k, "V": v}
        if mask is not None:
            feed["attn_mask"] = mask
        if bottom_right:
            feed["nonpad_kv_seqlen"] = np.full(q.shape[0], k.shape[2], dtype=np.int64)
        try:
            session = _session(dtype, kind, bottom_right, tuple(attrs))
        except Exception as e:  # ORT without a kernel for the dtype or attribute
            if "NOT_IMPLEMENTED" in str(e) or "Could not find an implementation" in str(e):
                raise Unsupported(
                    f"onnxruntime has no Attention kernel here: {str(e)[:160]}"
                ) from e
            raise
        return session.run(None, feed)[0]

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self._run(q, k, v, mask, scale, causal)

    def grouped_query_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self._run(q, k, v, mask, scale, causal)

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
        if sinks is not None:
            raise Unsupported("the ONNX Attention op has no sinks", everywhere=True)
        if alibi_slopes is not None:
            bias = _alibi(q, k, alibi_slopes, align)  # (B, Hq, T, S)
            assert bias is not None  # slopes were given
            if mask is None:
                mask = bias
            elif mask.dtype == np.bool_:
                mask = np.where(mask, bias, q.dtype.type(-np.inf)).astype(q.dtype)
            else:
                mask = (mask + bias).astype(q.dtype)
        return self._run(q, k, v, mask, scale, causal, window, align, softcap)


adapter = OrtAttention()
