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

.PHONY: setup demo test test-all test-lowest bench clean

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

# The declared lower bounds kept honest (tests/README.md, "Lowest versions"): a second venv OUTSIDE the repo with every
# dependency of pyproject.toml (and the onnx and lora extras) pinned `==` its lower bound by tests/lowest_pins.py
# (pyproject.toml is the one owner of the bounds), a few minutes of tests in it, and the same tiny checkpoints' logits
# under the newest transformers (.venv) and the lowest, which must agree within 1e-5. Not part of `make test`/CI.
LOWEST_VENV ?= $(HOME)/.cache/frame-aligned-ser/lowest-venv
LOWEST_PY := $(LOWEST_VENV)/bin/python
LOWEST_TESTS ?= tests/test_modeling.py tests/trainer/test_trainer.py tests/trainer/test_host_syncs.py \
	tests/training/test_fixed_arguments.py tests/publishing/test_hub.py

$(LOWEST_VENV)/.installed: pyproject.toml tests/lowest_pins.py
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_PY) -m pip install --quiet --upgrade pip
	$(LOWEST_PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PYTHON) tests/lowest_pins.py --extras onnx,lora > $(LOWEST_VENV)/pins.txt
	$(LOWEST_PY) -m pip install --quiet -r $(LOWEST_VENV)/pins.txt pytest pytest-timeout parameterized
	$(LOWEST_PY) -m pip install --quiet --no-deps -e .
	touch $@

test-lowest: setup $(LOWEST_VENV)/.installed
	OMP_NUM_THREADS=1 $(LOWEST_PY) -m pytest $(LOWEST_TESTS) -m "not heavy" -p no:cacheprovider
	rm -rf $(LOWEST_VENV)/logits
	OMP_NUM_THREADS=1 $(PY) tests/lowest_logits.py save $(LOWEST_VENV)/logits
	OMP_NUM_THREADS=1 $(PY) tests/lowest_logits.py run $(LOWEST_VENV)/logits $(LOWEST_VENV)/logits/newest.npz
	OMP_NUM_THREADS=1 $(LOWEST_PY) tests/lowest_logits.py run $(LOWEST_VENV)/logits $(LOWEST_VENV)/logits/lowest.npz
	$(PY) tests/lowest_logits.py compare $(LOWEST_VENV)/logits/newest.npz $(LOWEST_VENV)/logits/lowest.npz

bench: setup
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) runs
