#!/usr/bin/env bash
# Reproduces the shipped model 'squeeze_colorizer' (sha256 3b4ae9e7658e...): the "command" list of its
# card.json, in order. Run from the repository root after `make install`.
set -euo pipefail
if [ -x .venv/bin/chromaflow ]; then PATH="$PWD/.venv/bin:$PATH"; fi
rm -rf runs/squeeze/unz runs/squeeze/pick && mkdir -p runs/squeeze/unz && unzip -q -o ../shared/datasets/tiny-imagenet-200-subset.zip -d runs/squeeze/unz && (cd runs/squeeze/unz/tiny-imagenet-200 && for sn in train:110 val:10; do for d in ${sn%:*}/*/; do mkdir -p ../../pick/$d && LC_ALL=C ls $d | LC_ALL=C sort | head -n ${sn#*:} | while read f; do ln -f $d$f ../../pick/$d$f; done; done; done)
chromaflow prepare --source runs/squeeze/pick --out runs/squeeze/tin --max-side 64 --workers 2
chromaflow stats --data runs/squeeze/tin --out runs/squeeze/tin_stats --split train
chromaflow train --task colorization --model squeeze_colorizer --width 1.0 --trunk ../shared/datasets/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth --trunk-lr-mult 0.2 --data runs/squeeze/tin --prior runs/squeeze/tin_stats/prior.npy --loss rebalanced --crop 128 --out runs/squeeze/train --steps 2500 --batch-size 128 --lr 5e-4 --schedule cosine --warmup 150 --seed 0 --device cuda --amp bf16 --channels-last --workers 8 --val-every 625 --ckpt-every 250 --log-every 50
chromaflow evaluate --task colorization --weights squeeze=runs/squeeze/train/model.safetensors --weights eccv16_w0.25=weights/colorization/model.safetensors --data runs/squeeze/tin --split val --out runs/squeeze/eval_128_tin --size 128 --prior runs/squeeze/tin_stats/prior.npy --t-sweep "" --gallery 0 --batch-size 64
chromaflow ship --name squeeze_colorizer --train runs/squeeze/train --evaluation runs/squeeze/eval_128_tin --data runs/squeeze/tin --out-root runs/reproduce/weights
