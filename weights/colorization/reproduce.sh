#!/usr/bin/env bash
# Reproduces the shipped model 'colorization' (sha256 ffbe96b9e55e...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
chromaflow prepare --source "zip://tiny-imagenet-200::../shared/datasets/tiny-imagenet-200-subset.zip" --out runs/ship/tin --max-side 64 --workers 2
chromaflow stats --data runs/ship/tin --out runs/ship/tin_stats --split train
chromaflow prepare --source ../shared/datasets/bsds500/images --out runs/ship4/bsds --max-side 96 --workers 2
chromaflow prepare --source ../shared/datasets/imagenet-sample-1000 --out runs/ship4/in1k96 --max-side 96 --val-fraction 0.5 --workers 2
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship/auto --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 1e-3 --schedule cosine --warmup 100 --steps 1500 --seed 0 --ckpt-every 200 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship2/auto --init runs/ship/auto/model.safetensors --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 1e-3 --schedule cosine --warmup 100 --steps 6500 --seed 1 --ckpt-every 250 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --prior runs/ship/tin_stats --out runs/ship3/auto --init runs/ship2/auto/model.safetensors --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 5e-4 --schedule cosine --warmup 100 --steps 9500 --seed 2 --ckpt-every 250 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task colorization --data runs/ship/tin --extra-data runs/ship4/bsds --extra-data runs/ship4/in1k96 --prior runs/ship/tin_stats --out runs/ship4/auto --init runs/ship3/auto/model.safetensors --loss rebalanced --width 0.25 --crop 64 --batch-size 32 --lr 3e-4 --schedule cosine --warmup 100 --steps 9000 --seed 3 --ckpt-every 250 --log-every 50 --workers 0
chromaflow evaluate --task colorization --weights runs/ship4/auto/model.safetensors --data runs/ship/tin --out runs/ship4/auto_eval --prior runs/ship/tin_stats/prior.npy --size 64 --max-images 1000
chromaflow ship --name colorization --train runs/ship/auto --train runs/ship2/auto --train runs/ship3/auto --train runs/ship4/auto --evaluation runs/ship4/auto_eval --data runs/ship/tin --data runs/ship4/bsds --data runs/ship4/in1k96 --out-root runs/reproduce/weights
