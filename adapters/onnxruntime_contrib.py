"""ONNX Runtime's `com.microsoft` contrib attention ops (`--adapter ort-gqa`, `--adapter ort-mha`;
`pip install onnx onnxruntime`), each a one-node model built with `onnx.helper`, run by ORT's CPU
kernels. The op definitions are ORT's (onnxruntime/core/graph/contrib_ops/bert_defs.cc, printed by
`onnxruntime.capi.onnxruntime_pybind11_state.get_all_operator_schema()`).

GroupQueryAttention (ort-gqa): variant_attention, grouped_query_attention and
scaled_dot_product_attention as a decoder step over a cache. q (B, Hq, T, K) is its query
(B, T, Hq K); the last T keys and values its key and value (B, T, Hkv K); the first S - T its
past_key / past_value (B, Hkv, S - T, K), BNSH; seqlens_k = S - 1 per row and
total_sequence_length = S. Query row t sits at absolute position S - T + t, so `causal = 1` is the
spec's bottom-right causality, and `local_window_size` is the spec's left bound (causal only);
`softcap` its soft-cap (0 is the op's "none"), `head_sink` its sinks, and an additive mask or ALiBi
its attention_bias (B or 1, Hq or 1, T, S); a boolean mask goes in as attention_bias with -inf at
hidden keys, since the op takes no boolean mask. Without causality `causal = 0` (bidirectional).

MultiHeadAttention (ort-mha): scaled_dot_product_attention without projections (the op's optional
bias is left out): query (B, T, H K), key (B, S, H K), value (B, S, H Kv); a boolean mask that only
hides keys is its key_padding_mask (B, S) (0 = padding), any other mask its attention_bias;
causality is `unidirectional = 1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from adapters import Deviation
from adapters.compose import ThroughVariants, check_align
from adapters.jax_variants import _alibi  # the bias jax's adapter passes too (numpy only)
from adapters.onnxruntime_adapter import _TYPES
from adapters.rows import row_without_keys
from spec.core import Unsupported

CONTRIB = "com.microsoft"


@cache
def _session(op: str, inputs: tuple[tuple[str, str], ...], attrs: tuple) -> ort.InferenceSession:
    """A one-node model of the contrib op: inputs (name, ONNX type name) in the op's order, "" for
    an input left out; outputs the context and the present cache."""
    names, infos = [], []
    for name, kind in inputs:
        names.append(name)
        if name:
            elem = getattr(TensorProto, kind)
            infos.append(helper.make_tensor_value_info(name, elem, None))
    while names and not names[-1]:
        names.pop()
    out_type = getattr(TensorProto, dict(inputs)["query"])
    outputs = ["output", "present_key", "present_value"]  # the kernels write the cache's update
    node = helper.make_node(op, names, outputs, domain=CONTRIB, **dict(attrs))
    graph = helper.make_graph(
        [node], op, infos, [helper.make_tensor_value_info(n, out_type, None) for n in outputs]
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(CONTRIB, 1)],
    )
    model.ir_version = 10
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _run(op: str, feed: dict[str, Any], order: tuple[str, ...], attrs: dict[str, Any]) -> Any:
    names = tuple(
        (n, TensorProto.DataType.Name(_elem(feed[n]))) if n in feed else ("", "") for n in order
    )
    try:
        session = _session(op, names, tuple(sorted(attrs.items())))
    except Exception as e:  # ORT without a kernel for the dtype or attribute
        text = str(e)
        if any(
            m in text for m in ("NOT_IMPLEMENTED", "Could not find an implementation", "Type Error")
        ):
            raise Unsupported(
                f"onnxruntime has no {op} kernel here: {text[:160]}", everywhere=True
            ) from e
        raise
    return session.run(None, {n: feed[n] for n, _ in names if n})[0]


def _elem(a: np.ndarray) -> int:
    if a.dtype == np.bool_:
        return TensorProto.BOOL
    if a.dtype == np.int32:
        return TensorProto.INT32
    if a.dtype == np.int64:
        return TensorProto.INT64
    return _TYPES[np.dtype(a.dtype).name]


def _bhsd_to_bsh(x: np.ndarray) -> np.ndarray:
    B, H, L, K = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(B, L, H * K))  # (B, L, H K)


def _bias(mask: Any, alibi: Any, dtype: np.dtype, T: int, S: int) -> Any:
    """An additive attention_bias (B|1, H|1, T, S): the mask's (-inf where a bool mask hides a key)
    plus ALiBi's."""
    if mask is None:
        return alibi
    m = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
    if m.dtype == np.bool_:
        m = np.where(m, 0.0, -np.inf)
    m = np.broadcast_to(m, (*m.shape[:2], T, S)).astype(dtype)  # (B|1, H|1, T, S)
    return np.ascontiguousarray(m if alibi is None else (m + alibi).astype(dtype))


GQA_INPUTS = (
    "query",
    "key",
    "value",
    "past_key",
    "past_value",
    "seqlens_k",
    "total_sequence_length",
    "cos_cache",
    "sin_cache",
    "position_ids",
    "attention_bias",
    "head_sink",
)


