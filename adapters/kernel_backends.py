"""One adapter row per attention kernel, for the kernel-scale and attention tests.

- ``torch-flash``, ``torch-efficient``, ``torch-cudnn``, ``torch-math``: the torch adapter's
  F.scaled_dot_product_attention pinned to one backend with ``torch.nn.attention.sdpa_kernel``. On
  CPU torch has the flash kernel (its own tiled CPU kernel) and math; efficient and cudnn exist on
  CUDA only.
- ``jax-xla``, ``jax-cudnn``: the jax adapter's jax.nn.dot_product_attention with
  ``implementation="xla"`` or ``"cudnn"`` (cuDNN's fused kernel: GPU only).

Each offers the components that run through that one call, scaled_dot_product_attention,
attention_weights (SDPA against an identity V) and grouped_query_attention, and their vjp. A
backend that cannot take an input (a CUDA-only backend on CPU, a mask or head dim a kernel does not
support) is "unsupported" for that example, counted per example, never a pass: torch raises "No
available kernel", jax a ValueError or a runtime error naming the implementation. Declared
deviations are the base adapter's, for these components.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from spec.core import Unsupported

COMPONENTS = ("scaled_dot_product_attention", "attention_weights", "grouped_query_attention")


def _own(deviations: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in deviations.items() if k.split(".")[0] in COMPONENTS}


class _Pinned:
    """The attention components, each run through the base adapter inside _pinned()."""

    _base: Any

    def _pinned(self, run: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self._pinned(
            lambda: self._base.scaled_dot_product_attention(q, k, v, mask, scale, causal)
        )

    def attention_weights(self, q, k, mask=None, scale=None, causal=None):
        return self._pinned(lambda: self._base.attention_weights(q, k, mask, scale, causal))

    def grouped_query_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self._pinned(
            lambda: self._base.grouped_query_attention(q, k, v, mask, scale, causal)
        )


class TorchBackend(_Pinned):
    """The torch adapter's attention with F.scaled_dot_product_attention held to one backend."""

    def __init__(self, backend: str, device: str = "cpu"):
        from adapters.torch_adapter import TorchAdapter

        self.backend, self._device = backend, device
        self.name = f"torch-{backend}"
        self._base = TorchAdapter(device)
        self.deviations = _own(TorchAdapter.deviations)

    def _pinned(self, run: Callable[[], Any]) -> Any:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {
            "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "math": SDPBackend.MATH,
        }[self.backend]
        try:
            with sdpa_kernel(backend):
                return run()
        except RuntimeError as e:  # torch: "No available kernel. Aborting execution."
            if "No available kernel" in str(e):
                raise Unsupported(
                    f"{self.name} on {self._device} cannot run these inputs (torch: "
                    "No available kernel)"
                ) from None
            raise

    def vjp(
        self, component: str, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        forward = getattr(self._base, component)
        return self._pinned(lambda: self._base.vjp_of(forward, component, inputs, cotangent, wrt))

    def on_device(self, device: str) -> TorchBackend:
        return TorchBackend(self.backend, device)


class JaxBackend(_Pinned):
    """The jax adapter's attention with jax.nn.dot_product_attention's implementation pinned."""

    def __init__(self, implementation: str, device: str = "cpu"):
        from adapters.jax_adapter import JaxAdapter

        self.implementation, self._device = implementation, device
        self.name = f"jax-{implementation}"
        self._base = JaxAdapter(device)
        self._base.implementation = implementation
        self.deviations = _own(JaxAdapter.deviations)

    def _pinned(self, run: Callable[[], Any]) -> Any:
        import jax

        try:
            return run()
        except (ValueError, NotImplementedError, RuntimeError, jax.errors.JaxRuntimeError) as e:
            text = str(e)
            if self.implementation in text.lower() or "not supported" in text:
                raise Unsupported(
                    f"{self.name} on {self._device} cannot run these inputs: "
                    f"{text.splitlines()[0][:160]}"
                ) from None
            raise

    def vjp(
        self, component: str, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        return self._pinned(lambda: self._base.vjp(component, inputs, cotangent, wrt))

    def release(self) -> None:
        self._base.release()

    def on_device(self, device: str) -> JaxBackend:
        return JaxBackend(self.implementation, device)


# the backends that exist on CUDA only
CUDA_ONLY = {"torch-efficient", "torch-cudnn", "jax-cudnn"}


class CudaOnly:
    """A CUDA-only kernel loaded for the CPU: it offers no component, so each of its tests is
    skipped at collection as unsupported ("adapter ... does not offer ..."), at no cost; with
    --device cuda the plugin's on_device builds the real one."""

    def __init__(self, name: str, build: Callable[[str], Any]):
        self.name, self._build = name, build
        self.deviations: dict[str, Any] = {}

    def on_device(self, device: str) -> Any:
        return self if device == "cpu" else self._build(device)


def __getattr__(name: str) -> Any:
    """torch_flash, torch_math, ..., jax_xla, jax_cudnn: built when first named (each imports its
    library)."""
    kind, _, backend = name.partition("_")
    build: Callable[[str], Any]
    if kind == "torch" and backend in ("flash", "efficient", "cudnn", "math"):
        build = lambda device: TorchBackend(backend, device)
    elif kind == "jax" and backend in ("xla", "cudnn"):
        build = lambda device: JaxBackend(backend, device)
    else:
        raise AttributeError(name)
    row = f"{kind}-{backend}"
    return CudaOnly(row, build) if row in CUDA_ONLY else build("cpu")
