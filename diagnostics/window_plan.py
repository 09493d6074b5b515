"""Planning over the data's own action windows (ours, a probe): no CEM; the plan is the cheapest
in the model of action windows cut from the run's training episodes.

    python diagnostics/oracle_plan.py ... --resume --out RUN --candidates data [--draws N]
    python diagnostics/sim_failures.py --run RUN --model predictor --candidates data [--draws N]

The trained true-state predictor is fooled by CEM: CEM finds action sequences the predictor
rolls out to the goal and that really end far from it (docs/expert.md). Every candidate here is
25 env actions the expert really took, somewhere in the training data, so the predictor was
trained on actions like them, though not from this start. A solve draws ``draws`` windows
(default CEM's 300 x 30 = 9,000 rollouts, its budget), none from the episode that holds the
protocol's start and goal (its own plan, a window of that episode, would be a lookup of the
answer); each episode and solve draws from its own random stream (plan.episode_generators).
Actions are relative in Push-T (the agent heads for its position plus 100 x the action), so a
window means the same motion from any start. Everything else is plan.py's protocol and cost
(FACTS section 5, App. G: episodes, goals, the matched slot cost, MPC with 25 steps a solve);
only CEM's search is replaced.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import sample_eval_pairs, window_starts  # noqa: E402
from plan import CPU_COST_BATCH, episode_generators  # noqa: E402


def episode_of(data, frames):
    """The episode that holds each of the global frame indices ``frames``."""
    return np.searchsorted(data.episode_starts, frames, side="right") - 1


def data_windows(data, model, steps):
    """Every window of ``steps`` env actions inside one training episode of ``data``, as the
    model's z-scored plans (K, H, A), with each window's episode (K,)."""
    starts = window_starts(data, "train", steps + 1)
    actions = data.action[starts[:, None] + np.arange(steps)]                  # (K, steps, 2)
    return torch.from_numpy(model.from_env_actions(actions)).float(), episode_of(data, starts)


def retrieve_all(cfg, model, slots, proprio, goal_slots, goal_proprio, plans, episode, own_episode, generators,
                 draws):
    """For each problem e: ``draws`` of the windows ``plans`` (K, H, A) drawn without replacement
    with ``generators[e]``, none of episode ``own_episode[e]`` (-1: none held out), scored by the
    model's cost (cfg's history and proprio weight); the cheapest is the plan. -> (E, H, A)"""
    chosen = []
    for e, generator in enumerate(generators):
        pool = np.flatnonzero(episode != own_episode[e])
        pool = pool[torch.randperm(len(pool), generator=generator)[:draws].numpy()]
        costs = torch.cat([model.costs(slots[e:e + 1], proprio[e:e + 1], goal_slots[e:e + 1], goal_proprio[e:e + 1],
                                       plans[pool[i:i + CPU_COST_BATCH]][None].to(model.device), cfg.history,
                                       cfg.proprio_weight, cfg.time_align)[0]
                           for i in range(0, len(pool), CPU_COST_BATCH)])
        chosen.append(plans[pool[int(costs.argmin())]])
    return torch.stack(chosen).to(model.device)


def misused_flags(args):
    """The one-line error for --candidates/--draws flags that do not go together ("" if they do);
    ``args`` holds candidates, draws, clip_actions, init_std and noise_beta."""
    if args.draws < 0 or (args.draws and args.candidates == "cem"):
        return "--draws is a positive count of windows, for --candidates data"
    if args.candidates == "data" and (args.clip_actions or args.init_std != 1 or args.noise_beta):
        return "--clip-actions, --init-std and --noise-beta shape CEM's samples: not for --candidates data"
    return ""


class WindowSearch:
    """plan.solve_all's stand-in (a model's ``solve_all``, which plan.run_seed calls in its place):
    retrieve_all over the windows of ``run_data`` for the protocol's episodes of ``goal_data``.
    The episodes holding the protocol's starts are held out when the goals are the run's own data."""

    def __init__(self, model, run_data, goal_data, draws, steps):
        self.plans, self.episode = data_windows(run_data, model, steps)
        self.same_data = Path(run_data.path) == Path(goal_data.path)
        self.goal_data, self.draws = goal_data, draws

    def __call__(self, cfg, model, pixels, proprio, goal_slots, goal_proprio, seed, solve, states=None):
        pairs = sample_eval_pairs(self.goal_data, cfg.split, cfg.episodes, seed, cfg.goal_offset)
        own = episode_of(self.goal_data, pairs[:, 0]) if self.same_data else np.full(len(pairs), -1)
        return retrieve_all(cfg, model, model.encode(pixels, states), model.proprio(proprio), goal_slots,
                            goal_proprio, self.plans, self.episode, own, episode_generators(seed, len(pairs), solve),
                            self.draws)

    def record(self):
        """What the results' checkpoint records, so --resume tells this search from CEM."""
        return {"candidates": "data", "draws": self.draws}
