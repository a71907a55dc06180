# The two commands of the README: `make demo` (set up + two-stage training on the bundled corpus) and
# `make test` (set up + the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Without a GPU, torch 2.13.0 is installed first (a CPU build where one is on the package index or local disk);
# override with e.g. `make setup TORCH_SPEC=torch TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"`.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
TORCH_PIP_ARGS ?=
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) train.py --config configs/demo.yaml --output-dir $(DEMO_OUT)

# Two workers (the tests run one thread each: a 2-core CI machine is used fully); tests sharing one trained run
# (`xdist_group`) stay in one worker.
test: setup
	$(PY) -m pytest tests -n 2 --dist loadgroup -m "not heavy"

# Everything, the `heavy` end-to-end runs included (tests/README.md lists them).
test-all: setup
	$(PY) -m pytest tests -n 2 --dist loadgroup

bench: setup
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) runs
