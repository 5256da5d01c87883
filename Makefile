# `make demo` and `make test` both set up from nothing: they create .venv when it is
# missing and install fsqtok into it. PyTorch is pinned to the releases this project is
# tested against (a CPU machine needs nothing else).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
STAMP  := $(VENV)/.fsqtok-installed

.PHONY: setup test bench clean demo test-distributed reproduce-maskgit reproduce-uvim

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The main job: train an image tokenizer on the built-in real samples (offline, < 10 min on a
# 2-core CPU), evaluate it on held-out samples and write demo/ (report, grid, Hub-format tokenizer).
demo: $(STAMP)
	$(PY) scripts/demo.py --output-dir demo

# Two CPU processes over gloo through `accelerate launch`: tokenizer, MaskGIT and UViM recipes (training,
# exact resume, gathered evaluation).
test-distributed: $(STAMP)
	FSQTOK_TEST_DISTRIBUTED=1 $(PY) -m pytest -q tests/recipes/test_distributed_recipe.py tests/recipes/test_distributed_maskgit.py tests/recipes/test_uvim_distributed.py

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/bench_quantizers.py
	$(PY) benchmarks/bench_tokenizers.py --write

# Issue 11's reproduction (about 2 h on 2 cores, resumable: rerun to continue): MaskGIT on FSQ against VQ
# tokens of Fashion-MNIST and the codebook-size study side by side, then the BENCHMARKS.md tables and figure.
# Debian: dataset-fashion-mnist (the 70,000 real items the tokenizers, MaskGIT and the classifier train on).
reproduce-maskgit: $(STAMP)
	sh scripts/ensure_debian_packages.sh dataset-fashion-mnist
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m benchmarks.reproduce.maskgit --part main --until classifier
	$(PY) -m benchmarks.reproduce.maskgit --part study & study=$$!; \
	  $(PY) -m benchmarks.reproduce.maskgit --part main; main=$$?; wait $$study && test $$main -eq 0
	$(PY) -m benchmarks.reproduce.maskgit_report --figure docs/codebook_study.png --copy-to benchmarks/results

# Issue 12's reproduction (about 1.5 h on 2 cores, resumable: rerun to continue): UViM stages I and II with FSQ
# against VQ (with and without splitting) for depth, colorization and panoptic, then the BENCHMARKS.md tables.
# Debian: dataset-fashion-mnist (the items of the panoptic scenes) and visp-images-data (the real castel depth frames).
reproduce-uvim: $(STAMP)
	sh scripts/ensure_debian_packages.sh dataset-fashion-mnist visp-images-data
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m benchmarks.reproduce.uvim --write-benchmarks --copy-to benchmarks/results

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
