#!/usr/bin/env bash
# Reproduces the shipped model 'guided' (sha256 7a65b45fb5fd...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
chromaflow prepare --source "zip://tiny-imagenet-200::../shared/datasets/tiny-imagenet-200-subset.zip" --out runs/ship/tin --max-side 64 --workers 2
chromaflow prepare --source ../shared/datasets/bsds500/images --out runs/ship4/bsds --max-side 96 --workers 2
chromaflow prepare --source ../shared/datasets/imagenet-sample-1000 --out runs/ship4/in1k96 --max-side 96 --val-fraction 0.5 --workers 2
OMP_NUM_THREADS=1 chromaflow train --task guided --data runs/ship/tin --extra-data runs/ship4/bsds --extra-data runs/ship4/in1k96 --out runs/ship5/guided --width 0.25 --crop 64 --batch-size 16 --lr 1e-3 --schedule cosine --warmup 100 --steps 24000 --seed 0 --ckpt-every 500 --val-every 8000 --log-every 50 --workers 0
chromaflow evaluate --task guided --weights runs/ship5/guided/model.safetensors --data runs/ship/tin --out runs/ship5/guided_eval --size 64 --patch 3 --points 0,1,2,5,10,20,50,100,200 --max-images 100
chromaflow ship --name guided --train runs/ship5/guided --evaluation runs/ship5/guided_eval --data runs/ship/tin --data runs/ship4/bsds --data runs/ship4/in1k96 --out-root runs/reproduce/weights
