"""Every component of the spec, by name: collected from the spec's modules, not listed by hand.

A spec module states its components as ``Component`` records at module level; importing the module
is what makes them part of the spec. A record's ``Gradient`` gives its vjp property
(spec/gradients.py), after its forward ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace

import spec
from spec.core import REGISTERED, Component, Property, differential
from spec.gradients import vjp_property

# The order components are reported and parametrised in: the paper's, from the core outwards.
FAMILIES = (
    "attention",
    "masks",
    "embeddings",
    "layers",
    "training",
    "stacks",
    "model",
    "decoding",
    "recurrent",
    "seq2seq",
)


# component name -> the spec module that states it
SOURCES: dict[str, str] = {}


def _collect() -> dict[str, Component]:
    found: dict[str, Component] = {}
    for module in pkgutil.iter_modules(spec.__path__):
        for value in vars(importlib.import_module(f"spec.{module.name}")).values():
            if isinstance(value, Component):
                if value.name in found and found[value.name] is not value:
                    raise ValueError(f"two spec records are named {value.name!r}")
                found[value.name] = value
                SOURCES[value.name] = f"spec.{module.name}"
    unknown = {c.family for c in found.values()} - set(FAMILIES)
    if unknown:
        raise ValueError(
            f"components of unknown families {sorted(unknown)}: add them to spec/registry.py "
            "FAMILIES"
        )
    return dict(sorted(found.items(), key=lambda kv: (FAMILIES.index(kv[1].family), kv[0])))


def _gradient(c: Component) -> tuple[Property, ...]:
    """The vjp property the record's Gradient describes (spec/gradients.py)."""
    g = c.gradient
    if g is None:
        return ()
    draw = g.draw or c.draw
    assert draw is not None, f"{c.name}: a Gradient needs a draw"
    return (vjp_property(draw, g.wrt, g.variants, g.max_step),)


def _complete(c: Component) -> Component:
    """The record with every property it has: its differential one, those it lists, those registered
    by decorator, its vjp property, then the gradient properties registered by decorator, then the
    kernel-scale ones (spec/kernel_scale.py)."""
    listed = differential(c) + c.properties + tuple(REGISTERED.get(c.name, ()))

    def of(kind: str) -> tuple[Property, ...]:
        return tuple(p for p in listed if p.kind == kind)

    return replace(c, properties=of("forward") + _gradient(c) + of("gradient") + of("kernel"))


COMPONENTS: dict[str, Component] = {name: _complete(c) for name, c in _collect().items()}
