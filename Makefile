# The two commands a newcomer needs: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The exact versions this project was last tested with (`make lock` refreshes them from a green run).
CONSTRAINTS := constraints.txt
# torch is pinned and installed first: an unpinned torch would pull GBs of CUDA packages on a CPU box.
TORCH := torch==2.13.0
# Drift check: a second venv with the newest versions setup.cfg's ranges allow (torch stays at $(TORCH)).
LATEST := .venv-latest
LATEST_PY := $(LATEST)/bin/python

.PHONY: install demo test test-slow test-latest test-pythons test-oldest tools lock sweep quality style bench gpu-check clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) $(TORCH)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[eval,plot,dev]"
	touch $(STAMP)

demo: install
	$(PY) recipes/tiny.py

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

# Not a prerequisite of anything: it installs whatever the registries serve today, so it can go red while
# `make test` (locked) stays green. That is its purpose: see the drift before a fresh clone does.
test-latest:
	test -x $(LATEST_PY) || $(PYTHON) -m venv $(LATEST)
	$(LATEST_PY) -m pip install -q --upgrade pip
	$(LATEST_PY) -m pip install -q --upgrade --upgrade-strategy eager -e ".[eval,plot,dev]" "$(TORCH)"
	$(LATEST_PY) -c "import accelerate, datasets, huggingface_hub, lm_eval, torch, transformers as t; \
	print('test-latest:', *(f'{m.__name__} {m.__version__}' for m in (t, torch, accelerate, datasets, huggingface_hub)), \
	'lm_eval', __import__('importlib.metadata').metadata.version('lm_eval'))"
	$(LATEST_PY) -m pytest -q

# Pin what `make test-latest` just passed with. Local version labels (torch's +cpu) are dropped so that the
# same file serves CPU and CUDA builds of the pinned version.
lock: test-latest
	{ echo "# The exact versions inheritune-hf was last tested with: \`make install\` installs them, \`make lock\`"; \
	  echo "# refreshes them from a green \`make test-latest\` ($$(date -u +%F), Python $$($(LATEST_PY) -c 'import platform; print(platform.python_version())'))."; \
	  $(LATEST_PY) -m pip freeze --all --exclude-editable | sed -e 's/+[^ ]*$$//'; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	@echo "wrote $(CONSTRAINTS): run 'make test' to install it into $(VENV)"

# Every supported interpreter (3.11 to 3.13) and the oldest versions setup.cfg allows, each in its own venv under
# .nox/ (noxfile.py). Needs python3.11 ... python3.13 on PATH; with pyenv, the installed 3.11-3.13 are made visible.
# Extra pytest arguments: ARGS="tests/test_inherit.py -x".
TOOLS := .venv-tools
NOX := $(TOOLS)/bin/nox
TOOLS_STAMP := $(TOOLS)/.installed
ifneq ($(shell command -v pyenv 2>/dev/null),)
test-pythons test-oldest: export PYENV_VERSION ?= $(shell pyenv version-name):$(shell pyenv versions --bare | grep -E '^3\.1[1-3]\.[0-9]+$$' | tr '\n' ':' | sed 's/:$$//')
endif

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q nox==2026.10.20 uv==0.13.9
	touch $(TOOLS_STAMP)

test-pythons: tools
	$(NOX) -s tests -- $(ARGS)

test-oldest: tools
	$(NOX) -s tests-oldest -- $(ARGS)

sweep: install
	$(PY) scripts/architecture_sweep.py --out docs/architectures.md

bench: install
	$(PY) benchmarks/bench_import.py
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_slice.py
	$(PY) benchmarks/bench_inference.py --threads 1

# On one CUDA GPU, under 8 minutes: train throughput and MFU vs a plain loop, the recipe smoke in bf16 and under
# FSDP, analyze_attention vs a forward, distillation, collapse tracking. Without CUDA it says so and exits 0.
# Not `install`: it runs on the python at hand (PYTHON=... when given, else an existing .venv, else python3), so a
# user's CUDA torch is never replaced by the pinned CPU one and no registry is asked. `make test` runs its rows on
# tiny shapes on CPU (tests/test_gpu_check.py). GPU_CHECK_FLAGS: e.g. --rows train,loop --log outputs/gpu.log
GPU_PYTHON := $(if $(filter command line environment,$(origin PYTHON)),$(PYTHON),$(if $(wildcard $(PY)),$(PY),$(PYTHON)))
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py $(GPU_CHECK_FLAGS)

quality: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

style: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .nox outputs .pytest_cache
