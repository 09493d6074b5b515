#!/usr/bin/env bash
# The CPU rows of docs/faithful.md, two lanes side by side on 2 cores (about 2 h):
#
#     bash experiments/faithful_cpu.sh
#
# True object states (diagnostics/oracle_plan.py) on the cpu preset's 1,000 weak-expert episodes
# (16 px: the runs read states), each trained, then planned with the protocol's 3 seeds of 50
# episodes (--check-only: rollout errors only, no planning); and the cpu preset's encoder
# trained on all-moving and on weak-expert data, scored on the same validation clips.
# One thread per lane; logs in logs/faithful-cpu.
set -u
LOG=logs/faithful-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--render-size 16 --policy weak"   # pinned: these numbers are the weak data's
OURS_TRAIN="--random-history --slot-residual --proprio-residual --future-action visible --proprio-space raw"
OURS_PLAN="--clip-actions --plan-split val --plan-history 1"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
oracle() {  # oracle RUN:PLAN FLAGS...: train (or reuse) runs/oracle1k-RUN, then plan it as PLAN
  local name=$1; shift
  python diagnostics/oracle_plan.py $DATA --gifs 0 --out "runs/oracle1k-${name%%:*}" --plan-name "${name#*:}" \
    "$@" >> "$LOG/${name/:/-}.log" 2>&1
  note "$name done (exit $?)"
}
python train.py $DATA --encoder-data predictor --until data --out runs/oracle1k-data --no-progress \
  > "$LOG/data.log" 2>&1
note "data"
(oracle m1:paper --masked 1
 oracle m0:paper --masked 0
 oracle m1-ours:ours --masked 1 $OURS_TRAIN $OURS_PLAN
 oracle m0-ours:ours --masked 0 $OURS_TRAIN $OURS_PLAN
 oracle m1-rh:paper --masked 1 --random-history) &
(python train.py --policy weak --until encoder --out runs/enc-allmoving --no-progress > "$LOG/enc-allmoving.log" 2>&1
 note "encoder all-moving (exit $?)"
 oracle m1-sres:check --masked 1 --slot-residual --check-only
 oracle m1-pres:check --masked 1 --proprio-residual --check-only
 oracle m1-visible:check --masked 1 --future-action visible --check-only
 oracle m1-raw:check --masked 1 --proprio-space raw --check-only
 python train.py --policy weak --until encoder --encoder-data predictor --out runs/enc-weak --no-progress > "$LOG/enc-weak.log" 2>&1
 note "encoder weak (exit $?)"
 until [ -f runs/oracle1k-m1/plan-paper.json ] && ! pgrep -f "oracle1k-m1 " > /dev/null; do sleep 10; done
 oracle m1:h1 --masked 1 --plan-history 1
 oracle m1:clip --masked 1 --clip-actions
 oracle m1:val --masked 1 --plan-split val) &
wait
note "all done"
