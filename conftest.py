"""The repository's own pytest configuration: the conformance plugin (transformer_conformance/plugin.py)."""

pytest_plugins = ["transformer_conformance.plugin"]
