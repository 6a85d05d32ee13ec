"""A failing example's inputs as an .npz file, and the loader that gives them back.

    from transformer_conformance.failures import load
    inputs = load("out/failures/torch-softmax.matches_reference-float32.npz")
    import reference; reference.softmax(**inputs)          # the oracle on the very same inputs

Nested inputs (``params``, a list of ``layers``) are flattened to keys joined by "/" and rebuilt by
``load``; scalars, strings and None travel in a JSON entry; bfloat16 arrays are stored as their
16-bit patterns (NumPy's format has no bfloat16) and come back as bfloat16. No pickling is involved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import ml_dtypes
import numpy as np

_META = "__meta__"


def _flatten(value: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """The structure of value with arrays replaced by their keys in ``arrays``."""
    if isinstance(value, np.ndarray):
        if value.dtype == ml_dtypes.bfloat16:
            arrays[prefix] = value.view(np.uint16)
            return {"array": prefix, "dtype": "bfloat16"}
        arrays[prefix] = value
        return {"array": prefix}
    if isinstance(value, Mapping):
        return {"dict": {str(k): _flatten(v, f"{prefix}/{k}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, np.generic):
        value = value.item()
    return {"value": value}


def _build(node: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    if "array" in node:
        a = np.asarray(arrays[node["array"]])
        return a.view(ml_dtypes.bfloat16) if node.get("dtype") == "bfloat16" else a
    if "dict" in node:
        return {k: _build(v, arrays) for k, v in node["dict"].items()}
    if "list" in node:
        return [_build(v, arrays) for v in node["list"]]
    return node["value"]


def file_name(test_id: str) -> str:
    """A file name for a test id (brackets and separators become '-')."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", test_id).strip("-")[:200] + ".npz"


def save(path: Path, inputs: Mapping[str, Any], **info: Any) -> Path:
    """Write inputs (and JSON-able info such as the test id and the rerun command) to path."""
    arrays: dict[str, np.ndarray] = {}
    structure = {str(k): _flatten(v, str(k), arrays) for k, v in inputs.items()}
    meta = {"structure": structure, "info": info}
    path.parent.mkdir(parents=True, exist_ok=True)
    named: dict[str, Any] = {_META: np.array(json.dumps(meta, default=repr))}
    # Any values: mypy would match an array in **arrays against savez's allow_pickle: bool
    np.savez(path, **named, **cast(dict[str, Any], arrays))
    return path


def load(path: str | Path) -> dict[str, Any]:
    """The inputs saved by ``save``, as the adapter received them."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f[_META]))
        arrays = {k: f[k] for k in f.files if k != _META}
    return {k: _build(v, arrays) for k, v in meta["structure"].items()}


def info(path: str | Path) -> dict[str, Any]:
    """What was saved beside the inputs: the test id, the rerun command, the failure."""
    with np.load(path, allow_pickle=False) as f:
        return dict(json.loads(str(f[_META]))["info"])
