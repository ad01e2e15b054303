#!/usr/bin/env bash
# Reproduces the shipped model 'bicyclegan' (sha256 16ecc371e785...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
chromaflow prepare-pairs --source ../shared/datasets/bsds500 --out runs/bsds/pairs --max-side 224
OMP_NUM_THREADS=1 chromaflow train --task bicyclegan --variant bicyclegan --data runs/bsds/pairs --out runs/bg/bsds128 --size 128 --width 0.25 --batch-size 2 --steps 8000 --lr 2e-4 --beta1 0.5 --beta2 0.999 --weight-decay 0 --log-every 200 --val-every 1000 --val-limit 100 --seed 0 --ckpt-every 500
chromaflow ship --name bicyclegan --train runs/bg/bsds128 --data runs/bsds/pairs --out-root runs/reproduce/weights
