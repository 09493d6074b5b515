"""Push-T speed: env steps per second with rendering, and the time to collect a preset.

    python benchmarks/bench_data.py --preset cpu [--policy weak]
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import DATA_PRESETS, collect  # noqa: E402
from pusht import PushTEnv  # noqa: E402


def env_steps_per_second(render_size, n_steps=1000):
    env = PushTEnv(render_size)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, 2))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return n_steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="cpu", choices=sorted(DATA_PRESETS))
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--policy", default=None, help="collection policy (default: the preset's)")
    args = parser.parse_args()
    for size in (64, 224):
        print(f"env steps/s, one process, rendering at {size} px: {env_steps_per_second(size):.0f}")
    cfg = DATA_PRESETS[args.preset]
    cfg = dataclasses.replace(cfg, policy=args.policy) if args.policy else cfg
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        start = time.perf_counter()
        data = collect(cfg, Path(tmp) / "bench", workers=args.workers)
        seconds = time.perf_counter() - start
        print(f"collect preset {args.preset!r} with the {cfg.policy} policy ({cfg.episodes} episodes, "
              f"{len(data.state)} frames at {cfg.render_size} px) with {args.workers or os.cpu_count()} workers: "
              f"{seconds:.1f} s ({len(data.state) / seconds:.0f} frames/s)")


if __name__ == "__main__":
    main()
