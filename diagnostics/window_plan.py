"""Planning over the data's own action windows (ours, a probe): no CEM; the plan is the cheapest
in the model of action windows cut from the run's training episodes.

    python diagnostics/window_plan.py --ckpt RUN [plan.py's flags] [--draws N] [--refine-iterations R]
    python diagnostics/oracle_plan.py ... --resume --out RUN --candidates data [--draws N]
    python diagnostics/sim_failures.py --run RUN --model predictor --candidates data [--draws N]

The first plans a train.py run (learned slots or patch tokens) through plan.py's protocol, the
others true-state runs.

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
only CEM's search is replaced. ``--refine-iterations R`` spends the last R of CEM's iterations on
a narrow CEM around the chosen window (first std ``--refine-std``), and draws R x samples fewer
windows, so a solve scores as many rollouts as CEM's.
"""

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import build_parser, config_from_args  # noqa: E402
from files import check_results_path, error_line  # noqa: E402
from data import sample_eval_pairs, window_starts  # noqa: E402
from plan import (CPU_COST_BATCH, PRESETS, PlanConfig, cem, check_protocol, episode_generators,  # noqa: E402
                  evaluate_model, load_world_model)


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


def refine(cfg, model, slots, proprio, goal_slots, goal_proprio, start, generators, std, iterations):
    """plan.cem over offsets from each problem's ``start`` plan (E, H, A), ``iterations`` of them
    with first std ``std``: its first mean is the start plan, scored as candidate 0. -> (E, H, A)"""
    def cost_fn(offsets):                                      # (E, N, H, A) -> (E, N), a call an episode
        return torch.cat([model.costs(slots[e:e + 1], proprio[e:e + 1], goal_slots[e:e + 1], goal_proprio[e:e + 1],
                                      start[e:e + 1, None] + offsets[e:e + 1], cfg.history, cfg.proprio_weight,
                                      cfg.time_align) for e in range(len(start))])
    narrow = dataclasses.replace(cfg, init_std=std, iterations=iterations, noise_beta=0.0)
    return start + cem(cost_fn, len(start), start.shape[1], start.shape[2], generators, narrow, model.device)


def add_window_flags(parser, choice=True):
    """--draws, --refine-iterations and --refine-std (and, with ``choice``, --candidates cem | data)."""
    if choice:
        parser.add_argument("--candidates", choices=("cem", "data"), default="cem", help="data: no CEM; each "
                            "solve ranks --draws action windows of the training episodes (ours, a probe; window_plan.py)")
    parser.add_argument("--draws", type=int, default=0, help="windows a solve (default: CEM's samples x its "
                        "iterations less --refine-iterations, CEM's rollout budget)")
    parser.add_argument("--refine-iterations", type=int, default=0,
                        help="CEM iterations around the chosen window, of CEM's budget (0: none)")
    parser.add_argument("--refine-std", type=float, default=0.25, help="their first std, z-scored actions")


def misused_flags(args, iterations):
    """The one-line error for window flags that do not go together ("" if they do); ``args`` holds
    candidates, draws, refine_iterations, refine_std, clip_actions, init_std and noise_beta;
    ``iterations``: CEM's."""
    if args.candidates == "cem" and (args.draws or args.refine_iterations):
        return "--draws and --refine-iterations are for --candidates data"
    if args.draws < 0 or not 0 <= args.refine_iterations < iterations or args.refine_std <= 0:
        return (f"need --draws >= 0 (0: the budget's), 0 <= --refine-iterations < CEM's {iterations} iterations, "
                "--refine-std > 0")
    if args.candidates == "data" and (args.clip_actions or args.init_std != 1 or args.noise_beta):
        return "--clip-actions, --init-std and --noise-beta shape CEM's samples: not for --candidates data"
    return ""


class WindowSearch:
    """plan.solve_all's stand-in (a model's ``solve_all``, which plan.run_seed calls in its place):
    retrieve_all over the windows of ``run_data`` for the protocol's episodes of ``goal_data``.
    The episodes holding the protocol's starts are held out when the goals are the run's own data."""

    def __init__(self, model, run_data, goal_data, args, cfg):
        """``args``: add_window_flags' values; ``cfg``: the PlanConfig (CEM's budget and horizon)."""
        self.plans, self.episode = data_windows(run_data, model, cfg.horizon * model.cfg.frameskip)
        self.same_data = Path(run_data.path) == Path(goal_data.path)
        self.goal_data, self.refine_iterations, self.refine_std = goal_data, args.refine_iterations, args.refine_std
        self.draws = args.draws or cfg.samples * (cfg.iterations - args.refine_iterations)

    def __call__(self, cfg, model, pixels, proprio, goal_slots, goal_proprio, seed, solve, states=None):
        pairs = sample_eval_pairs(self.goal_data, cfg.split, cfg.episodes, seed, cfg.goal_offset)
        own = episode_of(self.goal_data, pairs[:, 0]) if self.same_data else np.full(len(pairs), -1)
        slots, proprio, generators = model.encode(pixels, states), model.proprio(proprio), episode_generators(
            seed, len(pairs), solve)
        plan = retrieve_all(cfg, model, slots, proprio, goal_slots, goal_proprio, self.plans, self.episode, own,
                            generators, self.draws)
        if self.refine_iterations:
            plan = refine(cfg, model, slots, proprio, goal_slots, goal_proprio, plan, generators, self.refine_std,
                          self.refine_iterations)
        return plan

    def record(self):
        """What the results' checkpoint records, so --resume tells this search from CEM."""
        refined = {"refine_iterations": self.refine_iterations, "refine_std": self.refine_std}
        return {"candidates": "data", "draws": self.draws, **(refined if self.refine_iterations else {})}


def main(argv=None):
    """plan.py's protocol on a train.py run, with WindowSearch in CEM's place."""
    parser = build_parser(PlanConfig, PRESETS, __doc__.split("\n")[0])
    add_window_flags(parser, choice=False)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (a line per seed still)")
    args = parser.parse_args(argv)
    cfg = config_from_args(PlanConfig, PRESETS, args, default_preset="paper")
    flags = SimpleNamespace(candidates="data", **{k: getattr(args, k) for k in (
        "draws", "refine_iterations", "refine_std")}, **{k: getattr(cfg, k) for k in (
            "clip_actions", "init_std", "noise_beta")})
    misused = misused_flags(flags, cfg.iterations)
    if misused or cfg.policy != "cem" or not cfg.ckpt:
        sys.exit(f"error: {misused or 'need --ckpt RUN, and --policy cem (its search is replaced)'}")
    run_dir = Path(cfg.ckpt) if Path(cfg.ckpt).is_dir() else Path(cfg.ckpt).parent
    out = Path(cfg.out) if cfg.out else run_dir / "plan-data.json"
    try:
        check_protocol(cfg)
        check_results_path(out, "window_plan.py", ("config", "seeds"))
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
        model, data = load_world_model(cfg.ckpt, device, cfg.precision, cfg.allow_unfinished)
        model.solve_all = WindowSearch(model, data, data, flags, cfg)
        model.checkpoint.update(model.solve_all.record())
        results, out = evaluate_model(cfg, model, data, out, progress=not args.no_progress)
    except (ValueError, OSError, RuntimeError, FloatingPointError) as err:  # RuntimeError: a bad --device
        sys.exit(f"error: {error_line(err)}")
    print(f"data's windows: success {100 * results['success_mean']:.1f} +/- {100 * results['success_std']:.1f} % "
          f"over {len(results['seeds'])} seeds; {results['seconds_per_solve']:.2f} s per episode solve; wrote {out}")


if __name__ == "__main__":
    main()
