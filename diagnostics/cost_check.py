"""Does the world model's planning cost rank plans the way the real outcome does?

    python diagnostics/cost_check.py --ckpt runs/pusht-cpu-m1 --episodes 20 --samples 64

For the protocol's (start, goal) pairs (``sample_eval_pairs``, the protocol's split: training starts), each
episode gets candidate plans of 5 blocks of 5 actions: the dataset's own 25 actions (which
reach the goal), ``--samples`` draws from CEM's first distribution (N(0, 1) in z-scored
action space), and as many draws around the dataset's plan (its z-scored actions plus
noise of std ``--near``). Every candidate is scored by the model (``plan.py``'s cost: the
predicted slots of the last frame against the goal's, best matching, plus proprio) and is
executed in the env from the start state; its real outcome is the final distance to the
goal state (agent and block position in px, block angle in degrees).

Printed, averaged over episodes:
- the Spearman rank correlation between model cost and real distance (position distance
  plus angle error / 20 degrees * 20 px), over all candidates and over the near ones only;
- the same for the cost of the frames really reached (encoded, no predictor, as the goal is):
  how well the slot space itself ranks outcomes, and how well the model's cost follows it;
- the slot term alone against the block's own outcome (its distance plus angle error), for
  the model's cost and for the frames really reached: whether the slots, and the predictor's
  rollouts of them, tell where the block ends;
- where the dataset's plan ranks in model cost among the random draws (0 = cheapest), and in
  the slot term alone; the spread (std over candidates) of the slot term and of the proprio
  term, which tells which of the two steers the planner;
- how far the model's cheapest candidate really ends from the goal, against the best
  candidate and the median one.
A planner can only steer by this cost: if the correlation is weak, better search (more
samples or iterations) will not help, the model or its slots must get better.

With ``--cem`` each episode also gets the planner's own first solve (``plan.py``'s CEM,
from one observed frame) from the start frame, scored and executed like the others. Its model cost
against the dataset plan's separates two failures: CEM finds a plan the model likes better
than the dataset's that really ends farther away (the model is fooled), or it stops at a
plan the model likes less (the search falls short).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import sample_eval_pairs  # noqa: E402
from pusht import PushTEnv, wrap_angle  # noqa: E402
from plan import PlanConfig, goal_cost, load_world_model, solve_all  # noqa: E402
from predictor import rollout  # noqa: E402


def spearman(a, b):
    """Rank correlation of two 1-d arrays (ties broken by order; fine for continuous values)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def real_outcome(data, start, goal, env_actions):
    """Execute (N, 25, 2) env actions from ``start``. Returns (N, 3): position distance (px,
    agent and block together), block angle error (degrees) and the block's own distance (px)
    to the goal state at the end, and the last observations: pixels (N, H, W, 3) and proprio (N, 4)."""
    out, pixels, proprio = [], [], []
    for actions in env_actions:
        env = PushTEnv(data.config.render_size)
        env.reset(options={"state": data.state[start].astype(np.float64)})
        for a in actions:
            obs, *_ = env.step(a)
        state, target = env.get_state(), data.state[goal]
        out.append((np.linalg.norm(state[:4] - target[:4]),
                    np.degrees(abs(wrap_angle(state[4] - target[4]))), np.linalg.norm(state[2:4] - target[2:4])))
        pixels.append(obs["pixels"])
        proprio.append(obs["proprio"])
    return np.array(out), np.stack(pixels), np.stack(proprio)


