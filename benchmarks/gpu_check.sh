#!/usr/bin/env bash
# GPU checks in one go, for a machine with a CUDA GPU and this repo's requirements:
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]
#
# 1. predictor training throughput of the cpu and paper presets (bench_train.py);
# 2. the cpu-preset Push-T data, then one CEM solve for 50 episodes batched against one at a
#    time (bench_plan.py), fused against written-out attention (gpu_attention.py), and full
#    3-seed evaluations of runs/pusht-cpu-m{1,0}-e30, when
#    those runs (and their encoder) are there;
# 3. the paper preset end to end at a small size (64 episodes, 300 encoder steps, 1 epoch) on
#    a DINOv2 ViT-S/14 with random weights, each stage timed: how long the full preset takes;
# 4. the test suite (the timm parity test runs where timm is installed).
# Each step's output goes to LOG_DIR/<step>.log; a summary line per step is printed.
set -u
LOG=${1:-logs/gpu}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc, $((SECONDS - start)) s: $*"
    grep -v '^\s*$' "$LOG/$name.log" | tr '\r' '\n' | grep -v '%|' | tail -n "${TAIL:-4}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"

step bench_train 180 python benchmarks/bench_train.py --presets cpu paper --steps 50

if [ -f runs/pusht-cpu-m1-e30/predictor.pt ]; then
    step data_cpu 240 python train.py --dataset pusht --until data --workers 12 --no-progress --out /tmp/unused-run
    step bench_plan 240 python benchmarks/bench_plan.py --ckpt runs/pusht-cpu-m1-e30 --episodes 50
    TAIL=30 step attention 300 python benchmarks/gpu_attention.py --ckpt runs/pusht-cpu-m1-e30 --profile --compile
    for m in 1 0; do
        TAIL=8 step "plan_m$m" 300 python plan.py --ckpt "runs/pusht-cpu-m$m-e30" --seeds 0 1 2 --gifs 0 \
            --out "$LOG/plan-m$m.json"
    done
fi

python -c "import torch; from dinov2 import DinoV2; torch.save(DinoV2().state_dict(), '/tmp/dinov2_random.pth')"
PAPER=(python train.py --dataset pusht --preset paper --masked 1 --episodes 64 --encoder-steps 300
       --epochs 1 --dinov2-path /tmp/dinov2_random.pth --workers 12 --no-progress --out runs/paper-small)
step paper_data 300 "${PAPER[@]}" --until data
step paper_encoder 300 "${PAPER[@]}" --until encoder
step paper_slots 300 "${PAPER[@]}" --until slots
step paper_predictor 300 "${PAPER[@]}"

TAIL=6 step pytest 300 python -m pytest -q -p no:cacheprovider tests
