#!/usr/bin/env bash
# --protocol ours against official on 2 CPU cores (1 h 55 min: 1.6-1.7 s a step each, side by
# side, on the AMD EPYC machines; docs/collide.md#the-two-protocols-on-true-states): the `cpu` VQA head on
# true object states of the 20,000-video data, read as the official ALOE loader reads frames
# (vqa.py's default) and as ours (--protocol ours: every question reads every frame), side by
# side on one thread each, seed 0, as the earlier truth row (--frame-stride 4 over real frames).
#
#     bash experiments/vqa_protocol_cpu.sh
#
# Logs in logs/vqa-protocol; results in runs/vqa-protocol/{official,ours}.json (--resume continues).
set -u
LOG=logs/vqa-protocol
OUT=runs/vqa-protocol
mkdir -p "$LOG" "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
note() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG/timeline.log"; }
python train.py --dataset collide --render-size 16 --episodes 20000 --until data --out $OUT/data \
  --workers 2 --no-progress > "$LOG/data.log" 2>&1
rc=$?
DATA=$(python -c "import json; print(json.load(open('$OUT/data/config.json'))['data'])")
note "data $DATA (exit $rc)"
[ -f $OUT/oracle20k.npy ] || python diagnostics/oracle_slots.py --data "$DATA" --out $OUT/oracle20k.npy \
  > "$LOG/oracle.log" 2>&1
note "oracle slots (exit $?)"
for p in official ours; do
  (python vqa.py --data "$DATA" --slots $OUT/oracle20k.npy --frame-stride 4 --val-every 1000 --protocol $p \
     --device cpu --out $OUT/$p.json --resume > "$LOG/$p.log" 2>&1
   note "$p (exit $?)") &
done
wait
note "all done"
