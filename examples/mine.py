"""The README's walk-through adapter: someone's own attention, checked against the spec.

    transformer-conformance --adapter examples.mine:adapter --component scaled_dot_product_attention
    --report out/

It wraps torch's SDPA the way a newcomer would at first: causal masks not wired yet and no bfloat16
conversion, so the report shows what passes, what fails and why. Copy it, replace the body with your
code.
"""

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F


def sdpa(q, k, v, mask=None, scale=None, causal=None):
    if causal is not None:
        raise NotImplementedError("not wired yet")  # any exception here fails that test only
    t = lambda a: None if a is None else torch.from_numpy(np.array(a))
    return F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(mask), scale=scale).numpy()


adapter = SimpleNamespace(
    name="mine",
    scaled_dot_product_attention=sdpa,
    deviations={"scaled_dot_product_attention.refuses[nan_scale]": "no scale check"},
)
