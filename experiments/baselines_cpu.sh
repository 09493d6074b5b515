#!/usr/bin/env bash
# The models of the paper's Push-T table on the cpu preset (learned slots of its 1,000 weak-expert
# episodes, 64 px), each trained and planned with the protocol's 3 seeds of 50 episodes; two
# lanes side by side on 2 cores, one thread each, after the data, encoder and slots on both cores
# (docs/patches.md, docs/faithful.md):
#
#     bash experiments/baselines_cpu.sh [PATCH_GRID]     # default 4: 8 does not fit a CPU session
#     POLICY=expert bash experiments/baselines_cpu.sh    # the same on the scripted expert's data
#     MODE=frame bash experiments/baselines_cpu.sh       # slots of each frame alone (ours): the documented rows
#
# Lane 1: OC-DINO-WM, C-JEPA (M = 1), OC-JEPA (M = 0); lane 2: DINO-WM (patch tokens), which
# alone takes about as long on one thread.
# The data, encoder and slots are the cpu preset's, shared by all four: by default on the weak
# expert's data (--policy weak: the cpu preset's data before it switched to the scripted expert),
# with POLICY=expert on the scripted expert's (the preset's default now; its encoder, trained on the
# all-moving data, is the same). MODE: the predictor's slots, video (the paper's, the default) or
# frame (--slot-mode frame, ours; every documented row, measured before the default changed).
# Logs in logs/baselines-cpu (-expert, -video); results in runs/cpu-<model>/plan-paper.json
# (runs/cpu-expert-<model>; video mode runs/cpu-video-<model>, runs/cpu-expert-video-<model>).
# Runs go on where they stopped when started again. DINO-WM's patch tokens are each frame's in
# either mode, but each mode trains its own (the runs are named by mode).
set -u
GRID=${1:-4}
POLICY=${POLICY:-weak}
MODE=${MODE:-video}
TAG=$([ "$POLICY" = weak ] && echo cpu || echo "cpu-$POLICY")$([ "$MODE" = frame ] || echo "-$MODE")
LOG=logs/baselines-$TAG
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
model() {  # model NAME TRAIN-FLAGS...: train runs/$TAG-NAME (or finish it), then plan it
  local name=$1; shift
  python train.py --policy "$POLICY" --slot-mode "$MODE" --out "runs/$TAG-$name" --resume --no-progress "$@" >> "$LOG/$name.log" 2>&1
  note "$name trained (exit $?)"
  python plan.py --ckpt "runs/$TAG-$name" --gifs 0 --out "runs/$TAG-$name/plan-paper.json" --resume \
    >> "$LOG/$name.log" 2>&1
  note "$name planned (exit $?)"
}
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python train.py --policy "$POLICY" --slot-mode "$MODE" --until slots --out "runs/$TAG-data" --no-progress --workers 2 --resume \
  > "$LOG/data.log" 2>&1
note "data, encoder and slots (exit $?)"
(model oc-dino-wm --model oc-dino-wm
 model m1 --masked 1
 model m0 --masked 0) &
(model dino-wm-g$GRID --model dino-wm --patch-grid "$GRID") &
wait
note "all done"
