#!/usr/bin/env bash
# The learned-slot rows of docs/expert.md on 2 CPU cores: the cpu preset on the scripted expert's
# 1,000 episodes (64 px), its slots from the cpu preset's encoder (trained on the all-moving data,
# shared with the weak-expert runs of experiments/baselines_cpu.sh), then the paper's method at
# each M, trained and planned with the protocol's 3 seeds of 50 on the expert data's own starts and
# goals; two runs side by side, one thread each:
#
#     bash experiments/expert_slots_cpu.sh                      # M = 1 and 0, video-mode slots (the paper's)
#     MODES="video frame" MASKED=1 bash experiments/expert_slots_cpu.sh   # the slot modes side by side
#
# MODES: the predictor's slots, video (chains of frames, the default) and/or frame (each frame
# alone, --slot-mode frame, ours; the rows measured before the default changed). Runs:
# runs/cpu-expert-video-m<M> and runs/cpu-expert-m<M> (frame). Logs in logs/expert-slots-cpu;
# results in each run's plan-paper.json. Runs go on where they stopped when started again.
set -u
MODES=${MODES:-video}
MASKED=${MASKED:-"1 0"}
LOG=logs/expert-slots-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
name() { [ "$1" = frame ] && echo "cpu-expert-m$2" || echo "cpu-expert-$1-m$2"; }
for mode in $MODES; do   # data, encoder and this mode's slots, on both cores
  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python train.py --policy expert --slot-mode "$mode" --until slots \
    --out "runs/cpu-expert-data-$mode" --no-progress --workers 2 --resume >> "$LOG/data.log" 2>&1
  note "data, encoder and $mode-mode slots (exit $?)"
done
run() {  # run MODE M: train, then plan
  local out
  out=runs/$(name "$1" "$2")
  python train.py --policy expert --slot-mode "$1" --masked "$2" --out "$out" --resume --no-progress \
    >> "$LOG/$(name "$1" "$2").log" 2>&1
  note "$out trained (exit $?)"
  python plan.py --ckpt "$out" --gifs 0 --out "$out/plan-paper.json" --resume >> "$LOG/$(name "$1" "$2").log" 2>&1
  note "$out planned (exit $?)"
}
pairs=()
for m in $MASKED; do for mode in $MODES; do pairs+=("$mode $m"); done; done
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
  run ${pairs[i]} &
  if ((i + 1 < ${#pairs[@]})); then run ${pairs[i + 1]} & fi
  wait
done
note "all done"
