#!/usr/bin/env bash
# Train the squeeze_colorizer (ImageNet SqueezeNet-1.1 trunk + U-Net decoder, issue 22) on one GPU with the
# project's own `chromaflow train`, then evaluate it beside the shipped eccv16 w1/4 on held-out Tiny-ImageNet
# val images with `chromaflow evaluate`. Budget: <= 5 min wall on an H200 (bf16, channels_last, 8 workers).
#
# Inputs (GPU_DIR, default <repo>/.gpu; about 53 MB, carried to the GPU machine):
#   tin/                 `chromaflow prepare --max-side 64` of 22,000 Tiny-ImageNet train images (110 per class)
#                        and 2,000 of its val images (10 per class; held out: no model here trained on them)
#   tin_prior.npy        `chromaflow stats --split train` of tin/ (rebalancing prior; the TIN-prior AuC column)
#   squeezenet1_1.pth    ../shared/datasets/squeezenet1_1/squeezenet1_1_caffe_folded_torchvision_norm_tvkeys.pth
#   src_overlay/         optional: files of src/ newer than the checkout's (copied over a scratch copy of src/)
#   tin_quick/           optional: a 36-image prepared folder for QUICK=1
# Outputs under OUT (default $GPU_DIR/out): model.safetensors (fp16), metrics.json, history.csv, timing.json,
# train.log, eval_<size>_<prior>/{metrics.json,report.md}, env.txt.
#
#   bash .gpu/run.sh                  # on the GPU machine (the lead: carry [".gpu"])
#   QUICK=1 bash bench/gpu_train_backbone.sh   # CPU smoke test: 4 steps, 36 images, same commands
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GPU_DIR="${GPU_DIR:-$ROOT/.gpu}"
OUT="${OUT:-$GPU_DIR/out}"
WORK="${WORK:-$(mktemp -d /tmp/chromaflow-gpu.XXXXXX)}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
QUICK="${QUICK:-0}"
mkdir -p "$OUT" "$WORK"

# The code: the checkout's src/ with src_overlay/ copied over it (a package cannot be split over two
# PYTHONPATH entries, so the overlay is merged into a scratch copy rather than prepended).
mkdir -p "$WORK/src"
cp -r "$ROOT/src/chromaflow" "$WORK/src/"
if [ -d "$GPU_DIR/src_overlay" ]; then
  cp -r "$GPU_DIR/src_overlay/." "$WORK/src/"
  echo "src_overlay: $(cd "$GPU_DIR/src_overlay" && find . -name '*.py' | sort | tr '\n' ' ')"
fi
export PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"  # $WORK/src first: its chromaflow wins
export PYTHONUNBUFFERED=1

if [ "$QUICK" = 1 ]; then
  DATA="${DATA:-$GPU_DIR/tin_quick}"; STEPS="${STEPS:-4}"; BATCH="${BATCH:-8}"; WORKERS="${WORKERS:-2}"
  DEVICE="${DEVICE:-cpu}"; AMP="${AMP:-off}"; CL="--no-channels-last"; VAL_EVERY=2; CKPT_EVERY=2; WARMUP=1
  TRAIN_TIMEOUT="${TRAIN_TIMEOUT:-900}"; EVAL_TIMEOUT="${EVAL_TIMEOUT:-600}"; EVAL_SIZES="${EVAL_SIZES:-64}"
else
  DATA="${DATA:-$GPU_DIR/tin}"; STEPS="${STEPS:-2500}"; BATCH="${BATCH:-128}"; WORKERS="${WORKERS:-8}"
  DEVICE="${DEVICE:-cuda}"; AMP="${AMP:-bf16}"; CL="--channels-last"; VAL_EVERY=625; CKPT_EVERY=250; WARMUP=150
  TRAIN_TIMEOUT="${TRAIN_TIMEOUT:-170}"; EVAL_TIMEOUT="${EVAL_TIMEOUT:-45}"; EVAL_SIZES="${EVAL_SIZES:-128 64}"
fi
CROP="${CROP:-128}"           # 64-px Tiny-ImageNet upscaled to 128: trunk features at 8x8, ab grid 32x32
WIDTH="${WIDTH:-1.0}"         # decoder 256 ch: 4.18M params, 8.0 MiB in fp16
LR="${LR:-5e-4}"              # decoder (fresh)
TRUNK_LR_MULT="${TRUNK_LR_MULT:-0.2}"  # trunk (pretrained) at 1e-4
RUN="$WORK/train"

