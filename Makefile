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

.PHONY: install conformance test thirdparty bench

# Third-party adapters (issue 6): keras on each backend (one per process) and HuggingFace Marian attention.
# Not part of `make test` / CI; each writes its report under thirdparty/.
thirdparty: install
	$(PYTHON) -m pip install -q -e ".[thirdparty]"
	KERAS_BACKEND=jax $(PYTEST) tests/test_conformance.py -n auto --adapter keras --report thirdparty/keras-jax $(ARGS)
	KERAS_BACKEND=torch $(PYTEST) tests/test_conformance.py -n auto --adapter keras --report thirdparty/keras-torch $(ARGS)
	$(PYTEST) tests/test_conformance.py -n auto --adapter hf-eager --adapter hf-sdpa --report thirdparty/hf $(ARGS)

# Benchmarks (issue 7): the CPU sweep anywhere, the GPU sweep too where torch sees a GPU; writes
# results/<machine>/benchmark.json, BENCHMARKS.md and plots. Never part of `make test` or CI.
# Installs only what is missing, so a GPU machine's own CUDA torch/jax are kept.
bench:
	$(PYTHON) -c "import torch, jax, flax, pytest_benchmark, matplotlib" 2>/dev/null || $(MAKE) install
	$(eval RESULTS := results/$(shell $(PYTHON) -m benchmarks.machine))
	mkdir -p $(RESULTS)
	$(PYTEST) tests/benchmarks -m benchmark -p no:xdist --benchmark-json=$(RESULTS)/benchmark.json \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name $(ARGS)
	$(PYTHON) -m benchmarks.report $(RESULTS)/benchmark.json
