#!/usr/bin/env bash
# Reproduces the shipped model 'guided' (sha256 0370103c864a...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
chromaflow prepare --source "zip://tiny-imagenet-200::../shared/datasets/tiny-imagenet-200-subset.zip" --out runs/ship/tin --max-side 64 --workers 2
OMP_NUM_THREADS=1 chromaflow train --task guided --data runs/ship/tin --out runs/ship/guided --width 0.125 --crop 64 --batch-size 16 --lr 1e-3 --schedule cosine --warmup 100 --steps 1600 --seed 0 --ckpt-every 200 --val-every 800 --log-every 50 --workers 0
OMP_NUM_THREADS=1 chromaflow train --task guided --data runs/ship/tin --out runs/ship2/guided --init runs/ship/guided/model.safetensors --width 0.125 --crop 64 --batch-size 16 --lr 1e-3 --schedule cosine --warmup 100 --steps 14000 --seed 1 --ckpt-every 500 --val-every 0 --log-every 50 --workers 0
chromaflow evaluate --task guided --weights runs/ship2/guided/model.safetensors --data runs/ship/tin --out runs/ship2/guided_eval --size 64 --patch 3 --points 0,1,2,5,10,20,50,100,200 --max-images 100
chromaflow ship --name guided --train runs/ship/guided --train runs/ship2/guided --evaluation runs/ship2/guided_eval --data runs/ship/tin --out-root runs/reproduce/weights
