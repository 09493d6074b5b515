"""Planning with a perfect world model: plan.py's protocol, CEM and cost, with the simulator in
the predictor's place.

    python diagnostics/sim_plan.py --run runs/oracle10k-expert-m1 [--seeds 0 1 2] [--episodes 50]

On a true-state run of diagnostics/oracle_plan.py, every candidate plan CEM scores is executed
in a fresh copy of the env from the current state (``PushTEnv.simulate``) instead of rolled out
by the predictor. The state it ends in is read as the run's object slots and proprio and scored
by the run's own cost (plan.py's ``goal_cost``: the matched object-state MSE plus the proprio
term, in the run's proprio space through its predictor's proprio embedding). Episodes, goals,
seeds and CEM are the protocol's, so what the success rate misses of 100 % is the planner's and
its cost's, not the model's: the search (300 samples, 30 iterations, a solve every 25 steps) and
what the cost asks of a plan (the goal frame's agent position and velocity as well as the
block's pose). Results go to RUN/plan-sim.json in plan.py's format (``--out``: elsewhere).
Slow: a candidate is 25 env steps (about 1.6 ms), so a seed of 50 episodes takes about half an
hour on one core; ``--samples``, ``--topk`` and ``--iterations`` shrink the search for a quick
look (not the protocol); ``--proprio-weight 0`` scores the object states alone; ``--init-std``,
``--noise-beta`` and ``--clip-actions`` change CEM's samples (probes).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import build_predictor, config_hash, config_to_dict, load_checkpoint, open_dataset, read_run  # noqa: E402
from files import check_results_path  # noqa: E402
from oracle_plan import SLOT_DIM, OracleWorldModel, object_slots, physical  # noqa: E402
from plan import PlanConfig, check_protocol, evaluate_model, goal_cost  # noqa: E402
from pusht import PushTEnv  # noqa: E402


class SimWorldModel(OracleWorldModel):
    """The true-state world model whose rollouts are the simulator's own."""

    def __init__(self, run_cfg, predictor, stats):
        super().__init__(run_cfg, predictor, stats, torch.device("cpu"))
        self.env = PushTEnv(render_size=8)      # only its physics runs: simulate() draws no frame

    def states(self, slots, proprio):
        """Object slots (E, 2, 6) and z-scored proprio (E, 4) -> env states (E, 7): the agent's
        velocity comes from the proprio; the block has none of its own (the space's damping)."""
        agent, block, angle = physical(slots.cpu().numpy())
        velocity = proprio.cpu().numpy()[:, 2:4] * self.stats["proprio_std"][2:4] + self.stats["proprio_mean"][2:4]
        return np.concatenate([agent, block, angle[:, None], velocity], axis=1)

    @torch.no_grad()
    def costs(self, slots, proprio, goal_slots, goal_proprio, candidates, history, proprio_weight,
              align="right"):
        """plan.WorldModel.costs with each candidate executed in the simulator (``history`` and
        ``align`` concern a predictor's context and play no part)."""
        E, N, H, A = candidates.shape
        starts = self.states(slots, proprio)
        actions = self.to_env_actions(candidates.reshape(E * N, H, A)).reshape(E, N, -1, 2)
        final = np.stack([[self.env.simulate(starts[e], actions[e, n]) for n in range(N)] for e in range(E)])
        final_proprio = self.predictor.proprio_features(self.proprio(final[..., [0, 1, 5, 6]]))
        return goal_cost(torch.from_numpy(object_slots(final)), final_proprio, goal_slots[:, None],
                         self.predictor.proprio_features(goal_proprio)[:, None], proprio_weight)


def open_sim_run(run):
    """A true-state run folder -> (its config, folder, dataset, SimWorldModel with its cost)."""
    cfg, info, run_dir = read_run(run, "pusht", "sim_plan.py plans on Push-T")
    if cfg.slot_dim != SLOT_DIM or cfg.n_slots != 2 or not str(info.get("encoder", "")).startswith("none"):
        raise SystemExit(f"error: {run_dir} is not a true-state run of diagnostics/oracle_plan.py")
    ckpt = load_checkpoint(run_dir / "predictor.pt", config_to_dict(cfg))
    predictor = build_predictor(cfg)
    predictor.load_state_dict(ckpt["model"])
    data = open_dataset(cfg, info["data"])
    model = SimWorldModel(cfg, predictor, data.stats)
    # the cost is the run's (its proprio embedding); the rollouts are the simulator's
    model.checkpoint = {"path": str(run_dir / "predictor.pt"), "step": ckpt["step"], "done": bool(ckpt["done"]),
                        "config_hash": config_hash(cfg), "rollouts": "simulator"}
    return cfg, run_dir, data, model


# CEM's search and the cost's proprio weight: the protocol's by default, a probe when changed
SEARCH_FLAGS = {"samples": "candidates an iteration", "topk": "elites an iteration", "iterations": "CEM iterations",
                "proprio_weight": "weight of the proprio term in the cost (0: the object states alone)",
                "init_std": "CEM's first std",
                "noise_beta": "CEM's noise coloured over time, power 1/f^beta (iCEM's; plan.py's probe)",
                "clip_actions": "clamp CEM's candidates to the data's action box (ours)"}


def add_search_flags(parser):
    """One flag per SEARCH_FLAGS field, its default the protocol's (PlanConfig); a switch for a bool."""
    for name, text in SEARCH_FLAGS.items():
        default, flag = getattr(PlanConfig(), name), "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)


def search_of(args):
    """The PlanConfig fields that add_search_flags' flags set."""
    return {name: getattr(args, name) for name in SEARCH_FLAGS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a true-state run folder of diagnostics/oracle_plan.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(PlanConfig().seeds))
    parser.add_argument("--episodes", type=int, default=PlanConfig().episodes, help="episodes per seed")
    add_search_flags(parser)
    parser.add_argument("--gifs", type=int, default=0, help="episodes of the first seed saved as GIFs")
    parser.add_argument("--out", default="", help="results JSON (default RUN/plan-sim.json)")
    parser.add_argument("--resume", action="store_true", help="keep the seeds an interrupted run finished")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg, run_dir, data, model = open_sim_run(args.run)
    out = Path(args.out) if args.out else run_dir / "plan-sim.json"
    check_results_path(out, "sim_plan.py", ("config", "seeds"))
    plan_cfg = PlanConfig(ckpt=str(run_dir), seeds=tuple(args.seeds), episodes=args.episodes,
                          gifs=args.gifs, device="cpu", out=str(out), resume=args.resume, **search_of(args))
    try:
        check_protocol(plan_cfg)
        results, path = evaluate_model(plan_cfg, model, data, out, progress=not args.no_progress)
    except ValueError as err:                                  # a bad flag, or --resume on another protocol's file
        raise SystemExit(f"error: {err}")
    print(f"simulator as the model: success {100 * results['success_mean']:.1f} +/- "
          f"{100 * results['success_std']:.1f} % over seeds {', '.join(results['seeds'])}; {path}")


if __name__ == "__main__":
    main()
