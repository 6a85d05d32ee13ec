# The two commands the README starts with. PYTHON may name a virtualenv's interpreter.
PYTHON ?= python3
PYTEST = $(PYTHON) -m pytest
# torch 2.13.0 first: on these machines that pin is a quick CPU build; an unpinned torch pulls GB of CUDA packages.
install:
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[all]"

# Conformance suite against every installed built-in adapter; prints the component x adapter matrix.
conformance: install
	$(PYTEST) tests/test_conformance.py -n auto --dist worksteal $(ARGS)

# The project's tests: conformance + reference errors + meta-tests of the helpers and planted bugs.
test: install
	$(PYTEST) -n auto --dist worksteal $(ARGS)

.PHONY: install conformance test
