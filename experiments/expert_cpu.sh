#!/usr/bin/env bash
# The true-state rows of docs/expert.md on 2 CPU cores (about 35 minutes):
#
#     bash experiments/expert_cpu.sh ["1 0"]   # masked counts
#     NAME=oracle1k-expert-hw025 FLAGS="--history-weight 0.25" bash experiments/expert_cpu.sh "1"   # a probe
#
# 1,000 episodes of the scripted expert (16 px: the runs read states), then the paper's method at
# M = 1 and M = 0 on true object states (diagnostics/oracle_plan.py), side by side on one thread
# each, trained as the weak-expert rows of docs/faithful.md (the cpu predictor, 10 epochs) and
# planned with the protocol's 3 seeds of 50 on the expert data's own starts and goals.
# FLAGS: more oracle_plan.py flags. Results in runs/<NAME>-m<M> (NAME: oracle1k-expert); logs in
# logs/expert-cpu.
set -u
MASKED=${1:-"1 0"}
FLAGS=${FLAGS:-}
NAME=${NAME:-oracle1k-expert}
LOG=logs/expert-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--render-size 16 --policy expert"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py $DATA --encoder-data predictor --until data --out runs/oracle1k-expert-data --workers 2 \
  --no-progress > "$LOG/data.log" 2>&1
note "data (exit $?)"
python diagnostics/data_motion.py --data $(python -c "
from config import PRESETS, data_config, data_dir
import dataclasses, os
for policy in ('expert', 'weak'):   # the weak expert's data beside it when it is on disk
    d = data_dir('.', data_config(dataclasses.replace(PRESETS['cpu'], render_size=16, policy=policy)))
    if os.path.exists(os.path.join(d, 'meta.json')):
        print(d)
") > "$LOG/motion.md" 2>&1
for m in $MASKED; do
  (python diagnostics/oracle_plan.py $DATA --masked $m --gifs 0 --resume --no-progress $FLAGS \
     --out runs/$NAME-m$m --plan-name paper > "$LOG/$NAME-m$m.log" 2>&1
   note "$NAME M = $m (exit $?)") &
done
wait
note "all done"
