"""The adapter interface and its loader.

An adapter is any Python namespace (module, class instance, SimpleNamespace) offering functions
named exactly like the spec's components, taking and returning NumPy arrays. It converts to its
library's tensors, runs the library's own code and converts back. Optional attributes:

    name: str                      shown in test ids and the matrix (default: what --adapter said)
    deviations: dict[str, str | Deviation]
                                   declared, intentional differences from the spec, with reasons.
                                   Keys:
                                   "component.property", "component.property[variant]",
                                   "component.refuses[bad_input]", any of them with "@dtype"
                                   appended, "component.*@dtype" for every property at a dtype and
                                   "component.*" for every property. A str holds for every example
                                   of the tests it names (judged over them: "seen in N of M"); a
                                   Deviation(reason, when=...) only for the examples whose inputs
                                   satisfy ``when``, and every other example must conform
    on_device(device) -> namespace the same adapter bound to "cpu" or "cuda"
    example_shares: dict[str, float]
                                   component -> the share of the profile's examples its tests
                                   draw, for a library path too slow for the full count (torch's
                                   eager flex_attention: 0.25)
    release()                      called when the run moves on to another component: free what
                                   the library cached (compiled programs) so a run stays bounded
    vjp(component, inputs, cotangent, wrt) -> {path: gradient}
                                   gradients of <cotangent, output> for the inputs named by the
                                   paths in wrt ("q", "params.w_q"); spec/gradients.py

A component the adapter does not offer is reported "unsupported". An adapter may raise
``Unsupported`` for an input variant its library has no way to express.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spec.core import Unsupported

__all__ = ["BUILTINS", "Adapter", "Deviation", "Unsupported", "available_builtins", "load_adapter"]

# name -> (module:attribute, the library it needs)
# The attention implementations each HF family's PreTrainedModel declares (_supports_sdpa,
# _supports_flex_attn); gpt-oss has no SDPA path (SDPA has no sinks).
HF_ATTENTION = {
    "llama": ("eager", "sdpa", "flex"),
    "mistral": ("eager", "sdpa", "flex"),
    "qwen2": ("eager", "sdpa", "flex"),
    "gemma2": ("eager", "sdpa", "flex"),
    "gpt_oss": ("eager", "flex"),
}
BUILTINS: dict[str, tuple[str, str]] = {
    "numpy": ("reference", "numpy"),  # the oracle itself
    "torch": ("adapters.torch_adapter:adapter", "torch"),
    "jax": ("adapters.jax_adapter:adapter", "jax"),
    # one attention kernel each (adapters/kernel_backends.py): torch's SDPA backends, jax's
    # dot_product_attention implementations; efficient, cudnn run on CUDA only
    **{
        f"torch-{b}": (f"adapters.kernel_backends:torch_{b}", "torch")
        for b in ("flash", "efficient", "cudnn", "math")
    },
    **{f"jax-{i}": (f"adapters.kernel_backends:jax_{i}", "jax") for i in ("xla", "cudnn")},
    # torch's varlen_attn (packed and paged; CUDA only)
    "torch-varlen": ("adapters.kernel_backends:torch_varlen", "torch"),
    # third parties' implementations beyond the built-in routes (pip install -e ".[thirdparty]")
    "keras": ("adapters.keras_adapter:adapter", "keras"),
    "hf-eager": ("adapters.hf_adapter:eager", "transformers"),
    "hf-sdpa": ("adapters.hf_adapter:sdpa", "transformers"),
    "hf-rope": ("adapters.hf_rope:adapter", "transformers"),  # Llama's and GPT-J's RoPE helpers
    "hf-generate": ("adapters.hf_generate:adapter", "transformers"),  # greedy and beam search
    "onnxruntime": ("adapters.onnxruntime_adapter:adapter", "onnxruntime"),  # the Attention op
    "ort-gqa": ("adapters.onnxruntime_contrib:gqa", "onnxruntime"),  # com.microsoft contrib ops
    "ort-mha": ("adapters.onnxruntime_contrib:mha", "onnxruntime"),
    # the decoder attention modules of Llama, Mistral, Qwen2, Gemma 2 and gpt-oss, whole, through
    # each attention implementation their models declare (adapters/hf_attention.py)
    **{
        f"hf-{family}-{impl}": (f"adapters.hf_attention:{family}_{impl}", "transformers")
        for family, impls in HF_ATTENTION.items()
        for impl in impls
    },
}


@dataclass(frozen=True)
class Deviation:
    """A declared difference from the spec: why, and, with ``when``, on which inputs only (a
    predicate over the keyword arguments of an adapter call; ``trigger`` says it in words for the
    report)."""

    reason: str
    when: Callable[[Mapping[str, Any]], bool] | None = None
    trigger: str = ""
    parts: tuple[Deviation, ...] = ()  # the declarations a combined one is made of
    # (convention, value): the difference is the library following this named alternative of the
    # spec's (reference/semantics.py); under that semantic profile it is no deviation, and the
    # adapter must conform there
    convention: tuple[str, str] | None = None
    # What the difference is about, for the semantics scorecard (transformer_conformance/
    # scorecard.py): a column's key ("window", "softcap", "fully_masked_row", ...) or an input
    # condition outside every column ("scale", "mask_shape"); a convention names its own. None
    # stated counts against every column whose tests show it.
    concerns: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.reason} (when {self.trigger})" if self.trigger else self.reason

    def seen(self, calls: list[Mapping[str, Any]]) -> list[str]:
        """The declarations that cover these calls, as text: the parts of a combined one whose
        trigger holds (the report names what showed, not everything declared)."""
        shown = [str(p) for p in self.parts if p.applies(calls)]
        return shown or [str(self)]

    def about(self) -> tuple[str, ...]:
        """What this declaration concerns: its stated concerns and its convention's name, or "*"
        (unknown: every column)."""
        named = self.concerns + ((self.convention[0],) if self.convention else ())
        return named or ("*",)

    def seen_concerns(self, calls: list[Mapping[str, Any]]) -> set[str]:
        """What the declarations that cover these calls concern (as ``seen``)."""
        shown = [p for p in self.parts if p.applies(calls)] or [self]
        return {c for p in shown for c in p.about()}

    def applies(self, calls: list[Mapping[str, Any]]) -> bool:
        """Whether the deviation covers an example whose adapter calls had these inputs. A trigger
        that cannot read an input (a bad input's mismatched shapes) does not cover it."""
        if self.when is None:
            return True
        for inputs in calls:
            try:
                if self.when(inputs):
                    return True
            except Exception:
                continue
        return False


# What a deviations entry may hold: a reason, a Deviation, or several Deviations.
Declared = str | Deviation | tuple[Deviation, ...]


def carried_over(
    deviations: Mapping[str, Declared],
    source: str,
    target: str,
    checks: set[str],
    variants: set[str],
) -> dict[str, Declared]:
    """The declarations of ``source`` restated for ``target``, a component the adapter computes
    with the very same library call (grouped_query_attention is scaled_dot_product_attention with
    fewer key/value heads): those of the checks (properties, refuses[...], *) and variants the
    target has."""
    found: dict[str, Declared] = {}
    for key, value in deviations.items():
        component, _, rest = key.partition(".")
        check = rest.split("@")[0].split("[")[0]
        variant = rest.split("@")[0][len(check) :].strip("[]")
        if component != source or check not in checks:
            continue
        if variant and check != "refuses" and variant not in variants:
            continue
        found[f"{target}.{rest}"] = value
    return found


@dataclass(frozen=True)
class Adapter:
    """A loaded adapter: its display name, namespace and declared deviations."""

    name: str
    namespace: Any
    deviations: Mapping[str, Declared] = field(default_factory=dict)
    key: str = ""  # what --adapter said: a built-in's name or module:object (test ids carry it)
    import_warnings: tuple[str, ...] = ()  # what its libraries warned while it was imported

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)

    def function(self, component: str) -> Callable[..., Any] | None:
        fn = getattr(self.namespace, component, None)
        return fn if callable(fn) else None

    @staticmethod
    def deviation_keys(
        component: str, prop: str, variant: str | None = None, dtype: str | None = None
    ) -> list[str]:
        """Every declaration key that applies to component.prop[variant] at dtype, most specific
        first."""
        names = [f"{component}.{prop}[{variant}]"] if variant else []
        names.append(f"{component}.{prop}")
        return (
            [f"{n}@{dtype}" for n in names]
            + [f"{component}.*@{dtype}"]
            + names
            + [f"{component}.*"]
        )

    def deviation(
        self, component: str, prop: str, variant: str | None = None, dtype: str | None = None
    ) -> Deviation | None:
        """The declared deviation of this adapter on component.prop[variant] at dtype, if any: the
        most specific declaration that covers the whole target, else every triggered one that
        matches, combined (an example is covered when any of their triggers holds)."""
        from reference.semantics import convention

        declared: list[Deviation] = []
        for key in self.deviation_keys(component, prop, variant, dtype):
            value = self.deviations.get(key)
            for d in value if isinstance(value, tuple) else (value,) if value is not None else ():
                d = Deviation(d) if isinstance(d, str) else d
                if d.convention is None or convention(d.convention[0]) != d.convention[1]:
                    declared.append(d)  # one the active semantic profile makes the spec is left out
        whole = [d for d in declared if d.when is None]
        if whole:
            return whole[0]
        if not declared:
            return None
        if len(declared) == 1:
            return declared[0]
        return Deviation(
            "; ".join(d.reason for d in declared),
            when=lambda inputs: any(d.when(inputs) for d in declared if d.when is not None),
            trigger=" or ".join(d.trigger for d in declared),
            parts=tuple(declared),
        )

    def __str__(self) -> str:
        return self.name


