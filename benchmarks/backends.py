"""The implementations being timed: each library's own kernel, called on inputs already on the
device.

A backend maps the spec's canonical inputs onto the library once, outside the timed region (layout
transposes, device placement, jit), and returns a Prepared: ``call()`` runs the library's kernel
once, ``sync(out)`` waits for it (CUDA and XLA launch asynchronously), ``to_numpy(out)`` brings the
output back in the spec's layout for the spot check against the oracle. Nothing here re-implements a
kernel. torch SDPA is timed with each backend it has (``torch.nn.attention.sdpa_kernel``), and
compiled flex_attention; jax's ``dot_product_attention`` with each ``implementation``. The attention
variants go to the backends that express them (``Backend.variants``): grouped heads and windows to
all, the soft-cap to numpy and flex_attention only. Libraries import lazily: a machine without
jax still runs the torch and numpy benchmarks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import ml_dtypes
import numpy as np

import reference
from benchmarks.cases import ATTENTION, Case
from reference.variants import window_allowed


class Unavailable(Exception):
    """This backend cannot run this case on this machine (no such kernel or device, out of
    memory)."""


# Messages with which the libraries say "no kernel for this here" rather than "this crashed".
UNAVAILABLE_MESSAGES = (
    "No viable backend",
    "No available kernel",
    "cuDNN is not detected",
    "out of memory",
    "RESOURCE_EXHAUSTED",
)


@dataclass(frozen=True)
class Prepared:
    call: Callable[[], Any]
    sync: Callable[[Any], Any]
    to_numpy: Callable[[Any], np.ndarray]
    library: str


@dataclass(frozen=True)
class Backend:
    name: str
    library: str  # the import the backend needs: numpy, torch or jax
    components: tuple[str, ...]
    devices: tuple[str, ...]
    prepare: Callable[[Case, dict[str, Any]], Prepared]
    # the attention variants (Case.variants) it can express: "gqa", "window", "softcap"
    variants: frozenset[str] = frozenset()


# --- numpy: the reference itself (CPU only) ------------------------------------------------------
def _numpy(case: Case, inputs: dict[str, Any]) -> Prepared:
    fn = getattr(reference, case.component)
    kwargs = dict(inputs)
    if case.component == ATTENTION and case.causal:
        kwargs["causal"] = "top_left"
    if case.variants:
        fn, kwargs = reference.variant_attention, {**inputs, **case.reference_args()}
    return Prepared(lambda: fn(**kwargs), lambda out: out, np.asarray, "numpy")


# --- torch ---
def _torch_tensor(a: np.ndarray, device: str) -> Any:
    import torch

    if a.dtype == ml_dtypes.bfloat16:  # NumPy has no bfloat16: through a 16-bit integer view
        return (
            torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16).to(device)
        )
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _torch_numpy(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    return (
        t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        if t.dtype == torch.bfloat16
        else t.numpy()
    )


def torch_sync(device: str) -> Callable[[Any], Any]:
    import torch

    if device == "cuda":
        return lambda out: torch.cuda.synchronize()
    return lambda out: out


def _torch(case: Case, inputs: dict[str, Any], sdpa_backend: str | None = None) -> Prepared:
    import torch
    import torch.nn.functional as F

    from adapters.torch_adapter import positional_encoding_table

    dev = case.device
    t = {k: _torch_tensor(v, dev) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
    call: Callable[[], Any]
    if case.component == ATTENTION:
        kw: dict[str, Any] = {"is_causal": case.causal, "enable_gqa": case.kv_heads is not None}
        if case.window is not None:  # SDPA has no window: the spec's mask, as users pass it
            T, S = case.size["T"], case.size["S"]
            allowed = window_allowed(T, S, (case.window, 0), "top_left")  # (T, S) bool
            kw["attn_mask"], kw["is_causal"] = torch.from_numpy(allowed).to(dev), False
        sdpa = partial(F.scaled_dot_product_attention, t["q"], t["k"], t["v"], **kw)
        if sdpa_backend is None:
            call = sdpa
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            chosen = [getattr(SDPBackend, sdpa_backend)]

            def call() -> Any:
                with sdpa_kernel(chosen):  # only this backend may run: no silent fallback to math
                    return sdpa()

    elif case.component == "softmax":
        call = lambda: torch.softmax(t["x"], dim=-1)
    elif case.component == "layer_norm":
        D = case.size["D"]
        call = lambda: F.layer_norm(t["x"], (D,), t["gamma"], t["beta"], t["eps"])
    elif case.component == "sinusoidal_positional_encoding":
        device = torch.device(dev)
        call = lambda: positional_encoding_table(t["T"], t["D"], 10000.0, case.dtype, device)
    elif case.component == "matmul":
        call = lambda: torch.matmul(t["a"], t["b"])
    elif case.component == "copy":
        dst = torch.empty_like(t["x"])
        call = lambda: dst.copy_(t["x"])
    else:
        raise Unavailable(f"torch: no benchmark of {case.component}")
    return Prepared(call, torch_sync(dev), _torch_numpy, "torch")


def _torch_flex(case: Case, inputs: dict[str, Any]) -> Prepared:
    """torch.nn.attention.flex_attention, compiled (eagerly it materialises the scores): the window
    and causality as a block mask (the blocks no query sees are skipped), the soft-cap as a
    score_mod, grouped heads with enable_gqa."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    dev = case.device
    q, k, v = (_torch_tensor(inputs[n], dev) for n in ("q", "k", "v"))
    T, S = case.size["T"], case.size["S"]
    causal, window, cap = case.causal, case.window, case.softcap

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        keep = kv_idx >= 0
        if causal:
            keep = keep & (kv_idx <= q_idx)
        if window is not None:
            keep = keep & (kv_idx >= q_idx - window) & (kv_idx <= q_idx)
        return keep

    def score_mod(score: Any, b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return score if cap is None else cap * torch.tanh(score / cap)

    with warnings.catch_warnings():  # torch's compiler warns of its own deprecated internals
        warnings.simplefilter("ignore", DeprecationWarning)
        block_mask = create_block_mask(mask_mod, None, None, T, S, device=dev)
        flex = torch.compile(flex_attention, dynamic=False)

    gqa = case.kv_heads is not None

    def call() -> Any:
        with warnings.catch_warnings():  # its first call compiles
            warnings.simplefilter("ignore", DeprecationWarning)
            return flex(q, k, v, score_mod=score_mod, block_mask=block_mask, enable_gqa=gqa)

    return Prepared(call, torch_sync(dev), _torch_numpy, "torch")


# --- jax ---
def _jax(case: Case, inputs: dict[str, Any], implementation: str | None = None) -> Prepared:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from adapters.jax_adapter import positional_encoding_table

    try:
        device = jax.devices("gpu" if case.device == "cuda" else "cpu")[0]
    except RuntimeError as e:
        raise Unavailable(f"jax sees no {case.device} device: {e}") from e
    put = lambda a: jax.block_until_ready(jax.device_put(a, device))
    sync = jax.block_until_ready
    if case.component == ATTENTION:
        # jax's layout is (B, L, H, K): transposed once here, outside the timed call
        # grouped heads natively (k, v with fewer heads); the window as its local_window_size
        q, k, v = (put(np.ascontiguousarray(np.swapaxes(inputs[n], 1, 2))) for n in ("q", "k", "v"))
        window = None if case.window is None else (case.window, 0)
        fn = jax.jit(
            partial(
                jax.nn.dot_product_attention,
                is_causal=case.causal,
                implementation=implementation,
                local_window_size=window,
            )
        )
        to_numpy = lambda out: np.swapaxes(np.asarray(out), 1, 2)  # (B, H, T, K)
        return Prepared(lambda: fn(q, k, v), sync, to_numpy, "jax")
    if case.component == "softmax":
        x = put(inputs["x"])
        fn = jax.jit(partial(jax.nn.softmax, axis=-1))
        return Prepared(lambda: fn(x), sync, np.asarray, "jax")
    if case.component == "layer_norm":
        import flax.linen as nn

        x, g, b = put(inputs["x"]), put(inputs["gamma"]), put(inputs["beta"])
        ln = nn.LayerNorm(
            epsilon=inputs["eps"], dtype=x.dtype, param_dtype=x.dtype
        )  # as the jax adapter maps it
        fn = jax.jit(lambda x, g, b: ln.apply({"params": {"scale": g, "bias": b}}, x))
        return Prepared(lambda: fn(x, g, b), sync, np.asarray, "jax")
    if case.component == "sinusoidal_positional_encoding":
        T, D = inputs["T"], inputs["D"]

        def table() -> Any:
            with jax.default_device(
                device
            ):  # no input to follow: the table is placed by the default device
                return positional_encoding_table(T, D, 10000.0, case.dtype)

        return Prepared(table, sync, np.asarray, "jax")
    if case.component == "matmul":
        a, b = put(inputs["a"]), put(inputs["b"])
        fn = jax.jit(jnp.matmul)
        return Prepared(lambda: fn(a, b), sync, np.asarray, "jax")
    raise Unavailable(f"jax: no benchmark of {case.component}")


_ROW_WISE = ("softmax", "layer_norm", "sinusoidal_positional_encoding")
_ALL = frozenset({"gqa", "window", "softcap"})
_NO_CAP = frozenset({"gqa", "window"})  # SDPA and jax's dot_product_attention have no soft-cap
BACKENDS: tuple[Backend, ...] = (
    Backend("numpy", "numpy", (ATTENTION, *_ROW_WISE), ("cpu",), _numpy, _ALL),
    Backend("torch", "torch", (ATTENTION, *_ROW_WISE), ("cpu", "cuda"), _torch, _NO_CAP),
    *(
        Backend(
            f"torch-sdpa-{b.lower().removesuffix('_attention')}",
            "torch",
            (ATTENTION,),
            ("cpu", "cuda"),
            partial(_torch, sdpa_backend=b),
            _NO_CAP,
        )
        for b in ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
    ),
    Backend("torch-flex", "torch", (ATTENTION,), ("cpu", "cuda"), _torch_flex, _ALL),
    Backend("jax", "jax", (ATTENTION, *_ROW_WISE), ("cpu", "cuda"), _jax, _NO_CAP),
    *(
        Backend(
            f"jax-dpa-{i}",
            "jax",
            (ATTENTION,),
            ("cpu", "cuda"),
            partial(_jax, implementation=i),
            _NO_CAP,
        )
        for i in ("xla", "cudnn")
    ),
)
# The probes of the measured peaks run through torch (and jax for its own matmul peak where it
# runs).
PEAK_BACKENDS: tuple[Backend, ...] = (
    Backend("torch", "torch", ("matmul", "copy"), ("cpu", "cuda"), _torch),
)


def for_case(case: Case) -> list[Backend]:
    """The backends that implement this case's component, with its variants, on its device."""
    pool = PEAK_BACKENDS if case.component in ("matmul", "copy") else BACKENDS
    return [
        b
        for b in pool
        if case.component in b.components
        and case.device in b.devices
        and case.variants <= b.variants
    ]
