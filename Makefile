# `make demo` and `make test` both set up from nothing: they create .venv when it is
# missing and install fsqtok into it. PyTorch is pinned to the releases this project is
# tested against (a CPU machine needs nothing else).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
STAMP  := $(VENV)/.fsqtok-installed

.PHONY: setup test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_quantizers.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
