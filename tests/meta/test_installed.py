"""The package as a third party installs it: a wheel built from this checkout, installed into a
fresh virtualenv outside it (core dependencies only), checks a numpy adapter in another folder
through the console script (exit 0 conforming, 1 not, 2 a usage error, 3 an unimportable adapter)
and through `pytest -p transformer_conformance`, beside the user's own tests. Minutes (pip):
behind TCS_INSTALLED=1 (`make installed`), not in the default run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.environ.get("TCS_INSTALLED") != "1", reason="builds and installs a wheel: TCS_INSTALLED=1"
)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: a venv with the wheel installed, their package and one test of their own."""
    home = tmp_path_factory.mktemp("user")
    dist = home / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    wheel = next(dist.glob("*.whl"))
    subprocess.run([str(home / "venv/bin/pip"), "install", "-q", str(wheel)], check=True)
    (home / "mypkg").mkdir()
    (home / "mypkg/__init__.py").write_text("")
    shutil.copy(ROOT / "examples/thirdparty/mypkg_attention.py", home / "mypkg/attention.py")
    (home / "tests").mkdir()
    (home / "tests/test_own.py").write_text("def test_users_own():\n    assert True\n")
    return home


def _run(user: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=user, capture_output=True, text=True)


@pytest.mark.parametrize(
    "adapter,component,code",
    [
        ("mypkg.attention:good", "softmax", 0),
        ("mypkg.attention:bad", "softmax", 1),
        ("mypkg.attention:good", "softmaxx", 2),
        ("mypkg.nothere:good", "softmax", 3),
    ],
    ids=["conforms", "nonconformance", "usage_error", "unimportable"],
)
def test_console_script_exit_codes(user: Path, adapter: str, component: str, code: int) -> None:
    report = user / f"out-{code}"
    done = _run(
        user,
        str(user / "venv/bin/transformer-conformance"),
        "--adapter",
        adapter,
        "--component",
        component,
        "--report",
        str(report),
    )
    assert done.returncode == code, (
        f"exit {done.returncode}, expected {code}:\n{done.stdout[-3000:]}"
    )
    if code in (0, 1):
        assert (report / "CONFORMANCE.md").exists() and (report / "conformance.json").exists()


def test_pytest_plugin_beside_the_users_tests(user: Path) -> None:
    done = _run(
        user,
        str(user / "venv/bin/pytest"),
        "tests",
        "-p",
        "transformer_conformance",
        "--adapter",
        "mypkg.attention:good",
        "--component",
        "softmax",
        "--junitxml",
        "j.xml",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "test_users_own" in (user / "j.xml").read_text(), "the user's own test did not run"
    assert "softmax.matches_reference" in (user / "j.xml").read_text()
