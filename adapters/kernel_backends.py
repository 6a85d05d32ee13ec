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


class TorchVarlen:
    """``torch-varlen``: torch.nn.attention.varlen.varlen_attn, torch's flash kernel for packed
    batches (cu_seq_q, cu_seq_k, window_size, enable_gqa) and paged caches (block_table with
    seqused_k). CUDA only: on a CPU it offers nothing (CudaOnly). Its causality is the window
    (-1, 0), bottom-right aligned as flash-attention's; causal="top_left" is unsupported. Written
    against torch 2.13's signature; not yet run on a GPU."""

    name = "torch-varlen"
    deviations: dict[str, Any] = {}

    def __init__(self, device: str):
        from adapters.torch_adapter import TorchAdapter

        self._base = TorchAdapter(device)
        self._t, self._np, self.device = self._base._t, self._base._np, self._base.device

    def on_device(self, device: str) -> TorchVarlen:
        return TorchVarlen(device)

    @staticmethod
    def _window(causal: Any, window: Any) -> tuple[int, int]:
        if causal == "top_left":
            raise Unsupported("varlen_attn aligns causality bottom-right only")
        left, right = (-1, -1) if window is None else (int(window[0]), int(window[1]))
        if causal is not None:  # causal: no key past the aligned diagonal
            right = 0 if right == -1 else min(right, 0)
        return left, right

    def packed_attention(
        self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale=None, causal=None, window=None
    ):
        import torch
        from torch.nn.attention.varlen import varlen_attn

        cq, ck = np.asarray(cu_seqlens_q), np.asarray(cu_seqlens_k)
        out = varlen_attn(
            self._t(q),
            self._t(k),
            self._t(v),
            torch.as_tensor(cq, dtype=torch.int32, device=self.device),
            torch.as_tensor(ck, dtype=torch.int32, device=self.device),
            int(np.diff(cq).max()),
            int(np.diff(ck).max()),
            scale=scale,
            window_size=self._window(causal, window),
            enable_gqa=True,
        )
        assert isinstance(out, torch.Tensor)  # no return_aux: the output alone
        return self._np(out)  # (Nq, Hq, Kv)

    def paged_attention(
        self, q, k_pages, v_pages, block_table, cache_lens, scale=None, causal=True, window=None
    ):
        import torch
        from torch.nn.attention.varlen import varlen_attn

        B, Hq, T, K = q.shape
        lens = torch.as_tensor(np.asarray(cache_lens), dtype=torch.int32, device=self.device)
        cu_q = torch.arange(0, (B + 1) * T, T, dtype=torch.int32, device=self.device)
        flat = self._t(q).transpose(1, 2).reshape(B * T, Hq, K)  # (B, Hq, T, K) -> (B T, Hq, K)
        out = varlen_attn(
            flat,
            self._t(k_pages),
            self._t(v_pages),
            cu_q,
            None,
            T,
            int(np.max(cache_lens)),
            scale=scale,
            window_size=self._window("bottom_right" if causal else None, window),
            enable_gqa=True,
            seqused_k=lens,
            block_table=torch.as_tensor(
                np.asarray(block_table), dtype=torch.int32, device=self.device
            ),
        )
        assert isinstance(out, torch.Tensor)
        return self._np(out.reshape(B, T, Hq, -1).transpose(1, 2))  # (B, Hq, T, Kv)


# the backends that exist on CUDA only
CUDA_ONLY = {"torch-efficient", "torch-cudnn", "jax-cudnn", "torch-varlen"}


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
    if name == "torch_varlen":
        return CudaOnly("torch-varlen", TorchVarlen)
    if kind == "torch" and backend in ("flash", "efficient", "cudnn", "math"):
        build = lambda device: TorchBackend(backend, device)
    elif kind == "jax" and backend in ("xla", "cudnn"):
        build = lambda device: JaxBackend(backend, device)
    else:
        raise AttributeError(name)
    row = f"{kind}-{backend}"
    return CudaOnly(row, build) if row in CUDA_ONLY else build("cpu")
