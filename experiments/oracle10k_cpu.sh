#!/usr/bin/env bash
# The 10,000-episode rows of docs/faithful.md on 2 CPU cores (about 70 minutes):
#
#     bash experiments/oracle10k_cpu.sh
#
# True object states (diagnostics/oracle_plan.py), the paper's method at M = 1 and M = 0, side by
# side on one thread each: the cpu predictor for 4 epochs at batch 64, as the earlier 10,000-episode
# pair of docs/planning.md (which had --slot-residual on), then the protocol's 3 seeds of 50.
# Logs in logs/oracle10k-cpu.
set -u
LOG=logs/oracle10k-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA="--episodes 10000 --render-size 16 --policy weak"   # pinned: the weak data's numbers
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py $DATA --encoder-data predictor --until data --out runs/oracle10k-data --workers 2 \
  --no-progress > "$LOG/data.log" 2>&1
note "data (exit $?)"
for m in 1 0; do
  (python diagnostics/oracle_plan.py $DATA --epochs 4 --masked $m --gifs 0 --resume \
     --no-progress --out runs/oracle10k-m$m --plan-name paper > "$LOG/m$m.log" 2>&1
   note "m$m (exit $?)") &
done
wait
note "all done"
