#!/usr/bin/env bash
# The 10,000-episode true-state rows of docs/faithful.md (weak data) and docs/expert.md (the
# scripted expert's data) on 2 CPU cores (about 70 minutes each):
#
#     bash experiments/oracle10k_cpu.sh                  # runs/oracle10k-m{1,0}, the weak expert's data
#     POLICY=expert bash experiments/oracle10k_cpu.sh    # runs/oracle10k-expert-m{1,0}
#
# True object states (diagnostics/oracle_plan.py), the paper's method at M = 1 and M = 0, side by
# side on one thread each: the cpu predictor for 4 epochs at batch 64, as the earlier 10,000-episode
# pair of docs/planning.md (which had --slot-residual on), then the protocol's 3 seeds of 50 on the
# data's own starts and goals. Logs in logs/oracle10k-cpu.
set -u
POLICY=${POLICY:-weak}          # weak pins the numbers of faithful.md; expert: the cpu preset's data
NAME=oracle10k
[ "$POLICY" = weak ] || NAME=oracle10k-$POLICY
LOG=logs/oracle10k-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--episodes 10000 --render-size 16 --policy $POLICY"
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py $DATA --encoder-data predictor --until data --out runs/$NAME-data --workers 2 \
  --no-progress > "$LOG/$NAME-data.log" 2>&1
note "$NAME data (exit $?)"
for m in 1 0; do
  (python diagnostics/oracle_plan.py $DATA --epochs 4 --masked $m --gifs 0 --resume \
     --no-progress --out runs/$NAME-m$m --plan-name paper > "$LOG/$NAME-m$m.log" 2>&1
   note "$NAME M = $m (exit $?)") &
done
wait
note "$NAME all done"
