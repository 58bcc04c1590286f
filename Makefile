# The two commands a newcomer needs: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow sweep quality style bench clean

install: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull GBs of CUDA packages on a CPU box.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[eval,plot,dev]"
	touch $(STAMP)

demo: install
	$(PY) recipes/tiny.py

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

sweep: install
	$(PY) scripts/architecture_sweep.py --out docs/architectures.md

bench: install
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_slice.py
	$(PY) benchmarks/bench_inference.py --threads 1

quality: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

style: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) outputs .pytest_cache
