# chromaflow: every set-up step lives here, so a fresh machine needs only `make demo` / `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/constraints.txt
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg
export TS_DISABLE_TOKEN_AUTHORIZATION :=

.PHONY: install test test-slow test-browser lint demo bench bench-gpu image browser clean lock mutate

install: $(STAMP)

# Re-installs when the pins or the project metadata change. The venv is ~6 GB (torch's x86_64
# wheel carries CUDA), so nothing extra goes to disk: no wheel cache (a second copy of every
# downloaded wheel) and no ahead-of-time .pyc (~0.4 GB; Python writes the ones it imports).
$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-cache-dir --no-compile \
		-c $(LOCK) -e '.[dev]'
	touch $@

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

# Mutation testing (mutmut) of the modules that hold the thesis's numbers; survivors in runs/mutate/report.md.
# Not part of `make test`: one pytest run per mutant. MODULES="constants metrics" limits it.
mutate: install
	$(BIN)/python tests/mutate.py $(MODULES)

test-browser: install browser
	$(BIN)/pytest -q -m browser

lint: install
	$(BIN)/ruff check src tests bench components pipelines serving
	$(BIN)/ruff format --check src tests bench components pipelines serving
	PYTHONPATH=src $(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

demo: install
	$(BIN)/chromaflow demo --out runs/demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# One GPU: per-stage table of the training step (eccv16 + siggraph17, width 1, 64 and 176 px, batch 256, bf16),
# network-only ceiling, engine, plain-loop anchor and MFU, in one run (< 4 min). Needs no mlflow/kfp/dvc.
bench-gpu:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) bench/train_step.py --stages

# Debian's Chromium for the browser tests (browser builds cannot be downloaded here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

image:
	@if command -v podman >/dev/null; then podman build -t chromaflow:latest .; \
	elif command -v docker >/dev/null; then docker build -t chromaflow:latest .; \
	else echo "no podman or docker on this machine"; exit 1; fi

# Refresh the lock from a working venv (run after changing dependencies in pyproject.toml).
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > $(LOCK)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
