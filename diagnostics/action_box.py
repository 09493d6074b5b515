"""How often the planner executes actions outside the [-1, 1] box of the data's actions, and
what clipping them (as plan.py did before ca7b642) changes.

    python diagnostics/action_box.py --counts box.json [--clip] -- ORACLE_PLAN_FLAGS...

Runs ``diagnostics/oracle_plan.py`` with the given flags (train or reuse a true-state run, then
plan it) while every ``PushTEnv.step`` counts the actions it is given whose largest coordinate
exceeds 1, and the largest seen. ``--clip`` clips each action to [-1, 1] before the env takes
it, the earlier planner's behaviour; without it the env takes the plan as it is, as now. The
counts go to ``--counts`` (JSON) when the run ends; the planning results where oracle_plan.py
writes them (give each mode its own ``--plan-name``).
"""

import argparse
import atexit
import json
import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pusht  # noqa: E402


def count_actions(counts, clip):
    """Wrap ``PushTEnv.step`` to count the actions outside [-1, 1] in ``counts`` (and clip them
    first when ``clip``)."""
    step = pusht.PushTEnv.step

    def counted_step(env, action):
        action = np.asarray(action, dtype=np.float64)
        largest = float(np.abs(action).max())
        counts["steps"] += 1
        counts["outside"] += int(largest > 1.0)
        counts["largest"] = max(counts["largest"], largest)
        return step(env, np.clip(action, -1.0, 1.0) if clip else action)

    pusht.PushTEnv.step = counted_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", required=True, help="where to write the counts (JSON)")
    parser.add_argument("--clip", action="store_true", help="clip executed actions to [-1, 1] (the earlier planner)")
    parser.add_argument("plan_args", nargs=argparse.REMAINDER, help="-- then diagnostics/oracle_plan.py's flags")
    args = parser.parse_args(argv)
    plan_args = args.plan_args[1:] if args.plan_args[:1] == ["--"] else args.plan_args
    counts = {"steps": 0, "outside": 0, "largest": 0.0, "clipped": args.clip}
    count_actions(counts, args.clip)
    atexit.register(lambda: Path(args.counts).write_text(json.dumps(counts, indent=1)))
    sys.argv = ["diagnostics/oracle_plan.py", *plan_args]
    runpy.run_path(str(ROOT / "diagnostics" / "oracle_plan.py"), run_name="__main__")


if __name__ == "__main__":
    main()
