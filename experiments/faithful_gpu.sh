#!/usr/bin/env bash
# The measurements of docs/faithful.md in one go, on one GPU (about 8 minutes on an H200):
#
#     bash experiments/faithful_gpu.sh [OUT_DIR]            # SIZE=tiny: the same at toy size, on a CPU
#
# 1. data: 10,000 weak-expert episodes for the true-state runs (16 px: they read states, not
#    pixels), and the cpu preset's data with its all-moving twin for the encoder;
# 2. true object states (diagnostics/oracle_plan.py), all at once: the paper's method at M = 1 and
#    M = 0, each of our additions alone at M = 1, and all of them (the earlier defaults) at
#    M = 1 and M = 0; then the planner's additions alone on the M = 1 predictor;
# 3. learned slots at the cpu preset: M = 1 and M = 0 on the all-moving encoder, M = 1 on an
#    encoder trained on the weak expert's data, each planned; both encoders' angle probes. They
#    read video-mode slots, the default since 5cef7ea (faithful.md's CPU rows read each frame's
#    alone: MODE=frame bash experiments/baselines_cpu.sh), and name their runs as those do.
# A GPU machine without pymunk or gymnasium gets them as wheels for its Python (3.12), downloaded
# beside the checkout into a git-ignored .whl/ with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux2014_x86_64 -d .whl pymunk==7.3.1 gymnasium==1.4.0
# cffi==2.0.0 pycparser==3.0 farama-notifications==0.0.6`, installed there first with
# `pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site`.
# SIZE=tiny ran end to end on 2 CPU cores in 90 s.
# Logs go to logs/faithful; results (JSON and logs, no checkpoints) are packed into
# OUT_DIR/results.tgz every 30 s.
set -u
RESULTS=${1:-logs}
OUT=logs/faithful
mkdir -p "$OUT" "$RESULTS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SIZE=${SIZE:-full}
if [ "$SIZE" = tiny ]; then
  ORACLE_DATA="--preset tiny --episodes 40 --render-size 16 --policy weak"; ORACLE_TRAIN="--epochs 1"
  PRESET="--preset tiny --policy weak"; PLAN="--seeds 0 --episodes 2 --samples 20 --topk 4 --iterations 2 --gifs 0"
  ORACLE_PLAN="--plan-seeds 0 --plan-episodes 2"; DEVICE=cpu; WORKERS=2
else
  ORACLE_DATA="--episodes 10000 --render-size 16 --policy weak"; ORACLE_TRAIN="--batch-size 256 --epochs 6"
  PRESET="--policy weak"; PLAN="--gifs 1"; ORACLE_PLAN=""; DEVICE=cuda; WORKERS=8   # weak: beside the cpu numbers
fi
OURS_TRAIN="--random-history --slot-residual --proprio-residual --future-action visible --proprio-space raw"
OURS_PLAN="--clip-actions --plan-split val --plan-history 1"
T0=$(date +%s)
note() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/timeline.log"; }
pack() {
  tar czf "$RESULTS/.results.tgz" --exclude='*.pt' --exclude='*.npy' --exclude='*.gif' \
    runs/oracle-* runs/cpu-* runs/encoders "$OUT"/*.log 2>/dev/null
  mv "$RESULTS/.results.tgz" "$RESULTS/results.tgz"
}
(while sleep 30; do pack; done) &
PACKER=$!

note "data"
python train.py $ORACLE_DATA --encoder-data predictor --until data --out runs/oracle-data \
  --workers $WORKERS --no-progress > "$OUT/data-oracle.log" 2>&1 &
A=$!
python train.py $PRESET --until data --out runs/cpu-data --workers $WORKERS --no-progress \
  > "$OUT/data-cpu.log" 2>&1 &
wait $A $!
note "data done"

oracle() {  # oracle NAME FLAGS...: train (or reuse) runs/oracle-NAME, then plan it
  local name=$1; shift
  python diagnostics/oracle_plan.py $ORACLE_DATA $ORACLE_TRAIN $ORACLE_PLAN --device $DEVICE --gifs 0 \
    --out "runs/oracle-${name%%:*}" --plan-name "${name#*:}" "$@" >> "$OUT/oracle-${name/:/-}.log" 2>&1
  note "oracle $name done (exit $?)"
}
learned() {  # learned NAME FLAGS...: train.py then plan.py
  local name=$1; shift
  python train.py $PRESET --device $DEVICE --out "runs/cpu-$name" --no-progress "$@" \
    > "$OUT/cpu-$name.log" 2>&1 && note "cpu $name trained" &&
  python plan.py --ckpt "runs/cpu-$name" --device $DEVICE $PLAN --out "runs/cpu-$name/plan.json" \
    >> "$OUT/cpu-$name.log" 2>&1
  note "cpu $name planned (exit $?)"
}

(oracle m1:paper --masked 1
 oracle m1:clip --masked 1 --clip-actions &
 oracle m1:left --masked 1 --time-align left &
 oracle m1:val --masked 1 --plan-split val &
 oracle m1:h1 --masked 1 --plan-history 1 &
 wait) &
oracle m0:paper --masked 0 &
oracle m1-rh:paper --masked 1 --random-history &
oracle m1-sres:paper --masked 1 --slot-residual &
oracle m1-pres:paper --masked 1 --proprio-residual &
oracle m1-visible:paper --masked 1 --future-action visible &
oracle m1-raw:paper --masked 1 --proprio-space raw &
oracle m1-ours:ours --masked 1 $OURS_TRAIN $OURS_PLAN &
oracle m0-ours:ours --masked 0 $OURS_TRAIN $OURS_PLAN &
(learned m1 --masked 1
 learned m0 --masked 0 &
 python diagnostics/probe_slots.py --run runs/cpu-m1 > "$OUT/probe-allmoving.log" 2>&1 &
 wait) &
(learned weakenc-m1 --masked 1 --encoder-data predictor
 python diagnostics/probe_slots.py --run runs/cpu-weakenc-m1 > "$OUT/probe-weak.log" 2>&1) &
wait $(jobs -p | grep -v "^$PACKER$")
note "all done"
kill $PACKER
pack
