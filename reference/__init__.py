"""The NumPy oracle: one small pure function per component, named exactly as in the spec.

This module is also the built-in ``numpy`` adapter (``--adapter numpy``): the oracle checked against
its own spec, in the test dtype, which is the "plain same-precision evaluation" the tolerance policy
measures, so it must pass with room to spare. Its ``vjp`` is reverse-mode differentiation of these
very functions (reference/autodiff.py), judged against the finite differences of the oracle like any
adapter's.
"""

from reference import (
    attention,
    decoding,
    layers,
    layouts,
    masks,
    model,
    positions,
    recurrent,
    seq2seq,
    stacks,
    training,
    variants,
)
from reference.attention import *  # noqa: F403
from reference.decoding import *  # noqa: F403
from reference.layers import *  # noqa: F403
from reference.layouts import *  # noqa: F403
from reference.masks import *  # noqa: F403
from reference.model import *  # noqa: F403
from reference.positions import *  # noqa: F403
from reference.recurrent import *  # noqa: F403
from reference.seq2seq import *  # noqa: F403
from reference.stacks import *  # noqa: F403
from reference.training import *  # noqa: F403
from reference.variants import *  # noqa: F403

# Every component, collected from the modules' own __all__ (a new component is listed once, there).
__all__ = sorted(
    name
    for module in (
        attention,
        decoding,
        layers,
        layouts,
        masks,
        model,
        positions,
        recurrent,
        seq2seq,
        stacks,
        training,
        variants,
    )
    for name in module.__all__
)

# The adapter interface (adapters/__init__.py): the reference is the built-in numpy adapter.
name = "numpy"
deviations: dict[str, str] = {}


def vjp(component: str, inputs: dict, cotangent, wrt: tuple[str, ...]) -> dict:
    """Gradients of <cotangent, component(**inputs)> for the inputs at the paths in wrt, in their
    dtype."""
    from reference import autodiff

    groups = tuple(autodiff.alias_paths(inputs, p) for p in wrt)
    return dict(
        zip(wrt, autodiff.vjp(globals()[component], inputs, cotangent, groups), strict=True)
    )
