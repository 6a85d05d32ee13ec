"""The triage of every undetected mutant of `make mutation`, by mutant name (without the module
prefix) or fnmatch pattern. "equivalent: ..." when no conformant adapter run can tell the mutant
from the original; "gap: ..." when a conformance test could, and says whether it was closed."""

from __future__ import annotations

# Why several classes recur:
WIDER_DEVIATION = (
    "equivalent for the suite: a declared deviation's `when=` predicate is evaluated only on an "
    "example that already failed (transformer_conformance/runner.py, `declared.applies`), to "
    "decide whether that failure is excused. This mutant only widens the predicate (or changes "
    "it where a conformant adapter never fails), so with a correct torch or jax no outcome "
    "changes. An over-wide excuse would hide a real bug in the widened region, but only for an "
    "adapter that fails there; the harness does not check that a predicate is tight (noted, not "
    "closed)."
)
CPU_ONLY = (
    "equivalent on this run: the mutated code is the CUDA branch (device 'cuda'), never taken on "
    "a CPU-only run; a `--device cuda` run would reach it."
)
MESSAGE = (
    "equivalent: changes only the error raised for a refused input (its message, or an "
    "exception of another type while the message is formatted); the bad-input tests accept any "
    "exception (spec/core.py, BadInput: 'an adapter must raise anything')."
)
UNUSED_GUARD = (
    "equivalent for this adapter: vjp_of()'s guard for an input that does not reach the output "
    "(autograd's None gradient, reported as Unsupported) is never taken by a torch component: "
    "every input the gradient properties differentiate is used in the graph (a zero gradient is "
    "still a tensor). It guards third-party forwards (adapters/hf_adapter.py), not run here."
)
ADDITIVE_CAUSAL = (
    "gap, closed: this line runs only for an additive (float) mask combined with a causal "
    "alignment, a combination no variant drew (MASK_VARIANTS had bool+causal_top_left only), so "
    "even masking the allowed keys instead of the hidden ones went unseen. spec/strategies.py now "
    "has the variant additive+causal_top_left (a full per-head N(0, 1)/-inf mask, key 0 visible)."
)
SAME_CAUSAL = (
    "equivalent: top-left causality then goes through torch's causal_upper_left bias object "
    "instead of is_causal=True: the same mask, computed by torch either way."
)
STRICT_ZIP = (
    "equivalent: zip(..., strict=True) loses strict; the two sequences always have the same "
    "length (one gradient per differentiated input)."
)
CAST = "equivalent: typing.cast() returns its value unchanged at run time, whatever the type."
MHA_MASK_CAUSAL = (
    "gap, closed: the branch that merges a given mask with causality in nn.MultiheadAttention's "
    "attn_mask ran on no drawn input (MHA_VARIANTS combined causality with no mask), so a bool "
    "mask merged as a float one (causality lost) went unseen. spec/multi_head.py now has "
    "self+bool+causal_top_left and self+additive+causal_top_left."
)
ZERO_NEG_INF = (
    "equivalent: the causal tgt_mask is made in float32 instead of the input dtype; it holds "
    "only 0 and -inf, exact in every float dtype, and torch accepts it."
)
CAUSAL_HINT = (
    "equivalent: tgt_is_causal is only a hint that tgt_mask is causal (for a fast path); the "
    "causal tgt_mask itself is passed either way."
)
IMPORT_TIME = (
    "tool artefact: `adapter = TorchAdapter('cpu')` is built when the module is imported, before "
    "mutmut's fork switches the mutant on, so the suite's adapter never runs a mutated __init__; "
    "only the one test that builds a second adapter (on_device) does, and it does not use the "
    "mutated field."
)

