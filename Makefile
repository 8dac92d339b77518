# kr_lightning: each target is one command; logic lives in Python.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATASETS ?= breastmnist,pneumoniamnist,retinamnist,dermamnist,bloodmnist,organcmnist
SEEDS    ?= 0
PROFILE  ?= gpu
TRAINER_ARGS ?=
OVERLAYS ?=
SHARED_GENERATOR ?= false

.PHONY: help install test test-all lint format clean quickstart reproduce-medmnist bench

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[dev]' && touch $@

install: $(VENV)/.installed  ## create .venv (if missing) and install kr_lightning with its dev tools

test: install  ## the fast test suite (CPU; set KR_DATA_ROOT to the folder with breastmnist.npz)
	$(PY) -m pytest -q

test-all: install  ## every test that can run here, slow ones included
	$(PY) -m pytest -q -m ''

lint: install  ## ruff lint + format check
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: install  ## ruff format + autofix
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

quickstart: install  ## the whole KR pipeline on the embedded digits dataset (CPU, no network), prints the table
	$(PY) -m kr_lightning pipeline --datasets='[digits]' --profile=quick --name=quickstart

reproduce-medmnist: install  ## all stages for DATASETS x SEEDS (PROFILE=gpu|cpu|quick, any dataset with experiments/data/<flag>.yaml; TRAINER_ARGS=--trainer.devices=8,...; OVERLAYS=folder,folder; SHARED_GENERATOR=true: one generator for all seeds), resumable -> results/medmnist.md
	$(PY) -m kr_lightning pipeline --datasets='[$(DATASETS)]' --seeds='[$(SEEDS)]' --profile=$(PROFILE) --name=medmnist --trainer_args='[$(TRAINER_ARGS)]' --overlays='[$(OVERLAYS)]' --shared_generator=$(SHARED_GENERATOR)

bench: install  ## speed benchmarks (JSON lines), see benchmarks/README.md
	$(PY) benchmarks/run_all.py

clean:  ## remove run folders and caches (keeps .venv)
	rm -rf runs results .pytest_cache .ruff_cache
