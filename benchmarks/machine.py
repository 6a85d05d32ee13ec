"""What the results were measured on: device names, driver, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

LIBRARIES = ("numpy", "torch", "jax", "jaxlib", "flax", "ml_dtypes", "pytest-benchmark", "triton")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu() -> dict[str, Any] | None:
    """The CUDA device torch sees (name, memory, SMs, driver), or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
    }
    try:
        smi = ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"]
        info["driver"], info["max_sm_clock"] = (
            s.strip()
            for s in subprocess.run(smi, capture_output=True, text=True, timeout=20).stdout.split(
                ","
            )[:2]
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        info["driver"] = "unknown (no nvidia-smi)"
    return info


def describe() -> dict[str, Any]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu_model": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu(),
        "libraries": versions,
    }


def device_name(device: str) -> str:
    if device == "cuda":
        g = gpu()
        return g["name"] if g else "no CUDA device"
    return cpu_name()


def slug() -> str:
    """The results folder's name for this machine: the GPU's model where there is one, else
    "cpu"."""
    g = gpu()
    if g is None:
        return "cpu"
    return "cuda-" + "".join(c if c.isalnum() else "-" for c in g["name"].lower()).strip("-")


if __name__ == "__main__":
    print(slug())