{
  echo "date: $(date -u +%FT%TZ)"; echo "python: $PY"; "$PY" --version
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "settings: steps=$STEPS batch=$BATCH crop=$CROP width=$WIDTH lr=$LR trunk_lr_mult=$TRUNK_LR_MULT workers=$WORKERS"
} | tee "$OUT/env.txt"

set +e
timeout "$TRAIN_TIMEOUT" "$PY" -m chromaflow.cli train --task colorization \
  --model squeeze_colorizer --width "$WIDTH" --trunk "$GPU_DIR/squeezenet1_1.pth" --trunk-lr-mult "$TRUNK_LR_MULT" \
  --data "$DATA" --prior "$GPU_DIR/tin_prior.npy" --loss rebalanced --crop "$CROP" \
  --out "$RUN" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --schedule cosine --warmup "$WARMUP" --seed 0 \
  --device "$DEVICE" --amp "$AMP" $CL --workers "$WORKERS" --val-every "$VAL_EVERY" --ckpt-every "$CKPT_EVERY" \
  --log-every 50 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
set -e
echo "train exit status: $rc"

if [ ! -f "$RUN/model.safetensors" ] && [ ! -f "$RUN/checkpoint.pt" ]; then
  echo "train produced neither model.safetensors nor a checkpoint (exit status $rc): see $OUT/train.log" >&2
  exit 1
fi
# The weights in fp16 (the shipped format; <= 16 MB). A run cut by the timeout leaves its last checkpoint.
"$PY" - "$RUN" "$OUT/model.safetensors" "$WIDTH" <<'EOF'
import sys
from pathlib import Path

import torch

from chromaflow.models import create_model, load_weights, save_weights
from chromaflow.models.weights import load_state_strict
from chromaflow.train.engine import load_checkpoint

run, dst, width = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
if (run / "model.safetensors").is_file():
    model = load_weights(run / "model.safetensors")
    print(f"weights: {run / 'model.safetensors'} (finished run)")
else:
    ckpt = load_checkpoint(run / "checkpoint.pt")
    model = create_model("squeeze_colorizer", width=width)
    load_state_strict(model, ckpt["model"], source="checkpoint")
    print(f"weights: checkpoint of step {ckpt['step']} (run cut short)")
print("fp16 weights sha256", save_weights(model, dst, dtype=torch.float16))
EOF
for f in metrics.json history.csv timing.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done

# Held-out evaluation (thesis protocol, `chromaflow evaluate`): the trained model and the shipped eccv16 w1/4 on
# the same 2,000 Tiny-ImageNet val images, at network/eval size 128 (the new model's training scale) and 64
# (eccv16's), with the Tiny-ImageNet prior and with the ImageNet prior (the thesis's) for the rebalanced AuC.
for size in $EVAL_SIZES; do
  for prior in tin imagenet; do
    dir="$OUT/eval_${size}_${prior}"
    prior_arg=(); [ "$prior" = tin ] && prior_arg=(--prior "$GPU_DIR/tin_prior.npy")
    timeout "$EVAL_TIMEOUT" "$PY" -m chromaflow.cli evaluate --task colorization \
      --weights "squeeze=$OUT/model.safetensors" --weights "eccv16_w0.25=$ROOT/weights/colorization/model.safetensors" \
      --data "$DATA" --split val --out "$WORK/eval_${size}_${prior}" --size "$size" "${prior_arg[@]}" \
      --t-sweep "" --gallery 0 --batch-size 64 --device "$DEVICE" 2>&1 | tail -3 || echo "evaluate $size $prior failed"
    mkdir -p "$dir"
    for f in metrics.json report.md; do [ -f "$WORK/eval_${size}_${prior}/$f" ] && cp "$WORK/eval_${size}_${prior}/$f" "$dir/"; done
    echo "== held-out TIN val, size $size, prior $prior =="
    [ -f "$dir/report.md" ] && sed -n '1,30p' "$dir/report.md"
  done
done
ls -la "$OUT"
echo "done: $(date -u +%FT%TZ)"