def cost_with_history(model, data, start, goal_slots, goal_proprio, plans, h, proprio_weight):
    """The planning cost with ``h`` dataset frames of context (the start frame and
    the ones ``frameskip`` steps apart before it, the first frame of the episode repeated
    where the episode began later) and their dataset actions: what the planner could do
    if it kept the frames it has seen. plans (N, H, A) -> costs (N,)."""
    fs = model.cfg.frameskip
    begin = data.episode_starts[np.searchsorted(data.episode_starts, start, side="right") - 1]
    frames = np.maximum(start - fs * np.arange(h - 1, -1, -1), begin)  # (h,) oldest first
    past = np.stack([data.action[f:f + fs].reshape(-1) if f + fs <= start else np.zeros(2 * fs)
                     for f in frames[:-1]]) if h > 1 else np.zeros((0, 2 * fs))
    past = torch.from_numpy(model.from_env_actions(past.reshape(-1, 2)).astype(np.float32))
    N, H, _ = plans.shape
    actions = torch.cat([past[None].expand(N, -1, -1), plans, plans.new_zeros(N, 1, plans.shape[-1])], 1)
    context = model.encode(data.pixels[frames])[None].expand(N, -1, -1, -1)
    context_proprio = model.proprio(data.proprio[frames])[None].expand(N, -1, -1)
    out = rollout(model.predictor, context, actions, context_proprio, n_future=H, history=h)
    proprio = None if out["proprio"] is None else out["proprio"][:, -1]
    return goal_cost(out["slots"][:, -1], proprio, goal_slots, model.predictor.proprio_features(goal_proprio),
                     proprio_weight).numpy()


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a run folder of train.py (Push-T)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--samples", type=int, default=64, help="random and near candidates each")
    parser.add_argument("--near", type=float, default=0.5, help="std of the noise around the dataset's plan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history", type=int, default=1,
                        help="frames of context for the model (the planner uses 1; >1 takes earlier dataset frames)")
    parser.add_argument("--proprio-weight", type=float, default=1.0)
    parser.add_argument("--no-clip-actions", action="store_true",
                        help="score and execute candidates outside the data's [-1, 1] box as they are")
    parser.add_argument("--cem", action="store_true", help="also score and execute the planner's own first solve")
    parser.add_argument("--goal-alone", action="store_true",
                        help="encode the goal alone (plan.py --goal-alone), not from the start frame's slots")
    parser.add_argument("--out", default="", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    model, data = load_world_model(args.ckpt, torch.device("cpu"))
    protocol = dataclasses.replace(PlanConfig(), proprio_weight=args.proprio_weight,
                                   clip_actions=not args.no_clip_actions)
    fs, H = model.cfg.frameskip, protocol.horizon
    pairs = sample_eval_pairs(data, protocol.split, args.episodes, args.seed, H * fs)
    rng = np.random.default_rng(args.seed)
    rows = []
    for e, (s, g) in enumerate(pairs):
        true_plan = model.from_env_actions(data.action[s:g])  # (H, A) z-scored
        random = rng.standard_normal((args.samples, H, true_plan.shape[1]))
        near = true_plan + args.near * rng.standard_normal((args.samples, H, true_plan.shape[1]))
        plans = torch.from_numpy(np.concatenate([true_plan[None], random, near])).float()
        if protocol.clip_actions:  # keep the plans inside the data's [-1, 1] box (the env would take them outside)
            plans = plans.clamp(*model.action_bounds())
        slots = model.encode(data.pixels[[s]])
        goal = model.encode(data.pixels[[g]], after=None if args.goal_alone else data.pixels[[s]])
        slots = torch.cat([slots, goal])
        proprio = model.proprio(data.proprio[[s, g]])
        if args.cem:  # the planner's plan goes last
            cem_plan = solve_all(protocol, model, data.pixels[[s]], data.proprio[[s]], slots[1:], proprio[1:],
                                 args.seed, e)
            plans = torch.cat([plans, cem_plan.float()])

        def model_cost(weight):  # the planning cost with this proprio weight (0: the slot term alone)
            if args.history == 1:
                return model.costs(slots[:1], proprio[:1], slots[1:], proprio[1:], plans[None], 1, weight)[0].numpy()
            return cost_with_history(model, data, s, slots[1:], proprio[1:], plans, args.history, weight)
        cost, slot_term = model_cost(args.proprio_weight), model_cost(0.0)
        real, last_pixels, last_proprio = real_outcome(data, s, g, model.to_env_actions(plans))
        # the same cost on the frames really reached: the encoder's part of the ranking
        # encoded as the goal is (from the start frame's slots unless --goal-alone)
        after = None if args.goal_alone else np.repeat(data.pixels[[s]], len(last_pixels), 0)
        reached_slots = model.encode(last_pixels, after=after)
        reached = goal_cost(reached_slots, model.proprio(last_proprio), slots[1:], proprio[1:], args.proprio_weight)
        reached_slot_term = goal_cost(reached_slots, None, slots[1:], None, 0.0).numpy()
        n = args.samples
        score = real[:, 0] + real[:, 1]  # 20 degrees of angle weigh as much as 20 px
        block = real[:1 + 2 * n, 2] + real[:1 + 2 * n, 1]  # the block's part of it
        c, r, sc = cost[:1 + 2 * n], reached[:1 + 2 * n].numpy(), score[:1 + 2 * n]  # without CEM's plan
        near_part = slice(1 + n, None)
        best = int(c.argmin())
        rows.append({
            "spearman_all": spearman(c, sc),
            "spearman_near": spearman(c[near_part], sc[near_part]),
            "spearman_encoder": spearman(r, sc),
            "spearman_encoder_near": spearman(r[near_part], sc[near_part]),
            "spearman_model_encoder": spearman(c, r),
            "dataset_plan_rank": float((c[1:1 + n] < c[0]).mean()),
            # the two terms' spread over the candidates: which one steers CEM
            "slot_term_std": float(slot_term[:1 + 2 * n].std()),
            "proprio_term_std": float((c - slot_term[:1 + 2 * n]).std()),
            "dataset_plan_rank_slot_term": float((slot_term[1:1 + n] < slot_term[0]).mean()),
            # the slot term against the block's own outcome: the model's, and the reached frames'
            "spearman_slot_term_block": spearman(slot_term[:1 + 2 * n], block),
            "spearman_encoder_slot_term_block": spearman(reached_slot_term[:1 + 2 * n], block),
            "dataset_plan_real": real[0, :2].tolist(),
            "chosen_real": real[best, :2].tolist(),
            "best_real": real[sc.argmin(), :2].tolist(),
            "median_real": np.median(real[:1 + 2 * n, :2], 0).tolist(),
        })
        if args.cem:
            rows[-1].update(cem_real=real[-1, :2].tolist(), cem_cost_below_dataset=float(cost[-1] < cost[0]),
                            cem_real_below_dataset=float(score[-1] < score[0]),
                            cem_cost_over_dataset=float(cost[-1] / cost[0]),
                            cem_reached_over_dataset=float(reached[-1] / reached[0]))
        print(f"episode {e}: spearman {rows[-1]['spearman_all']:+.2f} (near {rows[-1]['spearman_near']:+.2f}, "
              f"reached frames {rows[-1]['spearman_encoder']:+.2f}), "
              f"dataset plan beats {100 * (1 - rows[-1]['dataset_plan_rank']):.0f} % of random draws, "
              f"chosen ends {real[best, 0]:.0f} px / {real[best, 1]:.0f} deg from the goal"
              + (f"; CEM's plan costs {cost[-1] / cost[0]:.2f} x the dataset plan's (reached frames "
                 f"{reached[-1] / reached[0]:.2f} x) and ends {real[-1, 0]:.0f} px / {real[-1, 1]:.0f} deg away"
                 if args.cem else ""), flush=True)
    summary = {key: float(np.mean([r[key] for r in rows], 0)) if np.ndim(rows[0][key]) == 0
               else np.mean([r[key] for r in rows], 0).tolist() for key in rows[0]}
    print(json.dumps({"ckpt": args.ckpt, "episodes": args.episodes, "samples": args.samples, **summary},
                     indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
