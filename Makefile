# Two entry points do all set-up on a fresh machine:
#   make demo   train -> export -> simulate on chip, on a small default
#   make test   the default (fast) test suite
#   make notebooks  re-execute notebooks/*.ipynb in place at full settings (figures, numbers)
# Set-up: a virtual environment in .venv with torch 2.13.0 (CPU build), the project with its
# extras, lava-nc 0.10.0 / lava-dl 0.6.0 (no-deps: they declare Python < 3.11; their real needs
# are the project's `lava` extra), the NIR peers snnTorch / Norse / SpikingJelly (the `interop`
# extra; Norse and SpikingJelly no-deps, they would pull CUDA torchvision), and Debian's
# Fashion-MNIST.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neuroratebp-installed
FMNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUN ?= runs/demo

.PHONY: setup demo test test-slow notebooks clean

setup: $(STAMP) $(FMNIST)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[lava,plot,test,interop]"
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
	$(BIN)/pip install --quiet --no-deps norse==1.1.0 spikingjelly==2.0.0
	touch $@

$(FMNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

# The demo's run directory is scratch: it is replaced on every `make demo`.
demo: setup
	rm -rf $(RUN)
	$(BIN)/neuroratebp train models/fmnist_mlp.toml --method rate_m --timesteps 4 --epochs 1 -o $(RUN)
	$(BIN)/neuroratebp export $(RUN)/model.pt --to nir -o $(RUN)/model.nir
	$(BIN)/neuroratebp check $(RUN)/model.nir --target loihi2
	$(BIN)/neuroratebp simulate $(RUN)/model.nir --target loihi2 --backend emulator --precision fixed
	$(BIN)/neuroratebp simulate $(RUN)/model.nir --target loihi2 --backend lava --precision fixed --limit 100

test: setup
	$(BIN)/pytest

test-slow: setup
	$(BIN)/pytest -m slow

# Every number and figure in the notebooks comes from this run (and the benchmarks' JSON files):
# re-run it after changing the code or re-running a benchmark; tests/test_notebooks.py checks it.
notebooks: setup
	$(BIN)/python notebooks/execute.py

clean:
	rm -rf $(VENV) runs