ATTENTION = ("scaled_dot_product_attention", "grouped_query_attention", "variant_attention")
ZERO_SCALE = Deviation(
    "GroupQueryAttention reads scale = 0 as 'not given' and uses 1/sqrt(head_size) (its "
    "attribute's default is 0: contrib_ops/cpu/bert/gqa_attention_base.h 'scale_ = "
    "info.GetAttrOrDefault<float>(\"scale\", 0.0f)', 'alpha = scale_ == 0.0f ? 1.0f / "
    "sqrt(head_size) : scale_', onnxruntime 1.32.0): scale=0.0 does not give uniform weights",
    lambda i: i.get("scale") is not None and i["scale"] == 0,
    "scale = 0",
    concerns=("scale",),
)
UNCHECKED = (
    "the contrib ops check few arguments: a NaN scale runs (NaN out), a softcap of 0 is 'no cap' "
    "(its default) and a negative or NaN one runs as no cap (group_query_attention_helper.h's "
    "CheckInputs copies scale and softcap unchecked; gqa_attention_base.h caps only 'if (softcap_ "
    "> 0.f)'), MultiHeadAttention takes S = 0 keys (onnxruntime 1.32.0)"
)
NAN_ROWS = Deviation(
    "a query row whose attention_bias is -inf at every key comes back NaN (the op has no boolean "
    "mask: -inf is how a key is hidden exactly), not 0, where the kernel takes its unfused path "
    "(MLAS MlasComputeSoftmaxThreaded, reached through attention_helper.h's "
    "ComputeAttentionSoftmaxInplace, has no guard for a row of -inf; the fused float32 path of "
    "flashattn_gqa.cpp, 'inv_l = (l[irow] > 0.0f) ? (1.0f / l[irow]) : 0.0f', gives 0), "
    "onnxruntime 1.32.0",
    row_without_keys,
    "a query row sees no key",
    convention=("fully_masked_row", "nan"),
)


def _key_padding(inputs: Mapping[str, Any]) -> bool:
    """The mask goes in as MultiHeadAttention's key_padding_mask (a boolean mask that only hides
    keys), not as attention_bias."""
    m = inputs.get("mask")
    if m is None or m.dtype != np.bool_:
        return False
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)
    return m.shape[1] == 1 and m.shape[2] == 1


# measured under --semantics fully_masked_row=nan: MultiHeadAttention's two mask inputs differ
MHA_NAN_ROWS = Deviation(
    NAN_ROWS.reason,
    lambda i: not _key_padding(i) and row_without_keys(i),
    "attention_bias hides every key of a query row",
    convention=("fully_masked_row", "nan"),
)
PAD_FILL = Deviation(
    "key_padding_mask adds mask_filter_value (-10000 by default: bert/attention_base.h "
    "'GetAttrOrDefault<float>(\"mask_filter_value\", -10000.0f)', applied by "
    "attention_cpu_base.h's PreparePaddingMask) to a padded key's logit: when "
    "every key of a row is padding the shift cancels in the softmax and the row attends to every "
    "key as if unmasked (measured: context = unmasked attention, neither 0, the mean of V nor the "
    "NaN of attention_bias)",
    lambda i: _key_padding(i) and row_without_keys(i),
    "key_padding_mask hides every key of a query row",
    concerns=("fully_masked_row",),
)


