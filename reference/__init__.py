"""The NumPy oracle: one small pure function per component, named exactly as in the spec."""

from reference.attention import (
    attention_weights,
    multi_head_attention,
    scaled_dot_product_attention,
    softmax,
)
from reference.masks import causal_mask, key_padding_mask

__all__ = [
    "attention_weights",
    "causal_mask",
    "key_padding_mask",
    "multi_head_attention",
    "scaled_dot_product_attention",
    "softmax",
]
