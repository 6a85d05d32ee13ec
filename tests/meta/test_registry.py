"""One name per component everywhere: the spec's records, the reference's functions, the numpy
adapter's."""

from __future__ import annotations

import inspect

import reference
from adapters import load_adapter
from spec.registry import COMPONENTS


def test_registry_reference_and_numpy_adapter_name_the_same_components() -> None:
    public = {
        n
        for n, f in vars(reference).items()
        if inspect.isfunction(f) and not n.startswith("_") and f.__module__.startswith("reference.")
    }
    numpy = load_adapter("numpy")
    assert numpy.namespace is reference, "the numpy adapter is the reference module itself"
    offered = {n for n in COMPONENTS if numpy.function(n) is not None}
    assert set(COMPONENTS) == set(reference.__all__) == public, (
        f"spec only: {set(COMPONENTS) - public}; reference only: {public - set(COMPONENTS)}"
    )
    assert offered == set(COMPONENTS), f"the numpy adapter lacks {set(COMPONENTS) - offered}"


def test_every_family_has_its_conformance_test_file() -> None:
    from pathlib import Path

    from spec.registry import FAMILIES
    from transformer_conformance.plugin import TESTS

    families = {c.family for c in COMPONENTS.values()}
    assert families <= set(FAMILIES)
    missing = [f for f in families if not (Path(TESTS) / f"test_{f}.py").exists()]
    assert not missing, (
        f"families without transformer_conformance/conformance/test_<family>.py: {missing}"
    )
