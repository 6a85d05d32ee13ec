"""The numpy adapter with every gradient unsupported: what --require-support must fail (a mutant
of a vjp that gives up on every input)."""

import reference
from spec.core import Unsupported


class NoGradients:
    name = "nograd"
    deviations: dict[str, str] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(reference, name)

    def vjp(self, component: str, inputs: object, cotangent: object, wrt: object) -> dict:
        raise Unsupported("no gradients")


adapter = NoGradients()
