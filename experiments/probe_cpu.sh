#!/usr/bin/env bash
# The encoder rows of docs/faithful.md on 2 CPU cores (about 30 minutes): the cpu preset's
# encoder trained on all-moving data (the default) and on the weak expert's data, side by side
# on one thread each, their slots extracted, then the linear probe of the Push-T state
# (block angle included) from each encoder's slots: each frame's slots alone (--slot-mode frame,
# as the rows were measured and as the planner encodes a frame).
#
#     bash experiments/probe_cpu.sh
#
# Logs in logs/probe-cpu.
set -u
LOG=logs/probe-cpu
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --policy weak --until data --out runs/probe-allmoving --workers 2 --no-progress > "$LOG/data.log" 2>&1
note "data (exit $?)"
for lane in allmoving:all_moving weak:predictor; do
  (name=${lane%%:*}
   python train.py --policy weak --until slots --slot-mode frame --encoder-data ${lane#*:} --out runs/probe-$name --no-progress \
     > "$LOG/$name.log" 2>&1
   note "$name encoder and slots (exit $?)"
   python diagnostics/probe_slots.py --run runs/probe-$name > "$LOG/probe-$name.md" 2>&1
   note "$name probe (exit $?)") &
done
wait
note "all done"
