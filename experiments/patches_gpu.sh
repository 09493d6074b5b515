#!/usr/bin/env bash
# Patch tokens against object tokens on one GPU (docs/patches.md), meant to fit one 10-minute
# device command (its GPU time is not measured: no GPU has been lent):
#
#     bash experiments/patches_gpu.sh [OUT_DIR]        # SIZE=tiny: the same at toy size, on a CPU
#
# 1. benchmarks/bench_patch.py, alone on the GPU: one batched CEM solve of 50 episodes with each
#    kind of world model at the cpu predictor's size and at the paper's (6 layers, 16 heads of
#    64, MLP 2048; 196 x 384 patches against 4 x 128 slots), with the ratio; then a training
#    step of the paper preset's C-JEPA and of its DINO-WM with --live-patches (the frozen
#    ViT's forward on the step's 1,024 frames, timed apart), benchmarks/bench_train.py;
# 2. the cpu preset's four models of the paper's Push-T table, trained and planned with the
#    protocol, DINO-WM on the 8 x 8 patch grid that a CPU session cannot train
#    (MODE=frame bash experiments/baselines_cpu.sh ran it at 4 x 4, on each frame's slots alone;
#    here the slots are video mode's, the default since 5cef7ea).
# A machine without pymunk or gymnasium installs them first as faithful_gpu.sh's header says.
# Results (logs and JSON, no checkpoints) are packed into OUT_DIR/results.tgz every 30 s.
set -u
RESULTS=${1:-logs}
OUT=logs/patches-gpu
mkdir -p "$OUT" "$RESULTS"
export PYTHONUNBUFFERED=1
SIZE=${SIZE:-full}
if [ "$SIZE" = tiny ]; then
  BENCH="--size tiny --episodes 2 --samples 20 --iterations 2"; BENCH_PAPER=$BENCH
  BENCH_TRAIN="--presets tiny --steps 2"
  PRESET="--preset tiny --policy weak"; PLAN="--seeds 0 --episodes 2 --samples 20 --topk 4 --iterations 2"
  DEVICE=cpu; WORKERS=2; GRID=4
else
  BENCH="--size cpu --episodes 50"; BENCH_PAPER="--size paper --episodes 50"
  BENCH_TRAIN="--presets paper --steps 10 --precision bf16"
  PRESET="--policy weak"; PLAN=""; DEVICE=cuda; WORKERS=8; GRID=8   # weak: beside the cpu baselines
fi
T0=$(date +%s)
note() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/timeline.log"; }
pack() {
  tar czf "$RESULTS/.results.tgz" --exclude='*.pt' --exclude='*.npy' runs/gpu-* "$OUT"/*.log 2>/dev/null
  mv "$RESULTS/.results.tgz" "$RESULTS/results.tgz"
}
(while sleep 30; do pack; done) &
PACKER=$!

python benchmarks/bench_patch.py $BENCH --device $DEVICE > "$OUT/bench-cpu-size.log" 2>&1
note "bench, cpu size (exit $?)"
python benchmarks/bench_patch.py $BENCH_PAPER --device $DEVICE > "$OUT/bench-paper-size.log" 2>&1
note "bench, paper size (exit $?)"
python benchmarks/bench_train.py $BENCH_TRAIN --models c-jepa dino-wm --live-patches --device $DEVICE \
  > "$OUT/bench-train-live.log" 2>&1
note "bench, training step with live patches (exit $?)"

python train.py $PRESET --until slots --out runs/gpu-data --device $DEVICE --workers $WORKERS --no-progress \
  > "$OUT/data.log" 2>&1
note "data, encoder and slots (exit $?)"
model() {  # model NAME TRAIN-FLAGS...: train.py, then plan.py with the protocol
  local name=$1; shift
  python train.py $PRESET --device $DEVICE --out "runs/gpu-$name" --no-progress "$@" > "$OUT/$name.log" 2>&1 &&
  python plan.py --ckpt "runs/gpu-$name" --device $DEVICE --gifs 0 $PLAN --out "runs/gpu-$name/plan.json" \
    >> "$OUT/$name.log" 2>&1
  note "$name (exit $?)"
}
model m1 --masked 1 &
model m0 --masked 0 &
model oc-dino-wm --model oc-dino-wm &
model dino-wm-g$GRID --model dino-wm --patch-grid $GRID &
wait $(jobs -p | grep -v "^$PACKER$")
note "all done"
kill $PACKER
pack
