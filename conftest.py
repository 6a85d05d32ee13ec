"""The repository's own pytest configuration. The conformance plugin (transformer_conformance/plugin.py)
is the installed package's pytest11 entry point, so `pip install -e .` is what loads it here too."""