TORCH = {
    "x__finite_bias__mutmut_*": WIDER_DEVIATION,
    "x__smoothing_sum_overflows__mutmut_*": WIDER_DEVIATION,
    "x__smoothing_sum_overflows__mutmut_30": (
        "gap, not closed: the softmax normaliser summed over axis 1 instead of -1. Logits are "
        "(sequences, T, V), so this is the T axis, and the predicate can narrow as well as widen: "
        "a float16 overflow that torch really has would then not be excused and its test would "
        "fail. It survives because only one test reaches the predicate at --max-examples 3 and "
        "its failing examples still satisfy the mutated one; a variant that draws the overflow "
        "(float16, label smoothing, |logits| ~ 1e3) on purpose would be needed (not added)."
    ),
    "xǁTorchAdapterǁ__init____mutmut_1": (
        "equivalent: the default device 'cpu' becomes 'XXcpuXX', but every construction passes "
        "the device explicitly."
    ),
    "xǁTorchAdapterǁ__init____mutmut_7": CPU_ONLY,
    "xǁTorchAdapterǁ__init____mutmut_12": IMPORT_TIME
    + " (`self.device = None`: torch's .to(None) and device=None are CPU no-ops there.)",
    "xǁTorchAdapterǁ__init____mutmut_15": (
        "equivalent: the initial `_output` is never read; vjp_of() resets it to None before "
        "every use."
    ),
    "xǁTorchAdapterǁcross_entropy__mutmut_6": MESSAGE,
    "xǁTorchAdapterǁdropout__mutmut_8": CPU_ONLY,
    "xǁTorchAdapterǁencoder_layer__mutmut_12": (
        "equivalent: single=None/False runs the layer as a one-layer nn.TransformerEncoder with "
        "no final norm, which computes exactly the layer."
    ),
    "xǁTorchAdapterǁencoder_layer__mutmut_23": (
        "equivalent: single=False runs the layer as a one-layer nn.TransformerEncoder with no "
        "final norm, which computes exactly the layer."
    ),
    "xǁTorchAdapterǁmulti_head_attention__mutmut_39": CPU_ONLY
    + " (zero biases made with device=None: the CPU, where the other tensors are too.)",
    "xǁTorchAdapterǁvjp_of__mutmut_9": (
        "equivalent: `_output` starts as '' instead of None, but every torch component's forward "
        "converts its output back through _np(), which overwrites it before it is read."
    ),
    "xǁTorchAdapterǁvjp_of__mutmut_25": UNUSED_GUARD,
    "xǁTorchAdapterǁvjp_of__mutmut_28": UNUSED_GUARD,
    "x_positional_encoding_table__mutmut_7": CPU_ONLY + " (device= dropped: the CPU default.)",
    "x_positional_encoding_table__mutmut_33": CPU_ONLY + " (device= dropped: the CPU default.)",
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_8": SAME_CAUSAL,
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_12": SAME_CAUSAL,
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_20": CPU_ONLY + " (_materialize(None): the CPU default.)",
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_31": ADDITIVE_CAUSAL,
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_34": ADDITIVE_CAUSAL,
    "xǁTorchAdapterǁ_sdpa_mask__mutmut_37": (
        "equivalent: float('-INF') is float('-inf') (and the line ran on no drawn input before "
        "the additive+causal variant)."
    ),
    "xǁTorchAdapterǁsinusoidal_positional_encoding__mutmut_15": MESSAGE,
    "xǁTorchAdapterǁvjp_of__mutmut_41": STRICT_ZIP,
    "xǁTorchAdapterǁvjp_of__mutmut_44": STRICT_ZIP,
    "xǁTorchAdapterǁ_load_mha__mutmut_30": (
        "equivalent: the key bias b_k is dropped (zeros). It adds q . b_k to every logit of a "
        "query row alike, and softmax is shift-invariant: attention's output does not depend on "
        "b_k (up to rounding)."
    ),
    "xǁTorchAdapterǁ_make_layer__mutmut_31": CPU_ONLY + " (device=None: the CPU default.)",
    "xǁTorchAdapterǁdecoder__mutmut_14": "equivalent: single=None is falsy, as False is.",
    "xǁTorchAdapterǁscaled_dot_product_attention__mutmut_12": (
        "equivalent: k.shape[+2] is k.shape[-2] for the 4-D (B, H, S, K) keys the component "
        "takes (a key of another rank is refused by torch either way)."
    ),
    "xǁTorchAdapterǁ_run_stack__mutmut_53": (
        "equivalent: enable_nested_tensor back to its default True; nn.TransformerEncoder "
        "converts to a nested tensor only for a src_key_padding_mask, which the adapter never "
        "passes (its masks go in as mask=)."
    ),
    "xǁTorchAdapterǁ_run_stack__mutmut_72": CAST,
    "xǁTorchAdapterǁ_mha_mask__mutmut_38": MHA_MASK_CAUSAL,
    "xǁTorchAdapterǁ_mha_mask__mutmut_40": MHA_MASK_CAUSAL,
    "xǁTorchAdapterǁ_mha_mask__mutmut_43": MHA_MASK_CAUSAL,
    "xǁTorchAdapterǁ_mha_mask__mutmut_46": MHA_MASK_CAUSAL,
    "xǁTorchAdapterǁ_mha_mask__mutmut_49": (
        "equivalent: float('-INF') is float('-inf') (and the line ran on no drawn input before "
        "the mask+causal MHA variants)."
    ),
    "xǁTorchAdapterǁ_no_grad__mutmut_2": (
        "equivalent for conformance: plain calls then run in grad mode, so torch skips its "
        "inference fast paths; grad mode computes the spec's function (the fast paths are where "
        "the declared FAST_PATH_* deviations come from, and a declared deviation that no longer "
        "shows is not an error)."
    ),
    "xǁTorchAdapterǁ_run_stack__mutmut_140": ZERO_NEG_INF,
    "xǁTorchAdapterǁ_run_stack__mutmut_143": ZERO_NEG_INF,
    "xǁTorchAdapterǁ_run_stack__mutmut_154": CAUSAL_HINT,
    "xǁTorchAdapterǁ_run_stack__mutmut_168": CAUSAL_HINT,
    "xǁTorchAdapterǁ_t__mutmut_21": CPU_ONLY + " (.to(None) keeps the tensor on the CPU.)",
    "xǁTorchAdapterǁ_np__mutmut_2": (
        "gap, not closed (not a spec gap): _np() stops recording the output under vjp(), so "
        "vjp_of() raises Unsupported for every component and every gradient test of torch turns "
        "into a skip ('unsupported'), which the run accepts. Closing it needs the harness to "
        "know that the built-in torch adapter supports gradients (an unsupported outcome where "
        "the last run passed, or a declared list of supported gradient targets, failing the "
        "test), a change to transformer_conformance/, not to spec/."
    ),
}

