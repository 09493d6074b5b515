#!/usr/bin/env bash
# Our --slot-norm on learned slots (docs/additions.md): the frame-mode C-JEPA run of the scripted
# expert's 1,000 episodes (runs/cpu-expert-m1, experiments/expert_slots_cpu.sh, whose data,
# encoder and slots this reuses) trained again with the predictor reading and writing slots
# centred and scaled per slot index and feature; then its rollouts against standing still, from
# one frame and from three (diagnostics/rollout_check.py), the cost's spread and ranking
# (diagnostics/cost_check.py) and the planning protocol, 3 seeds. On 2 cores, one thread each:
#
#     bash experiments/slot_norm_cpu.sh            # M = 1 (about 12 min of training, 45 of planning)
#     MASKED=0 bash experiments/slot_norm_cpu.sh   # OC-JEPA, the same way
#     NAME=-sres FLAGS=--slot-residual bash experiments/slot_norm_cpu.sh   # with residual slots as well
#
# Run: runs/cpu-expert-m${MASKED}-snorm${NAME}; log in logs/slot-norm-cpu; results beside the run
# (rollout-check-probe.txt, rollout-check-context3.txt, cost-check-16.json, plan-paper.json).
# Goes on where it stopped.
set -u
MASKED=${MASKED:-1} NAME=${NAME:-} FLAGS=${FLAGS:-}
OUT=runs/cpu-expert-m${MASKED}-snorm${NAME}
LOG=logs/slot-norm-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --policy expert --slot-mode frame --masked "$MASKED" --slot-norm $FLAGS --out "$OUT" --resume \
    --no-progress >> "$LOG/m$MASKED$NAME.log" 2>&1
note "$OUT trained (exit $?)"
python diagnostics/rollout_check.py --ckpt "$OUT" --from-place 3 --probe > "$OUT/rollout-check-probe.txt" 2>&1
python diagnostics/rollout_check.py --ckpt "$OUT" --from-place 3 --context 3 > "$OUT/rollout-check-context3.txt" 2>&1
note "$OUT rollouts checked (exit $?)"
python diagnostics/cost_check.py --ckpt "$OUT" --episodes 16 --out "$OUT/cost-check-16.json" >> "$LOG/m$MASKED$NAME.log" 2>&1
note "$OUT cost checked (exit $?)"
python plan.py --ckpt "$OUT" --gifs 0 --out "$OUT/plan-paper.json" --resume --no-progress >> "$LOG/m$MASKED$NAME.log" 2>&1
note "$OUT planned (exit $?)"
