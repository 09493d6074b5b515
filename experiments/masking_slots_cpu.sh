#!/usr/bin/env bash
# The learned-slot rows of docs/masking.md on 2 CPU cores: the collide cpu preset end to end
# (data, encoder, video-mode slots), its predictor at each M and seed two at a time on one thread
# each, then diagnostics/masking_slots.py on each run. The encoder is docs/collide.md's best
# (full-size attention decoder with our position term, W = 5: FG-ARI 0.864, mBO 0.822), not the
# preset's (mBO 0.058): the test reads objects out of slots, so the slots must hold objects.
#
#     bash experiments/masking_slots_cpu.sh ["0 1"] ["0"]      # masked counts, then seeds
#     FLAGS=--attention-only bash experiments/masking_slots_cpu.sh ...  # redo only the attention part
#     NAME=cslots30 FROM=cslots TRAIN="--epochs 30" bash experiments/masking_slots_cpu.sh "0 1" "0 1 2"
#
# FROM: a new run starts as a copy of runs/<FROM>-m<M>-s<S> (its predictor and log, not its
# results), and --resume trains it on to TRAIN's --epochs; the learning rate is constant, so that
# is the run of the longer budget from the start. Logs in logs/masking-slots-cpu/<NAME>-m<M>-s<S>.log
# (runs made before NAME existed logged to m<M>-s<S>.log); results in
# runs/<NAME>-m<M>-s<S>/masking-test.json (NAME: cslots). Runs go on where they stopped when
# started again.
set -u
ENC="--cnn-fullres --decoder attention --decoder-rgb slot --recon-weight 20 --encoder-clip-len 4 --encoder-batch 8
     --encoder-steps 1500 --encoder-lr 1e-3 --encoder-clip 1 --slot-init query --position-weight 5"
MASKED=${1:-"0 1"}
SEEDS=${2:-"0"}
FLAGS=${FLAGS:-}   # more masking_slots.py flags
TRAIN=${TRAIN:-}   # more train.py flags for the predictors
NAME=${NAME:-cslots}
FROM=${FROM:-}
if [ -n "$FROM" ] && [ "$FROM" = "$NAME" ]; then echo "error: FROM=$FROM must differ from NAME" >&2; exit 1; fi
LOG=logs/masking-slots-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
source "$(dirname "$0")/start_from.sh"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --dataset collide $ENC --until slots --out runs/cslots-data --workers 2 --no-progress \
  > "$LOG/data.log" 2>&1
note "data, encoder and slots (exit $?)"
jobs_list=()
for s in $SEEDS; do for m in $MASKED; do jobs_list+=("$m:$s"); done; done
run() {
  local m=${1%%:*} s=${1#*:}
  local dir=runs/$NAME-m$m-s$s
  if [ -n "$FROM" ]; then
    local why
    why=$(start_from "runs/$FROM-m$m-s$s" "$dir") || { note "$NAME M = $m, seed $s: $why (skipped)"; return; }
  fi
  OMP_NUM_THREADS=1 python train.py --dataset collide $ENC --masked $m --seed $s --out "$dir" $TRAIN \
    --resume --no-progress >> "$LOG/$NAME-m$m-s$s.log" 2>&1
  note "$NAME M = $m, seed $s trained (exit $?)"
  OMP_NUM_THREADS=1 python diagnostics/masking_slots.py --run "$dir" $FLAGS >> "$LOG/$NAME-m$m-s$s.log" 2>&1
  note "$NAME M = $m, seed $s measured (exit $?)"
}
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  run "${jobs_list[i]}" &
  if ((i + 1 < ${#jobs_list[@]})); then run "${jobs_list[i + 1]}" & fi
  wait
done
note "all done"
