"""Which examples have a query row that sees no key: the trigger of the declarations about empty
rows in adapters that take attention inputs (q, k, mask, causal, window, ...) or multi-head
attention's (query, mask)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import reference as R


def row_without_keys(inputs: Mapping[str, Any]) -> bool:
    """Some query row sees no key (its mask, causality and window hide every key)."""
    mask = inputs.get("mask")
    if "q" not in inputs:  # multi_head_attention: self-attention, only the mask can empty a row
        if mask is None:
            return False
        hidden = ~mask if mask.dtype == np.bool_ else np.isneginf(mask)
        return bool(hidden.all(-1).any())
    names = ("q", "k", "mask", "scale", "causal", "window", "align", "softcap")
    args = {n: inputs[n] for n in names if inputs.get(n) is not None}
    with np.errstate(all="ignore"):  # float16 logits + mask overflow to -inf: that row is empty
        return bool(np.isneginf(R.attention_lse(**args)).any())
