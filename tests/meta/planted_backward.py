"""Deliberately broken backward passes behind a correct forward (issue: gradient conformance): a
torch autograd.Function and a jax custom_vjp for attention, each with one bug the gradient checks
must catch.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import torch

from adapters.jax_adapter import JaxAdapter
from adapters.torch_adapter import TorchAdapter
from reference.attention import _allowed
from spec.core import Unsupported

BUGS = ("dq_without_scale", "dk_transposed", "leaks_into_masked_keys")


def _torch_backward(q, k, v, allowed, scale, do, bug):
    s = (q @ k.transpose(-1, -2)) * scale  # (B, H, T, S)
    p = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
    if bug == "leaks_into_masked_keys":
        p = torch.softmax(s, dim=-1)  # the backward forgets the mask
    dv = p.transpose(-1, -2) @ do  # (B, H, S, Kv)
    dp = do @ v.transpose(-1, -2)  # (B, H, T, S)
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))  # (B, H, T, S)
    dq = ds @ k * (1.0 if bug == "dq_without_scale" else scale)
    square = ds.shape[-1] == ds.shape[-2]
    dk = (ds if bug == "dk_transposed" and square else ds.transpose(-1, -2)) @ q * scale
    return dq, dk, dv


class _TorchAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, allowed, scale, bug):
        ctx.save_for_backward(q, k, v, allowed)
        ctx.scale, ctx.bug = scale, bug
        s = ((q @ k.transpose(-1, -2)) * scale).masked_fill(~allowed, float("-inf"))
        return torch.softmax(s, dim=-1) @ v  # the forward is right

    @staticmethod
    def backward(ctx, do):
        q, k, v, allowed = ctx.saved_tensors
        return (*_torch_backward(q, k, v, allowed, ctx.scale, do, ctx.bug), None, None, None)


class _SoftmaxWithoutCentring(torch.autograd.Function):
    """softmax whose backward forgets the - sum(c * y) term: dx = y * c."""

    @staticmethod
    def forward(ctx, x, axis):
        y = torch.softmax(x, dim=axis)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, c):
        (y,) = ctx.saved_tensors
        return y * c, None


class BrokenSoftmaxBackward(TorchAdapter):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "torch_softmax_backward_not_centred"

    def softmax(self, x, axis=-1):
        return self._np(_SoftmaxWithoutCentring.apply(self._t(x), axis))


class BrokenTorchBackward(TorchAdapter):
    def __init__(self, bug: str):
        super().__init__("cpu")
        self.bug, self.name = bug, f"torch_backward_{bug}"

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        if mask is not None and mask.dtype != np.bool_:
            raise Unsupported("this planted kernel takes boolean masks only")
        allowed = torch.from_numpy(
            _allowed(q.shape[0], q.shape[1], q.shape[2], k.shape[2], mask, causal)
        )
        scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
        return self._np(
            _TorchAttention.apply(self._t(q), self._t(k), self._t(v), allowed, scale, self.bug)
        )


def _jax_attention(allowed: jax.Array, scale: float, bug: str):
    """A custom_vjp attention over (q, k, v) for one mask, scale and bug (captured, not
    differentiated)."""

    @jax.custom_vjp
    def attention(q, k, v):
        s = jnp.where(allowed, (q @ jnp.swapaxes(k, -1, -2)) * scale, -jnp.inf)
        return jax.nn.softmax(s, axis=-1) @ v  # the forward is right

    def fwd(q, k, v):
        return attention(q, k, v), (q, k, v)

    def bwd(residuals, do):
        q, k, v = residuals
        s = (q @ jnp.swapaxes(k, -1, -2)) * scale
        p = jax.nn.softmax(
            s if bug == "leaks_into_masked_keys" else jnp.where(allowed, s, -jnp.inf), axis=-1
        )
        dv = jnp.swapaxes(p, -1, -2) @ do
        dp = do @ jnp.swapaxes(v, -1, -2)
        ds = p * (dp - (p * dp).sum(-1, keepdims=True))
        dq = ds @ k * (1.0 if bug == "dq_without_scale" else scale)
        square = ds.shape[-1] == ds.shape[-2]
        dk = (ds if bug == "dk_transposed" and square else jnp.swapaxes(ds, -1, -2)) @ q * scale
        return dq, dk, dv

    attention.defvjp(fwd, bwd)
    return attention


class BrokenJaxBackward(JaxAdapter):
    def __init__(self, bug: str):
        super().__init__("cpu")
        self.bug, self.name = bug, f"jax_backward_{bug}"

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        if mask is not None and mask.dtype != np.bool_:
            raise Unsupported("this planted kernel takes boolean masks only")
        allowed = _allowed(q.shape[0], q.shape[1], q.shape[2], k.shape[2], mask, causal)
        scale = float(1.0 / np.sqrt(q.shape[-1]) if scale is None else scale)
        attention = _jax_attention(jnp.asarray(allowed), scale, self.bug)
        return self._np(attention(self._j(q), self._j(k), self._j(v)))


class SelfAttentionGradientViaQueryOnly(TorchAdapter):
    """Self-attention whose gradient reaches the shared input through its query use only: the
    forward is right, the key and value uses are cut from the graph (a copy), as a kernel that fuses
    Q/K/V might."""

    name = "self_attention_gradient_via_query_only"

    def multi_head_attention(self, query, key, value, params, num_heads, mask=None, causal=None):
        if key is query and value is query and self._leaves is not None:
            key = value = query.copy()  # the same numbers, no longer the differentiated leaf
        return super().multi_head_attention(query, key, value, params, num_heads, mask, causal)


class _GateSavedInHalf(torch.autograd.Function):
    """tanh or sigmoid whose backward reads its output from a float16 copy: activations kept at half
    precision for the backward pass (a mixed-precision checkpointing bug), 1 - y^2 from a y with
    2^-11 relative error."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kind: str) -> torch.Tensor:
        y = torch.tanh(x) if kind == "tanh" else torch.sigmoid(x)
        ctx.kind = kind
        ctx.save_for_backward(y.half())
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (y,) = ctx.saved_tensors
        y = y.to(g.dtype)
        return (g * (1 - y * y) if ctx.kind == "tanh" else g * y * (1 - y)), None


