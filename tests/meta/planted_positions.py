"""Deliberately broken rotary embeddings (spec/positions.py): written as the libraries write RoPE (a
cos/sin table, rotate_half or a pairwise view), each with one bug real projects have had, and the
property that must catch it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


def _adapter(name: str, bug: str) -> SimpleNamespace:
    def rotary_embedding(
        x, positions=None, offset=0, base=10000.0, rotary_dim=None, layout="half"
    ) -> Any:
        B, _, T, K = x.shape
        r = rotary_dim or K
        pos = np.arange(T) if positions is None else np.asarray(positions)
        pos = np.broadcast_to(pos, (B, T))
        if bug == "rows_shared":  # the first row's positions for every row
            pos = np.broadcast_to(pos[:1], (B, T))
        if bug == "one_based":
            pos = pos + 1
        if bug != "offset_ignored":
            pos = pos + np.reshape(offset, (-1, 1))
        work = {"float32_angle": np.float32, "angle_in_dtype": x.dtype}.get(bug, np.float64)
        dims = K if bug == "theta_over_K" else r  # the frequencies of the head size, not r
        theta = (1.0 / np.power(base, np.arange(0, r, 2) / dims)).astype(work)  # (r/2,)
        angle = pos.astype(work)[:, None, :, None] * theta  # (B, 1, T, r/2)
        cos, sin = np.cos(angle).astype(x.dtype), np.sin(angle).astype(x.dtype)
        if bug == "rotation_reversed":
            sin = -sin
        rot, rest = (
            (x[..., K - r :], x[..., : K - r]) if bug == "last_dims" else (x[..., :r], x[..., r:])
        )
        if layout == "half" or bug == "layout_ignored":
            a, b = rot[..., : r // 2], rot[..., r // 2 :]
            out = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        else:
            a, b = rot[..., 0::2], rot[..., 1::2]
            out = np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(rot.shape)
        parts = [rest, out] if bug == "last_dims" else [out, rest]
        return np.concatenate(parts, axis=-1).astype(x.dtype)

    return SimpleNamespace(name=name, rotary_embedding=rotary_embedding)


RE = "rotary_embedding"
layout_ignored = _adapter("rope_layout_ignored", "layout_ignored")
float32_angle = _adapter("rope_float32_angle", "float32_angle")
angle_in_dtype = _adapter("rope_angle_in_dtype", "angle_in_dtype")
theta_over_K = _adapter("rope_theta_over_K", "theta_over_K")
offset_ignored = _adapter("rope_offset_ignored", "offset_ignored")
rotation_reversed = _adapter("rope_rotation_reversed", "rotation_reversed")
rows_shared = _adapter("rope_rows_shared", "rows_shared")
last_dims = _adapter("rope_last_dims", "last_dims")
one_based = _adapter("rope_one_based", "one_based")

# (adapter, component, property, variant id, dtype): where each bug must be caught
CAUGHT_BY = [
    (layout_ignored, RE, "matches_reference", "interleaved", "float32"),
    (layout_ignored, RE, "layouts_are_one_rotation", "half+partial", "float32"),
    (float32_angle, RE, "matches_reference", "half+long", "float64"),  # allowed below float64
    (angle_in_dtype, RE, "matches_reference", "half+long", "bfloat16"),
    (angle_in_dtype, RE, "scores_depend_on_distance_only", "half+ids", "bfloat16"),
    (theta_over_K, RE, "matches_reference", "half+partial", "float32"),
    (offset_ignored, RE, "offset_shifts_positions", "half+ids", "float32"),
    (offset_ignored, RE, "matches_reference", "half+ids+offset", "float32"),
    (rotation_reversed, RE, "matches_reference", "half", "float32"),
    (rows_shared, RE, "matches_reference", "interleaved+partial+rows", "float32"),
    (last_dims, RE, "matches_reference", "half+partial", "float32"),
    (one_based, RE, "position_zero_is_the_identity", "half+ids", "float32"),
]

# the same code with no bug on: it must pass wherever a bug above is caught
clean = _adapter("rope_clean", "none")
