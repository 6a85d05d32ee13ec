"""The repository's own pytest configuration. The conformance plugin
(transformer_conformance/plugin.py) is the installed package's pytest11 entry point, so `pip install
-e .` is what loads it here too; its profiles govern the conformance tests. This project's other
Hypothesis tests (tests/meta) use the same settings by name: derandomized under CI, random
otherwise, no deadline (JAX compiles on first use).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "repo",
    max_examples=10,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None if os.environ.get("CI") else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("repo")