class OrtGroupQueryAttention(ThroughVariants):
    name = "ort-gqa"
    deviations: dict[str, Any] = {
        **{f"{c}.*": (ZERO_SCALE, NAN_ROWS) for c in ATTENTION},
        **{f"{c}.refuses[nan_scale]": UNCHECKED for c in ATTENTION},
        **{
            f"variant_attention.refuses[{b}]": UNCHECKED
            for b in ("zero_softcap", "negative_softcap", "nan_softcap")
        },
    }

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
        Hkv, S, Sv = k.shape[1], k.shape[2], v.shape[2]
        check_align(align)  # the mapping cannot translate another
        if window is not None and (len(window) != 2 or min(window) < -1):
            raise ValueError(f"window must be (left, right) with bounds >= -1; got {window!r}")
        if v.shape[-1] != K:
            raise Unsupported("GroupQueryAttention gives keys and values one head_size")
        if S < T:
            raise Unsupported("GroupQueryAttention's T queries are its newest keys: S >= T")
        if K % 8:
            raise Unsupported("GroupQueryAttention's CPU kernel: head_size must be a multiple of 8")
        causal_on, left = causal is not None, -1
        if window is not None:
            w_left, w_right = int(window[0]), int(window[1])
            if (w_left, w_right) != (-1, -1):
                if w_right != 0 and not causal_on:
                    raise Unsupported("GroupQueryAttention's local window is causal: right 0")
                causal_on, left = True, w_left
        if (
            causal_on
            and T != S
            and (
                causal not in (None, "bottom_right")
                or (window is not None and align != "bottom_right")
            )
        ):
            raise Unsupported("GroupQueryAttention aligns at the cache position (bottom-right)")
        attrs: dict[str, Any] = {
            "num_heads": Hq,
            "kv_num_heads": Hkv,
            "causal": int(causal_on),
            "local_window_size": left + 1 if left >= 0 else -1,  # keys q - W < kv <= q
        }
        if scale is not None:
            attrs["scale"] = float(scale)
        if softcap is not None:
            attrs["softcap"] = float(softcap)
        new = slice(S - T, S)
        feed = {
            "query": _bhsd_to_bsh(q),
            "key": _bhsd_to_bsh(k[:, :, new]),
            "value": _bhsd_to_bsh(v[:, :, max(Sv - T, 0) :]),  # v's own length, as it came
            "past_key": np.ascontiguousarray(k[:, :, : S - T]),  # (B, Hkv, S - T, K)
            "past_value": np.ascontiguousarray(v[:, :, : max(Sv - T, 0)]),
            "seqlens_k": np.full(B, S - 1, np.int32),
            "total_sequence_length": np.array(S, np.int32),
        }
        if S == T and Sv == T:  # no past: the prompt
            del feed["past_key"], feed["past_value"]
        alibi = None if alibi_slopes is None else _alibi(q, k, alibi_slopes, align)
        bias = _bias(mask, alibi, q.dtype, T, S)
        if bias is not None:
            feed["attention_bias"] = np.ascontiguousarray(bias)
        if sinks is not None:
            feed["head_sink"] = np.asarray(sinks, q.dtype)
        if T > 1 and S > T:  # "batch_size must be 1 when sequence_length > 1 and past context"
            batched = {"query", "key", "value", "past_key", "past_value", "seqlens_k"}
            if "attention_bias" in feed and feed["attention_bias"].shape[0] == B:
                batched.add("attention_bias")
            rows = [
                {n: a[b : b + 1] if n in batched else a for n, a in feed.items()} for b in range(B)
            ]
            out = np.concatenate([_run("GroupQueryAttention", r, GQA_INPUTS, attrs) for r in rows])
        else:
            out = _run("GroupQueryAttention", feed, GQA_INPUTS, attrs)  # (B, T, Hq K)
        return out.reshape(B, T, Hq, K).transpose(0, 2, 1, 3)  # (B, Hq, T, K)


MHA_INPUTS = ("query", "key", "value", "bias", "key_padding_mask", "attention_bias")


UNIDIRECTIONAL = Deviation(
    "MultiHeadAttention's unidirectional mask with more keys than queries follows neither "
    "alignment: T = 3, S = 6 lets rows 0 and 1 see keys 0..t (top-left) and row 2 every key "
    "(PrepareMask hides keys past past_length + i for rows i < T - 1 only, and there is no past "
    "here; attention_cpu_base.h 'causal = (is_unidirectional_ && sequence_length > 1)', "
    "onnxruntime 1.32.0)",
    lambda i: i.get("causal") is not None and i["q"].shape[2] != i["k"].shape[2],
    "causal with T != S",
    concerns=("causal_alignment",),
)


class OrtMultiHeadAttention:
    name = "ort-mha"
    deviations: dict[str, Any] = {
        "scaled_dot_product_attention.*": (UNIDIRECTIONAL, ZERO_SCALE, MHA_NAN_ROWS, PAD_FILL),
        "scaled_dot_product_attention.refuses[nan_scale]": UNCHECKED,
        "scaled_dot_product_attention.refuses[empty_keys]": UNCHECKED,
    }

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        B, H, T, K = q.shape
        S, Kv = k.shape[2], v.shape[-1]
        if K == 0 or Kv == 0:  # measured: the process dies (SIGFPE) inside ORT; not called
            raise Unsupported(
                "ORT 1.32's MultiHeadAttention kills the process with SIGFPE (an integer division "
                "by the head size 0) on query (B, T, 0): not called, so the run goes on"
            )
        attrs: dict[str, Any] = {"num_heads": H, "unidirectional": int(causal is not None)}
        if scale is not None:
            attrs["scale"] = float(scale)
        feed = {"query": _bhsd_to_bsh(q), "key": _bhsd_to_bsh(k), "value": _bhsd_to_bsh(v)}
        if mask is not None:
            m = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)  # (B|1, H|1, T|1, S|1)
            if m.dtype == np.bool_ and m.shape[1] == 1 and m.shape[2] == 1:
                pad = np.broadcast_to(m[:, 0, 0, :], (B, S))  # (B, S): 1 = attend
                feed["key_padding_mask"] = pad.astype(np.int32)
            else:
                feed["attention_bias"] = _bias(m, None, q.dtype, T, S)
        out = _run("MultiHeadAttention", feed, MHA_INPUTS, attrs)  # (B, T, H Kv)
        return out.reshape(B, T, H, Kv).transpose(0, 2, 1, 3)  # (B, H, T, Kv)


gqa = OrtGroupQueryAttention()
mha = OrtMultiHeadAttention()
