"""The adapter interface and its loader.

An adapter is any Python namespace (module, class instance, SimpleNamespace) offering functions named
exactly like the spec's components, taking and returning NumPy arrays. It converts to its library's
tensors, runs the library's own code and converts back. Optional attributes:

    name: str                      shown in test ids and the matrix (default: what --adapter said)
    deviations: dict[str, str]     declared, intentional differences from the spec, with reasons. Keys:
                                   "component.property", "component.property[variant]",
                                   "component.refuses[bad_input]", any of them with "@dtype"
                                   appended, and "component.*@dtype" for every property at a dtype
    on_device(device) -> namespace the same adapter bound to "cpu" or "cuda"
    vjp(component, inputs, cotangent, wrt) -> {path: gradient}
                                   gradients of <cotangent, output> for the inputs named by the
                                   paths in wrt ("q", "params.w_q"); spec/gradients.py

A component the adapter does not offer is reported "unsupported". An adapter may raise
``Unsupported`` for an input variant its library has no way to express.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spec.core import Unsupported

__all__ = ["BUILTINS", "Adapter", "Unsupported", "available_builtins", "load_adapter"]

# name -> (module:attribute, the library it needs)
BUILTINS: dict[str, tuple[str, str]] = {
    "numpy": ("adapters.numpy_adapter", "numpy"),
    "torch": ("adapters.torch_adapter:adapter", "torch"),
    "jax": ("adapters.jax_adapter:adapter", "jax"),
    # third parties' implementations beyond the built-in routes (pip install -e ".[thirdparty]")
    "keras": ("adapters.keras_adapter:adapter", "keras"),
    "hf-eager": ("adapters.hf_adapter:eager", "transformers"),
    "hf-sdpa": ("adapters.hf_adapter:sdpa", "transformers"),
}


@dataclass(frozen=True)
class Adapter:
    """A loaded adapter: its display name, namespace and declared deviations."""

    name: str
    namespace: Any
    deviations: Mapping[str, str] = field(default_factory=dict)
    key: str = ""  # what --adapter said: a built-in's name or module:object (test ids carry it)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)

    def function(self, component: str) -> Callable[..., Any] | None:
        fn = getattr(self.namespace, component, None)
        return fn if callable(fn) else None

    @staticmethod
    def deviation_keys(component: str, prop: str, variant: str | None = None, dtype: str | None = None) -> list[str]:
        """Every declaration key that applies to component.prop[variant] at dtype, most specific first."""
        names = [f"{component}.{prop}[{variant}]"] if variant else []
        names.append(f"{component}.{prop}")
        return [f"{n}@{dtype}" for n in names] + [f"{component}.*@{dtype}"] + names

    def deviation(self, component: str, prop: str, variant: str | None = None, dtype: str | None = None) -> str | None:
        """The declared reason this adapter differs on component.prop[variant] at dtype, if any."""
        return next(
            (self.deviations[k] for k in self.deviation_keys(component, prop, variant, dtype) if k in self.deviations), None
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
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def load_adapter(spec: str, device: str = "cpu") -> Adapter:
    """Load a built-in by name ("torch") or a third party's by "package.module:object"."""
    target = BUILTINS[spec][0] if spec in BUILTINS else spec
    try:
        namespace = _resolve(target)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load adapter {spec!r} ({target}): {type(e).__name__}: {e}") from e
    if callable(getattr(namespace, "on_device", None)):
        try:
            namespace = namespace.on_device(device)
        except Exception as e:  # e.g. --device cuda on a machine without one
            raise ValueError(f"adapter {spec!r} cannot run on {device}: {type(e).__name__}: {e}") from e
    name = getattr(namespace, "name", None) or spec
    return Adapter(str(name), namespace, dict(getattr(namespace, "deviations", {}) or {}), key=spec)
