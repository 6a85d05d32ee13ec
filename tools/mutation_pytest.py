"""pytest plugin for `make mutation` only (loaded by tools/mutation.py through PYTEST_ADDOPTS):
the `ci` profile without Hypothesis' shrink and explain phases. They run only after a test has
already failed, i.e. after the mutant is killed, and took 20-30 s per killed mutant of the layers;
no verdict changes."""

from hypothesis import Phase

from transformer_conformance import plugin

plugin.PROFILES["ci"] = {
    **plugin.PROFILES["ci"],
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
}
