#!/usr/bin/env bash
# The true-state rows of docs/faithful.md on a 2-core CPU, two runs at a time (about 2 h):
#
#     bash experiments/faithful_cpu.sh
#
# benchmarks/oracle_plan.py on the cpu preset's 1,000 weak-expert episodes (16 px: the runs
# read states), each run trained, then planned with the protocol's 3 seeds of 50 episodes.
# Lane A and lane B run side by side, one thread each; logs in logs/faithful-cpu.
set -u
LOG=logs/faithful-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--render-size 16"
OURS_TRAIN="--random-history --slot-residual --proprio-residual --future-action visible --proprio-space raw"
OURS_PLAN="--clip-actions --plan-split val --plan-history 1"
T0=$(date +%s)
note() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG/timeline.log"; }
oracle() {  # oracle RUN:PLAN FLAGS...: train (or reuse) runs/oracle1k-RUN, then plan it as PLAN
  local name=$1; shift
  python benchmarks/oracle_plan.py $DATA --gifs 0 --out "runs/oracle1k-${name%%:*}" --plan-name "${name#*:}" \
    "$@" >> "$LOG/${name/:/-}.log" 2>&1
  note "$name done (exit $?)"
}
python train.py $DATA --encoder-data predictor --until data --out runs/oracle1k-data --no-progress \
  > "$LOG/data.log" 2>&1
note "data"
(oracle m1:paper --masked 1
 oracle m1-ours:ours --masked 1 $OURS_TRAIN $OURS_PLAN
 oracle m1-rh:paper --masked 1 --random-history
 oracle m1-pres:paper --masked 1 --proprio-residual
 oracle m1-raw:paper --masked 1 --proprio-space raw
 oracle m1:h1 --masked 1 --plan-history 1
 oracle m1:left --masked 1 --time-align left) &
(oracle m0:paper --masked 0
 oracle m0-ours:ours --masked 0 $OURS_TRAIN $OURS_PLAN
 oracle m1-sres:paper --masked 1 --slot-residual
 oracle m1-visible:paper --masked 1 --future-action visible
 oracle m1:clip --masked 1 --clip-actions
 oracle m1:val --masked 1 --plan-split val) &
wait
note "all done"
