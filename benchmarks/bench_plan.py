"""Planning speed: one CEM solve for E episodes, batched against one episode at a time.

    python benchmarks/bench_plan.py --ckpt runs/pusht-cpu-m1 --episodes 10

Uses the protocol's CEM (300 samples, 30 elites, 30 iterations, horizon 5, history 1)
unless told otherwise, the start frames of seed 0, and checks that both give the same plans.
A one-iteration solve of each kind runs first, untimed.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import sample_eval_pairs  # noqa: E402
from plan import PlanConfig, load_world_model, solve_all  # noqa: E402


def load_problems(ckpt, episodes, device):
    """The world model of ``ckpt`` and what one solve of seed 0's first ``episodes`` protocol
    episodes takes: (model, (start pixels, start proprio, goal slots, goal proprio))."""
    model, data = load_world_model(ckpt, device)
    pairs = sample_eval_pairs(data, "val", episodes, seed=0)
    return model, (data.pixels[pairs[:, 0]], data.proprio[pairs[:, 0]],
                   model.encode(data.pixels[pairs[:, 1]], after=data.pixels[pairs[:, 0]]),
                   model.proprio(data.proprio[pairs[:, 1]]))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--cost-batch", type=int, default=0,
                        help="candidate rollouts per predictor call in the batched solve (0: plan.py's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, problems = load_problems(args.ckpt, args.episodes, device)
    pixels, proprio, goal_slots, goal_proprio = problems
    cfg = PlanConfig(samples=args.samples, iterations=args.iterations, cost_batch=args.cost_batch)
    for sequential in (False, True):  # warm-up: CUDA context, library handles, allocator
        solve_all(PlanConfig(**{**cfg.__dict__, "sequential": sequential, "iterations": 1}), model,
                  pixels, proprio, goal_slots, goal_proprio, seed=0, solve=0)
    plans, seconds = {}, {}
    for sequential in (False, True):
        run_cfg = PlanConfig(**{**cfg.__dict__, "sequential": sequential})
        start = time.perf_counter()
        plans[sequential] = solve_all(run_cfg, model, pixels, proprio, goal_slots, goal_proprio,
                                      seed=0, solve=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[sequential] = time.perf_counter() - start
    gap = (plans[True] - plans[False]).abs().max().item()
    print(f"device {device}, {args.episodes} episodes, {args.samples} samples, "
          f"{args.iterations} iterations, cost batch {args.cost_batch or 'default'}: batched {seconds[False]:.1f} s, one at a time "
          f"{seconds[True]:.1f} s, speed-up {seconds[True] / seconds[False]:.1f}x, "
          f"largest plan difference {gap:.2e}")


if __name__ == "__main__":
    main()
