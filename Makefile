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

.PHONY: install test test-slow test-browser lint demo bench bench-gpu image image-cpu base-image podman wheel test-image push browser clean lock mutate

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

# ---- the image (see docs/cluster.md) --------------------------------------------------------------------------
# One version (src/chromaflow/__init__.py, also pyproject's via setuptools) names every tag the components use:
# chromaflow:$(VERSION) (CPU steps) and chromaflow:$(VERSION)-cuda (the steps that request a GPU).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/chromaflow/__init__.py)
IMAGE ?= chromaflow
BASE_IMAGE ?= localhost/chromaflow-base:bookworm
# torch for the CPU tag; "" takes torch from the default index (PyPI's build carries CUDA and runs on CPUs too)
CPU_TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# local wheel folders mounted into the build as pip --find-links (this machine's torch/CUDA files); none elsewhere
WHEELS ?= $(wildcard /opt/pypi-more/files /opt/pypi/files)
CA ?= $(or $(PIP_CERT),/etc/ssl/certs/ca-certificates.crt)
PODMAN ?= podman --storage-driver=$(STORAGE_DRIVER)
# overlay: layers are diffs (vfs copies the whole 7 GB tree per layer and per container: 21 min builds, 3.5 min
# per `podman run` here); STORAGE_DRIVER=vfs where the kernel cannot mount overlay
STORAGE_DRIVER ?= overlay
BUILD = $(PODMAN) build --isolation=chroot --network=host --secret id=ca,src=$(CA) \
	--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	--build-arg FIND_LINKS="$(WHEELS)" $(foreach w,$(WHEELS),-v $(w):$(w):ro) \
	--build-arg WHEEL_SHA256=$$(sha256sum build/wheel/chromaflow-$(VERSION)-py3-none-any.whl | cut -d' ' -f1)

podman:
	@command -v podman >/dev/null || (apt-get update -qq && apt-get install -y -qq podman >/dev/null)

# Offline base: Debian bookworm's own python3.11 + Java 17 (TorchServe), no registry needed (~2-4 min).
base-image: podman
	@command -v mmdebstrap >/dev/null || (apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null)
	mmdebstrap --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
		--include=python3,python3-venv,ca-certificates,openjdk-17-jre-headless \
		--customize-hook='rm -rf "$$1"/var/lib/apt/lists/* "$$1"/var/cache/apt/*' \
		bookworm build/base-rootfs.tar
	$(PODMAN) import --change 'CMD ["/bin/bash"]' build/base-rootfs.tar $(BASE_IMAGE)
	rm -f build/base-rootfs.tar

wheel:
	rm -rf build/wheel build/lib build/bdist.* src/*.egg-info && mkdir -p build/wheel
	$(BIN)/pip wheel --no-deps --no-build-isolation -w build/wheel .

image: podman wheel
	$(BUILD) --build-arg VARIANT=cpu --build-arg TORCH_INDEX=$(CPU_TORCH_INDEX) -t $(IMAGE):$(VERSION) .
	$(BUILD) --build-arg VARIANT=cuda -t $(IMAGE):$(VERSION)-cuda .

# Push both tags to a registry: make push IMAGE=registry.example.org/ml/chromaflow (after make image with the same
# IMAGE), then compile with CHROMAFLOW_IMAGE_REPO set to it (docs/cluster.md)
push:
	$(PODMAN) push $(IMAGE):$(VERSION)
	$(PODMAN) push $(IMAGE):$(VERSION)-cuda

# The image tests (-m image): base, CPU image, then the steps, TorchServe and the layer scan inside it.
CONTAINERS_CONF ?= $(CURDIR)/tests/image/containers.conf
test-image: install
	@$(PODMAN) image exists $(BASE_IMAGE) || $(MAKE) base-image
	$(MAKE) image-cpu
	CONTAINERS_CONF=$(CONTAINERS_CONF) CHROMAFLOW_PODMAN="$(PODMAN)" CHROMAFLOW_IMAGE=$(IMAGE):$(VERSION) \
		$(BIN)/pytest -q -m image -s

image-cpu: podman wheel
	$(BUILD) --build-arg VARIANT=cpu --build-arg TORCH_INDEX=$(CPU_TORCH_INDEX) -t $(IMAGE):$(VERSION) .

# Refresh the lock from a working venv (run after changing dependencies in pyproject.toml).
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > $(LOCK)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