# The default run's adapters; the third-party ones run when named (--adapter keras).
DEFAULT = ("numpy", "torch", "jax")


def available_builtins() -> list[str]:
    """The default built-in adapters whose library is installed."""
    return [name for name in DEFAULT if importlib.util.find_spec(BUILTINS[name][1]) is not None]


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    # A third party's module is found from the directory the run started in, as `python -m pytest`
    # finds it, also under the console script and a plain `pytest` (whose sys.path lacks it).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def load_adapter(spec: str, device: str = "cpu") -> Adapter:
    """Load a built-in by name ("torch") or a third party's by "package.module:object"."""
    target = BUILTINS[spec][0] if spec in BUILTINS else spec
    try:
        # A library's warning at import (a DeprecationWarning, say) is the adapter's, not an abort
        # of the run, even where the run's filterwarnings turn warnings into errors: recorded, then
        # shown.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            namespace = _resolve(target)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load adapter {spec!r} ({target}): {type(e).__name__}: {e}") from e
    if callable(getattr(namespace, "on_device", None)):
        try:
            namespace = namespace.on_device(device)
        except Exception as e:  # e.g. --device cuda on a machine without one
            raise ValueError(
                f"adapter {spec!r} cannot run on {device}: {type(e).__name__}: {e}"
            ) from e
    name = getattr(namespace, "name", None) or spec
    said = tuple(
        dict.fromkeys(
            f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
        )
    )
    return Adapter(
        str(name),
        namespace,
        dict(getattr(namespace, "deviations", {}) or {}),
        key=spec,
        import_warnings=said,
    )
