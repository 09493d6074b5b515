"""Planning results of several runs as one markdown table (the tables of docs/faithful.md).

    python experiments/plan_table.py runs/oracle1k-m1/plan-paper.json runs/oracle1k-m0/plan-paper.json ...

One row per results JSON of plan.py or diagnostics/oracle_plan.py: success per seed, mean +/- std
over seeds (in %), episodes whose block must be pushed that succeeded, and the median final
block distance and angle error; with ``--time``, also the CEM solving time of one seed's episodes
(mean over seeds; the paper's unit: 673 s for C-JEPA's 50 episodes, 5,763 s for DINO-WM's).

Files joined by "+" make one row: the seeds of one checkpoint and protocol, planned in separate
processes (``plan.py --seeds 0 2 --out A``, ``plan.py --seeds 1 --out B``: ``A+B``).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plan import protocol_of  # noqa: E402


def pooled(paths):
    """The results of several plan.py files of one checkpoint and protocol, their seeds together."""
    parts = [json.loads(path.read_text()) for path in paths]
    protocol = lambda r: (protocol_of(r["config"]), r.get("checkpoint"))  # noqa: E731
    if any(protocol(r) != protocol(parts[0]) for r in parts[1:]):
        raise SystemExit(f"error: {' + '.join(map(str, paths))} are not one checkpoint's seeds under one protocol")
    seeds = {}
    for r in parts:
        if seeds.keys() & r["seeds"].keys():
            raise SystemExit(f"error: seeds {sorted(seeds.keys() & r['seeds'].keys())} are in more than one file")
        seeds.update(r["seeds"])
    return {**parts[0], "seeds": dict(sorted(seeds.items(), key=lambda kv: int(kv[0])))}


def row(paths, time=False) -> str:
    path = paths[0]
    results = pooled(paths)
    seeds = results["seeds"].values()
    rates = [100 * s["success_rate"] for s in seeds]
    push = sum(sum(ok * p for ok, p in zip(s["successes"], s["needs_push"])) for s in seeds)
    n_push = sum(sum(s["needs_push"]) for s in seeds)
    block = np.median([px for s in seeds for px in s["final_block_px"]])
    angle = np.median([deg for s in seeds for deg in s["final_angle_deg"]])
    per_seed = " / ".join(f"{r:.0f}" for r in rates)
    line = (f"| {path.parent.name}/{path.stem} | {per_seed} | {np.mean(rates):.1f} +/- {np.std(rates):.1f} | "
            f"{push} of {n_push} | {block:.0f} px / {angle:.0f} deg |")
    if time:
        episodes = len(next(iter(seeds))["successes"])
        line += f" {np.mean([s['solve_seconds'] for s in seeds]):.0f} s for {episodes} |"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="results JSON files (A+B: one row of both's seeds)")
    parser.add_argument("--time", action="store_true", help="add the solving time of a seed's episodes")
    args = parser.parse_args(argv)
    print("| run / plan | success per seed (%) | mean +/- std | pushes that succeeded | median end: block / angle |"
          + (" CEM solving, one seed |" if args.time else ""))
    print("|---|---|---|---|---|" + ("---|" if args.time else ""))
    for arg in args.results:
        paths = [Path(p) for p in arg.split("+")]
        for path in paths:
            if not path.is_file():
                raise SystemExit(f"error: no results file {path}")
        print(row(paths, args.time))


if __name__ == "__main__":
    main()
