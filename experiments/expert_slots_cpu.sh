#!/usr/bin/env bash
# The learned-slot rows of docs/expert.md on 2 CPU cores (about an hour): the cpu preset on the
# scripted expert's 1,000 episodes (64 px), its slots from the cpu preset's encoder (trained on the
# all-moving data, shared with the weak-expert runs of experiments/baselines_cpu.sh), then the
# paper's method at M = 1 and M = 0, trained and planned with the protocol's 3 seeds of 50 on the
# expert data's own starts and goals; two lanes side by side, one thread each:
#
#     bash experiments/expert_slots_cpu.sh
#
# Logs in logs/expert-slots-cpu; results in runs/cpu-expert-m<M>/plan-paper.json. Runs go on where
# they stopped when started again.
set -u
LOG=logs/expert-slots-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --policy expert --until slots --out runs/cpu-expert-data --no-progress --workers 2 \
  > "$LOG/data.log" 2>&1
note "data and slots (exit $?)"
for m in 1 0; do
  (python train.py --policy expert --masked $m --out runs/cpu-expert-m$m --resume --no-progress \
     >> "$LOG/m$m.log" 2>&1
   note "m$m trained (exit $?)"
   python plan.py --ckpt runs/cpu-expert-m$m --gifs 0 --out runs/cpu-expert-m$m/plan-paper.json --resume \
     >> "$LOG/m$m.log" 2>&1
   note "m$m planned (exit $?)") &
done
wait
note "all done"
