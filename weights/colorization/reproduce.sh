#!/usr/bin/env bash
# Reproduces the shipped model 'colorization' (sha256 bc5900a5df7a...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
chromaflow prepare --source "zip://tiny-imagenet-200::../shared/datasets/tiny-imagenet-200-subset.zip" --out runs/ship/tin --max-side 64 --workers 2
chromaflow stats --data runs/ship/tin --out runs/ship/tin_stats --split train
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship/auto --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 1e-3 --schedule cosine --warmup 100 --steps 1500 --seed 0 --ckpt-every 200 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship2/auto --init runs/ship/auto/model.safetensors --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 1e-3 --schedule cosine --warmup 100 --steps 6500 --seed 1 --ckpt-every 250 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship3/auto --init runs/ship2/auto/model.safetensors --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 5e-4 --schedule cosine --warmup 100 --steps 9500 --seed 2 --ckpt-every 250 --log-every 50 --workers 0
chromaflow evaluate --task colorization --weights runs/ship3/auto/model.safetensors --data runs/ship/tin --out runs/ship3/auto_eval --prior runs/ship/tin_stats/prior.npy --size 64 --max-images 1000
chromaflow ship --name colorization --train runs/ship/auto --train runs/ship2/auto --train runs/ship3/auto --evaluation runs/ship3/auto_eval --data runs/ship/tin --out-root runs/reproduce/weights
