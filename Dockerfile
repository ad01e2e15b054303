# syntax=docker/dockerfile:1.4
# chromaflow: the image every KFP component runs in. Tags (one version, chromaflow.__version__):
#   chromaflow:<version>        CPU steps (VARIANT=cpu, torch from TORCH_INDEX, default PyTorch's CPU index)
#   chromaflow:<version>-cuda   steps that request a GPU (VARIANT=cuda, torch from PyPI: the CUDA build)
#
#   make base-image   # offline base from Debian packages (mmdebstrap: python3.11, Java 17) -> chromaflow-base
#   make image        # = make wheel, then podman build per variant, e.g.:
#   podman build --secret id=ca,src="$PIP_CERT" --build-arg BASE_IMAGE=localhost/chromaflow-base:bookworm \
#       --build-arg VARIANT=cuda --build-arg VERSION=0.1.0 -t chromaflow:0.1.0-cuda .
#
# The build context is build/wheel/ (the project's wheel, `make wheel`) and requirements/constraints.txt
# (the lock), both bind-mounted, never copied: the image holds the installed wheel and its locked
# dependencies, no sources, tests, .git, runs or caches. A CA bundle for a TLS-intercepting proxy comes in
# as the build secret `ca` (mounted for the pip step only, never in a layer); FIND_LINKS names local wheel
# folders mounted into the build (`podman build -v DIR:DIR:ro`) for sites whose torch files lie on disk.

ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="chromaflow" \
      org.opencontainers.image.description="Zhang-2018 image synthesis (colorization, split-brain, LPIPS) as a reproducible MLOps system" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-2-Clause" \
      org.opencontainers.image.source="https://github.com/chromaflow/chromaflow" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONHASHSEED=0 MPLBACKEND=Agg \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Java 17 for TorchServe's frontend (already in the mmdebstrap base; apt only on a python:slim base);
# the non-root user every step runs as
RUN if ! command -v java >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 chromaflow \
    && useradd --system --uid 10001 --gid chromaflow --create-home --home-dir /home/chromaflow chromaflow
ARG TORCH_INDEX=""
ARG FIND_LINKS=""
# torch/torchvision first, in a layer of their own (from TORCH_INDEX when set: a local "+cpu" version satisfies the
# lock's "==" pins); `python3 -m pip` of the venv: the base may have no `pip`
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=bind,source=requirements/constraints.txt,target=/mnt/constraints.txt \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && export PIP_FIND_LINKS="${FIND_LINKS}" \
    && python3 -m venv /opt/venv \
    && python3 -m pip install -c /mnt/constraints.txt \
        ${TORCH_INDEX:+--index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple} \
        "torch==2.14.1" "torchvision==0.29.1"
# then the wheel with the lock as constraints. WHEEL_SHA256 (make passes it) is checked, and as an ARG of this RUN
# it is part of the layer's cache key: a changed wheel reinstalls (a bind mount's content is not in the key)
ARG WHEEL_SHA256=""
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=bind,source=build/wheel,target=/mnt/wheel \
    --mount=type=bind,source=requirements/constraints.txt,target=/mnt/constraints.txt \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && export PIP_FIND_LINKS="${FIND_LINKS}" \
    && wheel=/mnt/wheel/chromaflow-"${VERSION}"-py3-none-any.whl \
    && if [ -n "${WHEEL_SHA256}" ]; then printf '%s  %s\n' "${WHEEL_SHA256}" "${wheel}" > /tmp/wheel.sha256 \
        && sha256sum -c /tmp/wheel.sha256 && rm /tmp/wheel.sha256; fi \
    && python3 -m pip install -c /mnt/constraints.txt "${wheel}" \
    && python3 -c "import chromaflow, components, pipelines; assert chromaflow.__version__ == '${VERSION}'"
# last, so variants whose torch comes from the same place share every layer above. The variant is also written by
# a RUN: buildah (podman 4.3) keys a RUN's cache on its ARG values but a LABEL's on its unexpanded text, so a
# LABEL alone would hand the CUDA tag the CPU build's cached image.
ARG VARIANT=cpu
RUN echo "${VARIANT}" > /opt/venv/chromaflow-variant
LABEL io.chromaflow.torch-variant="${VARIANT}"
USER 10001:10001
WORKDIR /home/chromaflow
CMD ["chromaflow", "--help"]
