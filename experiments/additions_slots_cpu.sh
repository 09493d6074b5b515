#!/usr/bin/env bash
# Our slot-residual additions on learned slots, over the faithful defaults (docs/faithful.md,
# "Our slot-residual additions on these slots"): the cpu preset's slots of the scripted expert's
# 1,000 episodes, M = 1, trained and planned as runs/cpu-expert-video-m1 and runs/cpu-expert-m1
# (experiments/expert_slots_cpu.sh, which makes the data, encoder and slots these runs reuse)
# with one set of additions switched on: --slot-residual alone, with --proprio-residual
# --proprio-space raw (the three that planned above the paper's method alone on true states),
# and those two alone. Two lanes at a time on 2 cores, one thread each (about 70 minutes a
# pair; the last run alone):
#
#     bash experiments/additions_slots_cpu.sh
#
# Runs: runs/cpu-expert-video-m1-{sres,best} (video-mode slots, the paper's pipeline) and
# runs/cpu-expert-m1-{sres,best,prop} (each frame's slots alone; prop: the two proprio additions
# without the residual). Logs in logs/additions-slots-cpu;
# results in each run's plan-paper.json. Runs go on where they stopped when started again.
set -u
LOG=logs/additions-slots-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
run() {  # run NAME FLAGS...: train runs/NAME, then plan it
  local name=$1 out=runs/$1; shift
  python train.py --policy expert --masked 1 "$@" --out "$out" --resume --no-progress >> "$LOG/$name.log" 2>&1
  note "$out trained (exit $?)"
  python plan.py --ckpt "$out" --gifs 0 --out "$out/plan-paper.json" --resume --no-progress >> "$LOG/$name.log" 2>&1
  note "$out planned (exit $?)"
}
BEST="--slot-residual --proprio-residual --proprio-space raw"
run cpu-expert-video-m1-sres --slot-residual &
run cpu-expert-video-m1-best $BEST &
wait
run cpu-expert-m1-sres --slot-mode frame --slot-residual &
run cpu-expert-m1-best --slot-mode frame $BEST &
wait
run cpu-expert-m1-prop --slot-mode frame --proprio-residual --proprio-space raw   # the proprio pair alone
note "all done"
