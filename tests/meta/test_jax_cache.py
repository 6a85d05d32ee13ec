"""The jax adapter's persistent compilation cache: every process that runs at once holds a directory
of its own (no jax lock, no eviction scan of a shared directory on every write, which once had two
processes waiting on each other), and an oversized one is pruned, oldest entries first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("filelock")

ROOT = Path(__file__).resolve().parents[2]


def _slot_of_a_new_process(cache: Path) -> str:
    code = "import adapters.jax_adapter as j; print(j._SLOT)"
    env = {**os.environ, "TCS_JAX_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_processes_running_at_once_get_directories_of_their_own(tmp_path: Path) -> None:
    from filelock import FileLock

    (tmp_path / "slot0").mkdir()
    held = FileLock(str(tmp_path / "slot0" / ".owner"))
    held.acquire(timeout=0)  # another process's slot
    try:
        assert _slot_of_a_new_process(tmp_path) == str(tmp_path / "slot1")
    finally:
        held.release()
    assert _slot_of_a_new_process(tmp_path) == str(tmp_path / "slot0")  # free again: taken again


def test_an_oversized_slot_loses_its_oldest_entries(tmp_path: Path) -> None:
    from adapters.jax_adapter import _prune

    now = time.time()
    for i in range(10):  # 10 entries of 100 bytes, entry 0 the oldest
        f = tmp_path / f"entry{i}-cache"
        f.write_bytes(b"x" * 100)
        os.utime(f, (now - 100 + i, now - 100 + i))
    (tmp_path / ".owner").write_bytes(b"")
    _prune(tmp_path, 2000)  # under the limit: nothing goes
    assert len(list(tmp_path.glob("*-cache"))) == 10
    _prune(tmp_path, 800)  # down to half the limit, the oldest first
    left = sorted(f.name for f in tmp_path.glob("*-cache"))
    assert left == [f"entry{i}-cache" for i in range(6, 10)], left
    assert (tmp_path / ".owner").exists()
