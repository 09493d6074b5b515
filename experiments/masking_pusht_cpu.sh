#!/usr/bin/env bash
# The Push-T rows of docs/masking.md on 2 CPU cores: true-state predictors of the paper's method
# at M = 0, 1 and 2 with training seeds 0, 1 and 2 on the 1,000 weak-expert episodes (16 px: the
# runs read states), trained as diagnostics/oracle_plan.py trains them (the cpu predictor, 10
# epochs) without planning, two at a time on one thread each, then diagnostics/masking_pusht.py
# over all nine. Seed 0 of M = 0 and 1 are the planned runs of docs/faithful.md
# (runs/oracle1k-m0, -m1); the others go to runs/pmask-m<M>-s<S>.
#
#     bash experiments/masking_pusht_cpu.sh ["0 1 2"] ["0 1 2"]     # masked counts, then seeds
#
# Logs in logs/masking-pusht-cpu; the table in logs/masking-pusht-cpu/table.md.
set -u
MASKED=${1:-"0 1 2"}
SEEDS=${2:-"0 1 2"}
LOG=logs/masking-pusht-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--render-size 16 --policy weak"   # pinned: these numbers are the weak data's
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py $DATA --encoder-data predictor --until data --out runs/oracle1k-data --workers 2 \
  --no-progress > "$LOG/data.log" 2>&1
note "data (exit $?)"
folder() { if [ "$2" = 0 ] && [ "$1" != 2 ]; then echo runs/oracle1k-m$1; else echo runs/pmask-m$1-s$2; fi; }
jobs_list=() runs=()
for s in $SEEDS; do for m in $MASKED; do
  runs+=("$(folder $m $s)") jobs_list+=("$m:$s")   # a finished run only rescores its rollouts
done; done
train() {
  local m=${1%%:*} s=${1#*:}
  python diagnostics/oracle_plan.py $DATA --masked $m --seed $s --check-only --resume --no-progress \
    --out "$(folder $m $s)" > "$LOG/m$m-s$s.log" 2>&1
  note "M = $m, seed $s (exit $?)"
}
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  train "${jobs_list[i]}" &
  if ((i + 1 < ${#jobs_list[@]})); then train "${jobs_list[i + 1]}" & fi
  wait
done
python diagnostics/masking_pusht.py --reuse --runs "${runs[@]}" > "$LOG/table.md" 2>&1
note "masking_pusht (exit $?)"
