"""Fused against written-out attention (predictor.attend), on one machine, in one process.

    python benchmarks/gpu_attention.py --ckpt runs/pusht-cpu-m1-e30 [--repeats 2] [--profile] [--compile]

For each repeat and each way of computing attention everywhere (the fused kernel, or two
batched products and a softmax), times predictor training (bench_train.py's throughput,
cpu and paper presets) and one CEM solve of 50 episodes batched and one at a time, after
an untimed warm-up solve. --profile prints the profiler's table for one batched solve with
the default choice (predictor.MANY_ROWS); --compile times batched solves of a
torch.compile'd predictor (the first one compiles). Meant for a GPU; runs on a CPU too.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import predictor  # noqa: E402
from bench_plan import load_problems  # noqa: E402
from bench_train import throughput  # noqa: E402
from plan import PlanConfig, solve_all  # noqa: E402
from config import PRESETS  # noqa: E402

WAYS = {"fused": float("inf"), "written out": 0}  # predictor.MANY_ROWS for each


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, problems = load_problems(args.ckpt, args.episodes, device)

    def solve(sequential):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        solve_all(PlanConfig(sequential=sequential), model, *problems, seed=0, solve=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    default_rows = predictor.MANY_ROWS
    solve(False)  # warm-up
    for repeat in range(args.repeats):
        for name, rows in WAYS.items():
            predictor.MANY_ROWS = rows
            rates = [throughput(PRESETS[p], args.train_steps, device)[0] for p in ("cpu", "paper")]
            print(f"repeat {repeat}, {name}: training cpu {rates[0]:.0f}, paper {rates[1]:.0f} samples/s; "
                  f"solve batched {solve(False):.2f} s, one at a time {solve(True):.2f} s", flush=True)
    predictor.MANY_ROWS = default_rows
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            solve(False)
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=20, max_name_column_width=50))
    if args.compile:
        model.predictor = torch.compile(model.predictor, dynamic=False)
        for name in ("compiles, then solves", "solves", "solves again"):
            print(f"compiled predictor, batched: {name} in {solve(False):.2f} s", flush=True)


if __name__ == "__main__":
    main()
