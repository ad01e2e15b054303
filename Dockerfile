# syntax=docker/dockerfile:1
# chromaflow: the image every KFP component runs in (components.BASE_IMAGE = "chromaflow:<version>").
#
#   make image                                                       # CPU (default)
#   podman build --build-arg VARIANT=cu130 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 -t chromaflow:0.1.0-cu130 .
#
# Stage 1 builds a virtualenv (pins from requirements/constraints.txt, torch from TORCH_INDEX);
# stage 2 is python:3.11-slim + Java 17 (TorchServe) + that venv, run as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app
COPY requirements/constraints.txt requirements/constraints.txt
# torch/torchvision first, from the variant's index (CPU wheels carry no CUDA libraries; a local "+cpu"
# version satisfies the "==" pins of the lock)
RUN pip install --index-url "${TORCH_INDEX}" "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md ./
COPY src/ src/
# editable, at the path the runtime stage uses: the library finds the repo's serving/ templates beside src/
RUN pip install -c requirements/constraints.txt -e . \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="chromaflow" \
      org.opencontainers.image.description="Zhang-2018 image synthesis (colorization, split-brain, LPIPS) as a reproducible MLOps system" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-2-Clause" \
      org.opencontainers.image.source="https://github.com/chromaflow/chromaflow" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.chromaflow.torch-variant="${VARIANT}"
# Java 17 for TorchServe's frontend; nothing else from apt
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 chromaflow \
    && useradd --system --uid 10001 --gid chromaflow --create-home --home-dir /home/chromaflow chromaflow
COPY --from=build /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONHASHSEED=0 MPLBACKEND=Agg
WORKDIR /app
# the library (installed editable from /app/src) and what the steps read besides it: components/pipelines
# (KFP), promotion gates, serving templates, the committed sample, the shipped models (weights/)
COPY --chown=chromaflow:chromaflow pyproject.toml README.md ./
COPY --chown=chromaflow:chromaflow src/ src/
COPY --chown=chromaflow:chromaflow components/ components/
COPY --chown=chromaflow:chromaflow pipelines/ pipelines/
COPY --chown=chromaflow:chromaflow mlflow/ mlflow/
COPY --chown=chromaflow:chromaflow serving/ serving/
COPY --chown=chromaflow:chromaflow data/sample/ data/sample/
COPY --chown=chromaflow:chromaflow weights/ weights/
COPY --chown=chromaflow:chromaflow params.yaml dvc.yaml ./
RUN chown chromaflow:chromaflow /app
USER 10001:10001
CMD ["chromaflow", "--help"]