SEQ2SEQ = {
    "xǁTorchSeq2Seqǁ_cell__mutmut_8": CPU_ONLY + " (device= dropped: the CPU default.)",
    "xǁTorchSeq2Seqǁ_decode__mutmut_2": (
        "equivalent: the default steps=1 of the private _decode() becomes 2, but both callers "
        "pass steps (free_running_decoder) or tokens (attention_decoder) explicitly."
    ),
    "xǁTorchSeq2Seqǁ_decode__mutmut_52": MESSAGE,
    "xǁTorchSeq2Seqǁ_decode__mutmut_55": MESSAGE,
    "xǁTorchSeq2Seqǁ_decode__mutmut_66": CPU_ONLY + " (device=None: the CPU default.)",
    "xǁTorchSeq2Seqǁ_decode__mutmut_69": (
        "equivalent: torch.full((B,), bos) infers int64 from the int fill value, the dtype the "
        "dropped argument named."
    ),
    "xǁTorchSeq2Seqǁ_encode__mutmut_52": "equivalent: enforce_sorted=None is falsy, as False is.",
    "xǁTorchSeq2Seqǁ_encode__mutmut_58": (
        "equivalent: pack_padded_sequence converts its lengths with torch.as_tensor(lengths, "
        "dtype=torch.int64, device='cpu') itself."
    ),
    "xǁTorchSeq2Seqǁ_encode__mutmut_60": (
        "equivalent: pack_padded_sequence converts its lengths with torch.as_tensor(lengths, "
        "dtype=torch.int64, device='cpu') itself."
    ),
    "xǁTorchSeq2Seqǁ_multiplicative__mutmut_32": MESSAGE,
    "xǁTorchSeq2Seqǁ_multiplicative__mutmut_35": MESSAGE,
    "xǁTorchSeq2Seqǁ_softmax_over_source__mutmut_16": (
        "equivalent: the scores e are (B, S), so dim=+1 is dim=-1."
    ),
    "xǁTorchSeq2Seqǁrecurrent_cell__mutmut_30": MESSAGE,
}

