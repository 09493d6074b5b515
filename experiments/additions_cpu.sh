#!/usr/bin/env bash
# The "alone, on the paper's method" planning column of docs/additions.md on 2 CPU cores (about
# 70 minutes a lane): each of our additions switched on alone for M = 1 over the faithful
# defaults, on true object states of the 1,000 weak-expert episodes (16 px: the runs read states),
# trained as runs/oracle1k-m1 (the cpu predictor, 10 epochs) and planned with the protocol's 3
# seeds of 50; the planner's --time-align left plans runs/oracle1k-m1 itself. Two lanes side by
# side, one thread each:
#
#     bash experiments/additions_cpu.sh
#
# Logs in logs/additions-cpu; results in runs/oracle1k-m1-<name>/plan-paper.json,
# runs/oracle1k-m1/plan-left.json and the best combination's runs/oracle1k-m1-best/plan-{paper,clip}.json.
# Runs go on where they stopped when started again (training and planning seeds).
set -u
LOG=logs/additions-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--render-size 16 --policy weak"   # pinned: these numbers are the weak data's
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
oracle() {  # oracle RUN:PLAN FLAGS...: train (or reuse) runs/oracle1k-RUN, then plan it as PLAN
  local name=$1; shift
  python diagnostics/oracle_plan.py $DATA --masked 1 --gifs 0 --resume --no-progress \
    --out "runs/oracle1k-${name%%:*}" --plan-name "${name#*:}" "$@" >> "$LOG/${name/:/-}.log" 2>&1
  note "$name (exit $?)"
}
python train.py $DATA --encoder-data predictor --until data --out runs/oracle1k-data --no-progress \
  > "$LOG/data.log" 2>&1
note "data (exit $?)"
(oracle m1-rh:paper --random-history
 oracle m1-sres:paper --slot-residual
 oracle m1-pres:paper --proprio-residual) &
(oracle m1-visible:paper --future-action visible
 oracle m1-raw:paper --proprio-space raw
 oracle m1:left --time-align left) &
wait
# The best combination: the training additions that planned above the paper's method alone
# (--slot-residual 30.0, --proprio-residual 24.7, --proprio-space raw 24.0 against 22.0), planned
# as the protocol says and with --clip-actions (23.3 alone)
BEST="--slot-residual --proprio-residual --proprio-space raw"
oracle m1-best:paper $BEST --check-only
oracle m1-best:paper $BEST &
oracle m1-best:clip $BEST --clip-actions &
wait
note "all done"
