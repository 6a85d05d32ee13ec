# The README's two commands (`make conformance`, `make test`) create a virtual environment in .venv and
# install into it, never into the system interpreter. VENV=... picks another one.
VENV ?= .venv
PYTHON = $(VENV)/bin/python
PYTEST = $(PYTHON) -m pytest
STAMP = $(VENV)/.installed

# torch 2.13.0 first: on these machines that pin is a quick CPU build; an unpinned torch pulls GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

# The conformance suite (the installed `transformer-conformance` command) against every installed
# built-in adapter; prints the component x adapter matrix.
conformance: install
	$(VENV)/bin/transformer-conformance -n auto --dist worksteal $(ARGS)

# The project's tests: the conformance suite + meta-tests (helpers, planted bugs, domains, mutants).
test: install
	$(PYTEST) -n auto --dist worksteal $(ARGS)

# ruff (lint with RUF100, so dead noqa go; format) and mypy on the library code.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy spec reference adapters transformer_conformance

# Not CI: long measurements, each from frozen clones or on its own.
# 50 random seeds of the dev profile, two clones in parallel (one pytest per core): results/sweep/SWEEP.md.
sweep: install
	$(PYTHON) -m transformer_conformance.sweep --seeds $(or $(SEEDS),1-50) --workers 2 --out results/sweep $(ARGS)

# Kernel scale (spec/kernel_scale.py): scaled_dot_product_attention and the attention variants
# (variant_attention, attention_lse) at lengths 512 to 16384 on the built-in adapters
# (ADAPTERS="--adapter torch" to choose), one pytest per core; report with the error-vs-S plot in
# results/kernel-cpu/. About 10 minutes per adapter on 2 cores for SDPA, 6 more for the variants.
kernel: install
	$(VENV)/bin/transformer-conformance --scale production -n auto --dist worksteal \
		$(or $(ADAPTERS),--adapter torch --adapter jax) --report results/kernel-cpu $(ARGS)

# The streaming float64 oracle at T = S = 16384, K = 128 against this machine's float64 matmul rate.
oracle-speed: install
	$(PYTHON) -m benchmarks.oracle_speed $(ARGS)

# The mechanical mutants of the reference and which property catches each: docs/MUTANTS.md.
mutants: install
	$(PYTHON) -m transformer_conformance.meta mutants $(ARGS) > docs/MUTANTS.md; status=$$?; tail -n 2 docs/MUTANTS.md; exit $$status

# The package as a third party installs it: a wheel into a fresh venv outside the checkout, the
# console script's exit codes and `pytest -p transformer_conformance` (tests/meta/test_installed.py).
installed: install
	$(PYTHON) -m pip install -q build
	TCS_INSTALLED=1 $(PYTEST) -p no:xdist tests/meta/test_installed.py $(ARGS)

# The mutation score of the torch/jax adapters (mutmut, the conformance suite as the tests, one
# process): docs/MUTATION.md. Hours for all five files; EVERY=N runs every N-th mutant of each file.
mutation: install
	$(PYTHON) -m pip install -q "mutmut==3.8.1"
	$(PYTHON) tools/mutation.py run $(if $(EVERY),--every $(EVERY)) $(ARGS)

# A wheel and an sdist in dist/, what `pip install transformer-conformance` installs.
dist: install
	$(PYTHON) -m pip install -q build
	$(PYTHON) -m build --outdir dist .

.PHONY: install conformance test lint sweep kernel oracle-speed mutants mutation installed dist thirdparty bench scorecard

# The semantics scorecard (docs/SCORECARD.md): the whole conformance suite on the built-in adapters
# (the `ci` profile: its float64 and refusal columns read every component; ~13 minutes on 2 cores)
# into results/scorecard/builtin; the table reads every report under results/scorecard/ (the
# third-party ones, from `make thirdparty`-style runs, committed there too).
scorecard: install
	$(VENV)/bin/transformer-conformance -n auto --profile ci --adapter numpy --adapter torch \
		--adapter jax --report results/scorecard/builtin $(ARGS); \
	$(PYTHON) -m transformer_conformance.scorecard results/scorecard/*/ --out docs/SCORECARD.md

# Third-party adapters (issue 6): keras on each backend (one per process) and HuggingFace Marian attention.
# Not part of `make test` / CI; each writes its report under thirdparty/. The HF attention modules'
# flex paths compile one inductor kernel per shape on CPU (~10 s each): HF_ATTENTION="..." to choose.
HF_ATTENTION ?= $(foreach f,llama mistral qwen2 gemma2,hf-$(f)-eager hf-$(f)-sdpa) hf-gpt_oss-eager \
	hf-llama-flex hf-gemma2-flex hf-gpt_oss-flex
HF_COMPONENTS = multi_head_attention scaled_dot_product_attention grouped_query_attention \
	variant_attention
thirdparty: install
	$(PYTHON) -m pip install -q -e ".[thirdparty]"
	KERAS_BACKEND=jax $(VENV)/bin/transformer-conformance -n auto --adapter keras --report thirdparty/keras-jax $(ARGS)
	KERAS_BACKEND=torch $(VENV)/bin/transformer-conformance -n auto --adapter keras --report thirdparty/keras-torch $(ARGS)
	$(VENV)/bin/transformer-conformance -n auto --adapter hf-eager --adapter hf-sdpa --adapter hf-rope --adapter hf-generate --report thirdparty/hf $(ARGS)
	$(VENV)/bin/transformer-conformance -n auto --adapter onnxruntime --adapter ort-gqa --adapter ort-mha --report thirdparty/onnxruntime $(ARGS)
	$(VENV)/bin/transformer-conformance -n auto $(foreach a,$(HF_ATTENTION),--adapter $(a)) $(addprefix --component ,$(HF_COMPONENTS)) --report thirdparty/hf-attention $(ARGS)

# Benchmarks (issue 7): the CPU sweep anywhere, the GPU sweep too where torch sees a GPU; writes
# results/<machine>/benchmark.json, BENCHMARKS.md and plots. Never part of `make test` or CI.
# Installs only what is missing, so a GPU machine's own CUDA torch/jax are kept.
bench:
	test -x $(PYTHON) || python3 -m venv --system-site-packages $(VENV)
	$(PYTHON) -c "import torch, jax, flax, pytest_benchmark, matplotlib" 2>/dev/null || $(MAKE) install
	$(eval RESULTS := results/$(shell $(PYTHON) -m benchmarks.machine))
	mkdir -p $(RESULTS)
	$(PYTEST) tests/benchmarks -m benchmark -p no:xdist --benchmark-json=$(RESULTS)/benchmark.json \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name $(ARGS)
	$(PYTHON) -m benchmarks.report $(RESULTS)/benchmark.json
