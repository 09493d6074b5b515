#!/usr/bin/env bash
# The true-state rows of docs/masking.md on 2 CPU cores: the collide cpu preset's 2,000 videos
# (16 px: the runs read states), then diagnostics/masking_test.py for each M and seed, two at a
# time on one thread each.
#
#     bash experiments/masking_cpu.sh ["0 1 2 3 4"] ["0 1 2"]   # masked counts, then seeds
#     FLAGS=--attention-only bash experiments/masking_cpu.sh ...  # redo only the attention part
#     NAME=mtest30 FLAGS="--epochs 30" bash experiments/masking_cpu.sh "0 1"   # 3x the training
#     NAME=mtest60 FROM=mtest30 FLAGS="--epochs 60" bash experiments/masking_cpu.sh "0 1"
#     NAME=mtest6k DATA="--episodes 6000" FLAGS="--epochs 10" bash experiments/masking_cpu.sh "0 1" "0"
#     NAME=mtesthw025 FLAGS="--history-weight 0.25" bash experiments/masking_cpu.sh "1"   # a probe
#
# DATA: data flags for both the data step and the runs (more videos: --episodes N).
# FROM: a new run starts as a copy of runs/<FROM>-m<M>-s<S> (its predictor and log, not its
# results), and --resume trains it on; the learning rate is constant, so that is the run of the
# longer budget from the start. Logs in logs/masking-cpu; results in
# runs/<NAME>-m<M>-s<S>/masking-test.json (NAME: mtest).
set -u
MASKED=${1:-"0 1 2 3 4"}
SEEDS=${2:-"0 1 2"}
FLAGS=${FLAGS:-}   # more masking_test.py flags
DATA=${DATA:-}     # data flags (train.py), given to the data step and every run
NAME=${NAME:-mtest}
FROM=${FROM:-}
if [ -n "$FROM" ] && [ "$FROM" = "$NAME" ]; then echo "error: FROM=$FROM must differ from NAME" >&2; exit 1; fi
LOG=logs/masking-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
source "$(dirname "$0")/start_from.sh"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --dataset collide --render-size 16 --until data $DATA --out runs/$NAME-data --workers 2 \
  --no-progress > "$LOG/data.log" 2>&1
note "data (exit $?)"
jobs_list=()
for s in $SEEDS; do for m in $MASKED; do jobs_list+=("$m:$s"); done; done
run() {
  local m=${1%%:*} s=${1#*:}
  if [ -n "$FROM" ]; then
    local why
    why=$(start_from "runs/$FROM-m$m-s$s" "runs/$NAME-m$m-s$s") || { note "$NAME M = $m, seed $s: $why (skipped)"; return; }
  fi
  python diagnostics/masking_test.py --render-size 16 --masked $m --seed $s --resume --no-progress \
    --out runs/$NAME-m$m-s$s $DATA $FLAGS >> "$LOG/$NAME-m$m-s$s.log" 2>&1
  note "$NAME M = $m, seed $s (exit $?)"
}
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  run "${jobs_list[i]}" &
  if ((i + 1 < ${#jobs_list[@]})); then run "${jobs_list[i + 1]}" & fi
  wait
done
note "all done"
