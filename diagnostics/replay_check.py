"""Why replaying a dataset's own actions misses some goals of the planning protocol.

    python diagnostics/replay_check.py --data data/pusht-<hash> --seeds 0 1 2

For the protocol's (start, goal) pairs (``sample_eval_pairs``), the env is set to the start
state and the dataset's actions between start and goal are replayed. With a perfect restore
the replay would retrace the dataset and end on the goal. Printed per seed, once with SWM's
restore (one physics substep after setting the state, ``plan.py``'s default) and once with
an exact restore: goals missed within the 50-step budget, the median position error after
one step, and in how many misses the block was being pushed.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import load_dataset, sample_eval_pairs  # noqa: E402
from pusht import PushTEnv  # noqa: E402


def replay(data, start, goal, budget, restore_substep):
    """Replay the dataset's actions from ``start``; returns (reached the goal, error after one
    step (max abs over agent and block position), error at the goal step)."""
    env = PushTEnv(data.config.render_size, restore_substep=restore_substep)
    _, info = env.reset(options={"state": data.state[start].astype(np.float64),
                                 "goal_state": data.state[goal].astype(np.float64)})
    reached, errors = info["is_success"], []
    actions = np.zeros((budget, 2))
    actions[:goal - start] = data.action[start:goal]
    for k in range(budget):
        _, _, _, _, info = env.step(actions[k])
        reached |= info["is_success"]
        if k < goal - start:
            errors.append(np.abs(info["state"][:4] - data.state[start + k + 1][:4]).max())
    return reached, errors[0], errors[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a Push-T dataset folder (data.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--goal-offset", type=int, default=25)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    data = load_dataset(args.data)
    for restore_substep in (True, False):
        name = "SWM restore (one substep)" if restore_substep else "exact restore"
        for seed in args.seeds:
            pairs = sample_eval_pairs(data, args.split, args.episodes, seed, args.goal_offset)
            runs = [replay(data, s, g, args.budget, restore_substep) for s, g in pairs]
            reached = np.array([r[0] for r in runs])
            pushed = np.array([np.abs(np.diff(data.state[s:g + 1, 2:5], axis=0)).max() > 1e-3 for s, g in pairs])
            print(f"{name}, seed {seed}: missed {np.sum(~reached)}/{len(pairs)} "
                  f"({np.sum(~reached & pushed)} of them while pushing the block); "
                  f"median error after one step {np.median([r[1] for r in runs]):.3f} px, "
                  f"median at the goal step {np.median([r[2] for r in runs]):.3f} px")


if __name__ == "__main__":
    main()