class LstmGatesSavedInHalf(TorchAdapter):
    """An LSTM cell in torch ops (the spec's gate order i, f, g, o) whose gates' backward reads
    their outputs from float16 copies; ``saved_in_half=False`` is the bug-free twin."""

    def __init__(self, saved_in_half: bool = True):
        super().__init__("cpu")
        self.saved_in_half = saved_in_half
        self.name = "lstm_gates_saved_in_half" if saved_in_half else "lstm_gates_saved_exactly"

    def _gate(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        if self.saved_in_half:
            return cast(torch.Tensor, _GateSavedInHalf.apply(x, kind))
        return torch.tanh(x) if kind == "tanh" else torch.sigmoid(x)

    def recurrent_cell(self, x, state, params, cell="gru"):
        if cell != "lstm":
            raise Unsupported("this planted cell is an LSTM only")
        N = params["w_h"].shape[0]
        xt, st = self._t(x), self._t(state)
        w = {k: self._t(v) for k, v in params.items()}
        g = xt @ w["w_x"] + w["b_x"] + st[:, :N] @ w["w_h"] + w["b_h"]  # (B, 4N): i, f, g, o
        i, f = self._gate(g[:, :N], "sigmoid"), self._gate(g[:, N : 2 * N], "sigmoid")
        o = self._gate(g[:, 3 * N :], "sigmoid")
        c = f * st[:, N:] + i * self._gate(g[:, 2 * N : 3 * N], "tanh")  # (B, N)
        return self._np(torch.cat([o * self._gate(c, "tanh"), c], dim=1))  # (B, 2N)


_CHECKS = {
    "dq_without_scale": ("vjp_matches_finite_differences", "none", "float32"),
    "dk_transposed": ("vjp_matches_finite_differences", "none", "float64"),
    "leaks_into_masked_keys": ("masked_keys_get_no_gradient", None, "float32"),
}

CAUGHT_BY = [
    (cls(bug), "scaled_dot_product_attention", *_CHECKS[bug])
    for cls in (BrokenTorchBackward, BrokenJaxBackward)
    for bug in BUGS
] + [
    (
        BrokenTorchBackward("leaks_into_masked_keys"),
        "scaled_dot_product_attention",
        "causal_future_gets_no_gradient",
        None,
        "float32",
    ),
    (BrokenSoftmaxBackward(), "softmax", "gradient_rows_sum_to_zero", None, "float32"),
    (
        SelfAttentionGradientViaQueryOnly(),
        "multi_head_attention",
        "vjp_matches_finite_differences",
        "self",
        "float32",
    ),
    (
        LstmGatesSavedInHalf(),
        "recurrent_cell",
        "vjp_matches_finite_differences",
        "lstm",
        "float32",
    ),
]

# bug-free twins: the same planted code with its bug off passes where the bug is caught
TWINS = [(LstmGatesSavedInHalf(saved_in_half=False), *CAUGHT_BY[-1][1:])]