TRIAGE: dict[str, str] = {f"adapters.torch_adapter.{k}": v for k, v in TORCH.items()}
TRIAGE |= {f"adapters.torch_seq2seq.{k}": v for k, v in SEQ2SEQ.items()}

CACHE_ONLY = (
    "equivalent for the results: the persistent compilation cache's slot (which directory, whether "
    "there is one, how its lock is taken) changes what a run costs, never what jax computes. "
    "(timeout=None would wait for a slot another process holds: not reached while slot 0 is free.)"
)
FEATURES_UNUSED = (
    "equivalent: a flax cell's `features` (N) is read only to create parameters and initial "
    "carries; apply() with the spec's parameters and carry never reads it."
)
HOUSEKEEPING = (
    "equivalent for the results: the adapter's housekeeping (pruning the compilation cache, the "
    "memory level at which jit caches are released) changes what a run costs, never what jax "
    "computes."
)
PARAM_DTYPE = (
    "equivalent: flax reads param_dtype only when it creates parameters (init); the adapter hands "
    "flax the spec's weights, already in the component's dtype, and dtype= (kept) sets the "
    "computation's dtype."
)
DEFAULT_AXIS = "equivalent: jax.nn.softmax's default axis is -1, the axis passed."
JAX_SEQ2SEQ = {
    "x__cell_module__mutmut_6": (
        "equivalent: without dtype=, a flax recurrent cell computes in the dtype its inputs and "
        "parameters promote to, and both are already the component's dtype (param_dtype stays)."
    ),
    "x__multiplicative__mutmut_24": MESSAGE,
    "x__multiplicative__mutmut_42": DEFAULT_AXIS,
    "xǁJaxSeq2Seqǁ_decode__mutmut_4": FEATURES_UNUSED,
    "xǁJaxSeq2Seqǁ_decode__mutmut_12": FEATURES_UNUSED,
    "xǁJaxSeq2Seqǁ_decode__mutmut_58": (
        "equivalent: jnp.full infers the dtype from bos (a Python int: int64 under x64), and the "
        "tokens are only used as embedding indices."
    ),
}
JAX: dict[str, str] = {
    "x__claim_slot__mutmut_4": CACHE_ONLY,
    "x__claim_slot__mutmut_21": CACHE_ONLY,
    "x__prune__mutmut_13": HOUSEKEEPING,
    "x__resident_bytes__mutmut_12": HOUSEKEEPING,
    "x__flax_mask__mutmut_6": (
        "equivalent: ndarray.astype(None) is astype(float64), the dtype it replaced."
    ),
    "x__mean_dominates__mutmut_*": WIDER_DEVIATION,
    "x__stack_empty_row__mutmut_9": (
        "equivalent: changes only the text of a declared deviation (its reason, shown in reports)."
    ),
    "x__stack_empty_row__mutmut_17": (
        "gap, not closed: this narrows the stacks' empty-row deviation to nothing, so a flax stack "
        "example with a query row that sees no key (an item of key-padding length 0) would fail. "
        "The stacks draw such an item by chance only (their mask argument's region 'an item of "
        "length 0'), and the mutation run's 3 examples a test drew none; a variant that draws a "
        "length-0 item on purpose would close it (as for torch's _smoothing_sum_overflows_30)."
    ),
    "xǁJaxAdapterǁ_attend__mutmut_22": (
        "equivalent: the scale then reaches jax as a float64 array, and jax.nn.dot_product_"
        "attention casts it to the logits' dtype itself (jnp.array(scale, dtype=logits.dtype), "
        "jax 0.10.2)."
    ),
    "xǁJaxAdapterǁ_attend__mutmut_59": (
        "gap, closed: an additive mask together with the bias a variant adds (ALiBi) was never "
        "drawn (variant_attention's variants had bool and padding masks only, though its mask "
        "domain allows additive ones), so subtracting ALiBi from the mask went unseen. "
        "spec/variants.py now draws alibi+additive and softcap+additive+causal."
    ),
    "xǁJaxAdapterǁ_attend__mutmut_68": (
        "equivalent for the suite: every attention call then runs eagerly (the path kept for the "
        "float16 signatures XLA on CPU cannot compile) instead of under jit: the same library ops "
        "one by one, whose results stay within the bounds; it costs compilations, not results."
    ),
    "xǁJaxAdapterǁtied_output_logits__mutmut_5": PARAM_DTYPE,
    "xǁJaxAdapterǁtoken_embedding__mutmut_5": PARAM_DTYPE,
    "xǁJaxAdapterǁvjp__mutmut_14": STRICT_ZIP,
    "xǁJaxAdapterǁvjp__mutmut_23": STRICT_ZIP,
    "xǁJaxAdapterǁvjp__mutmut_32": (
        "equivalent: changes only the reason text of an Unsupported (a component whose input does "
        "not reach its output), which no conformant run raises."
    ),
    "xǁJaxAdapterǁvjp__mutmut_41": (
        "equivalent on this run: jax.device_put(a, None) puts a on the default device, the CPU on "
        "a CPU-only machine; a --device cuda run would tell them apart."
    ),
    "xǁJaxAdapterǁlayer_norm__mutmut_14": (
        "equivalent: without dtype=, flax's LayerNorm returns the dtype its input and parameters "
        "promote to, both already x's dtype (its statistics are computed in at least float32 "
        "either way)."
    ),
    "xǁJaxAdapterǁposition_wise_ffn__mutmut_67": CAST,
    "xǁJaxAdapterǁposition_wise_ffn__mutmut_9": (
        "equivalent: jax.nn.gelu tests `if approximate:`, and None is falsy: the exact (erf) GELU."
    ),
    "xǁJaxAdapterǁ__init____mutmut_4": (
        "equivalent on this run: jax.devices(None) is the default backend, the CPU on a CPU-only "
        "machine; a --device cuda run would tell them apart."
    ),
    "x__broadcasts__mutmut_2": (
        "equivalent: a 4-D mask with size-1 axes is then passed to jax as it is, not broadcast to "
        "(B, H, T, S) first; jax broadcasts it itself, to the same result. The full layout only "
        "keeps jax to one compiled program per shape (a cost, not a result)."
    ),
}
FLAX: dict[str, str] = {
    "xǁLayerǁ_attention__mutmut_10": PARAM_DTYPE,
    "xǁLayerǁ_ffn__mutmut_16": PARAM_DTYPE,
    "xǁLayerǁ_residual__mutmut_4": PARAM_DTYPE,
    "x__final_norm__mutmut_10": (
        "gap, closed (spec 1.9.0): the stack's final LayerNorm then used flax's default fast "
        "variance (the one-pass E[x^2] - E[x]^2), which cancels on rows whose |mean| dominates "
        "their spread, and no stack input drew such rows at the final norm (the stacks' x was "
        "N(0, 1)-like). "
        "spec/stacks.py now adds a row offset (ROW_OFFSETS: 1e3, -2.5e3) to pre-LN inputs in "
        "float32 and float64, which the residual stream carries to the final norm. Checked by "
        "hand on the mutated line (not rerun through mutmut): the pre-LN encoder and decoder "
        "matches_reference tests fail at float64 and float32 (4 of 4 at the ci profile), and the "
        "same for the sublayer norms' use_fast_variance (5 encoder_layer/decoder_layer tests)."
    ),
}
TRIAGE |= {f"adapters.jax_seq2seq.{k}": v for k, v in JAX_SEQ2SEQ.items()}
TRIAGE |= {f"adapters.jax_adapter.{k}": v for k, v in JAX.items()}
TRIAGE |= {f"adapters.flax_stacks.{k}": v for k, v in FLAX.items()}
