"""How well a Push-T predictor knows where its own agent goes: predicted against real agent
position, step by step along the dataset's plans, and at the end of the planner's plans.

    python diagnostics/agent_check.py --ckpt runs/pusht-cpu-m1 [--episodes 50] [--cem 20]

For the protocol's start frames of seed 0, rolls the predictor out from one frame (as the
planner does) on the dataset's own 25 actions and prints, after each of the 5 model steps,
the median distance (px) between the predicted and the real agent position, next to the
distance the agent really moved (what predicting no motion would miss by). With --cem N it
also solves the first N episodes with the planner's CEM, executes each plan, and compares
where the model and the env put the agent at the end, for the CEM plan and the dataset
plan, and how far each really ends from the goal's agent position.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cost_check import real_outcome  # noqa: E402
from data import sample_eval_pairs  # noqa: E402
from plan import PlanConfig, load_world_model, solve_all  # noqa: E402
from predictor import rollout  # noqa: E402


def predicted_proprio(model, pixels, proprio, plans):
    """Roll plans (E, H, A) out from one frame each; returns raw proprio (E, H, 4)."""
    if model.predictor.proprio_space != "raw":
        raise ValueError("agent_check reads the agent from predicted raw proprio: it needs a run trained "
                         "with --proprio-space raw")
    E, H, A = plans.shape
    actions = torch.cat([plans, plans.new_zeros(E, 1, A)], dim=1)
    with torch.no_grad():
        out = rollout(model.predictor, model.encode(pixels)[:, None], actions,
                      model.proprio(proprio)[:, None], n_future=H, history=model.predictor.n_history)
    mean, std = np.array(model.stats["proprio_mean"]), np.array(model.stats["proprio_std"])
    return out["proprio"].cpu().numpy() * std + mean


def distance(a, b):
    return np.linalg.norm(np.asarray(a)[..., :2] - np.asarray(b)[..., :2], axis=-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a run folder of train.py (Push-T)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--cem", type=int, default=0, help="also plan and execute this many episodes")
    args = parser.parse_args()
    model, data = load_world_model(args.ckpt, torch.device("cpu"))
    fs, H = model.cfg.frameskip, PlanConfig().horizon
    pairs = sample_eval_pairs(data, "val", args.episodes, seed=0)
    starts = pairs[:, 0]
    dataset_env = np.stack([data.action[s:s + H * fs] for s in starts])  # (E, 25, 2)
    dataset_plans = torch.from_numpy(model.from_env_actions(dataset_env).astype(np.float32))
    pred = predicted_proprio(model, data.pixels[starts], data.proprio[starts], dataset_plans)
    print(f"{args.ckpt}, dataset plans of {len(starts)} episodes (median px):")
    for k in range(H):
        real = data.proprio[starts + fs * (k + 1)]
        print(f"  after {fs * (k + 1):2d} env steps: predicted agent off by {np.median(distance(pred[:, k], real)):5.1f}, "
              f"agent moved {np.median(distance(data.proprio[starts], real)):5.1f}")
    if args.cem:
        E = min(args.cem, len(starts))
        pixels, proprio = data.pixels[starts[:E]], data.proprio[starts[:E]]
        goal = data.proprio[pairs[:E, 1]]
        goal_slots = model.encode(data.pixels[pairs[:E, 1]], after=pixels)  # as plan.py encodes it
        cem_plans = solve_all(PlanConfig(), model, pixels, proprio, goal_slots,
                              model.proprio(goal), seed=0, solve=0)
        for name, plans, env_actions in (("dataset", dataset_plans[:E], dataset_env[:E]),
                                         ("cem", cem_plans, model.to_env_actions(cem_plans))):
            end_pred = predicted_proprio(model, pixels, proprio, plans)[:, -1]
            end_real = np.stack([real_outcome(data, s, g, actions[None])[2][0]  # executed, (4,)
                                 for (s, g), actions in zip(pairs[:E], env_actions)])
            print(f"  {name:7s} plans, {E} episodes, at the end (median px): predicted agent off by "
                  f"{np.median(distance(end_pred, end_real)):5.1f}; to the goal's agent: predicted "
                  f"{np.median(distance(end_pred, goal)):5.1f}, real {np.median(distance(end_real, goal)):5.1f}")


if __name__ == "__main__":
    main()
