"""Planning with perfect slots: how far do the predictor and CEM get when the encoder is exact?

    python diagnostics/oracle_plan.py --masked 1 --out runs/pusht-oracle-m1 [train.py's flags]

Replaces the slot encoder by the ground-truth state of each Push-T object, one "slot" per
object and frame: the agent [1, 0, x, y, 0, 0] and the T-block [0, 1, x, y, cos a, sin a]
(positions in units of 100 px from the world's centre). Only what one image shows: no
velocities (the proprio token carries the agent's). Trains the `cpu` preset's predictor on
these slots of the `cpu` dataset (train.train_predictor: the same windows, masking with
``--masked`` of the 2 slots, loss and schedule), then runs plan.py's protocol with the
same CEM and cost, the planner reading the env state where it would encode a frame.
If this plans well, the learned slots are what holds planning back; if not, the
predictor, its data or the planner are. ``--ensemble RUN ...`` (ours, a probe) plans with
the predictors of runs trained alike but for ``--seed`` beside this one, and
``--disagreement W`` adds W times their spread to the cost (EnsembleWorldModel);
``--candidates data`` (ours, a probe) plans by ranking the training data's own action windows
in CEM's place (window_plan.py).
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import build_parser, config_from_args, config_to_dict, setup  # noqa: E402
from files import atomic_write_json  # noqa: E402
from data import Windows, load_dataset  # noqa: E402
from pusht import wrap_angle  # noqa: E402
from plan import PlanConfig, WorldModel, check_protocol, evaluate_model  # noqa: E402
from predictor import rollout  # noqa: E402
from config import (PRESETS, TrainConfig, build_predictor, config_hash, data_config, data_dir,  # noqa: E402
                    load_checkpoint, open_dataset)
from train import train_predictor  # noqa: E402
from window_plan import WindowSearch, add_window_flags, misused_flags  # noqa: E402

SLOT_DIM = 6
SCALE, CENTRE = 100.0, 256.0


def object_slots(state):
    """(..., 7) Push-T states -> float32 (..., 2, 6) slots: agent, then block."""
    state = np.asarray(state, np.float64)
    slots = np.zeros(state.shape[:-1] + (2, SLOT_DIM))
    slots[..., 0, 0] = 1
    slots[..., 0, 2:4] = (state[..., 0:2] - CENTRE) / SCALE
    slots[..., 1, 1] = 1
    slots[..., 1, 2:4] = (state[..., 2:4] - CENTRE) / SCALE
    slots[..., 1, 4] = np.cos(state[..., 4])
    slots[..., 1, 5] = np.sin(state[..., 4])
    return slots.astype(np.float32)


def physical(slots):
    """(..., 2, 6) slots -> agent xy (..., 2), block xy (..., 2), block angle (...,) in radians."""
    slots = np.asarray(slots, np.float64)
    return (slots[..., 0, 2:4] * SCALE + CENTRE, slots[..., 1, 2:4] * SCALE + CENTRE,
            np.arctan2(slots[..., 1, 5], slots[..., 1, 4]))


@torch.no_grad()
def rollout_errors(predictor, data, slots, cfg, steps=5, max_windows=2000):
    """Roll the predictor out from one frame (as the planner does) on the dataset's actions
    over validation windows; median errors (px, px, deg) of agent, block and angle after each
    model step, with what predicting no motion would miss by."""
    windows = Windows(data, "val", 1, steps, cfg.frameskip, slots=slots)
    pick = np.linspace(0, len(windows) - 1, min(max_windows, len(windows))).astype(int)
    batch = [windows[i] for i in pick]
    real = np.stack([b["slots"] for b in batch])                               # (B, 1 + K, 2, 6)
    actions = torch.from_numpy(np.stack([b["actions"] for b in batch])).float()
    proprio = torch.from_numpy(np.stack([b["proprio"] for b in batch])).float()
    out = rollout(predictor.eval(), torch.from_numpy(real[:, :1]), actions, proprio[:, :1],
                  n_future=steps, history=predictor.n_history)
    rows = []
    for name, guess in (("model", out["slots"].numpy()), ("no motion", np.repeat(real[:, :1], steps, 1))):
        (pa, pb, pt), (ra, rb, rt) = physical(guess), physical(real[:, 1:])
        errors = [np.linalg.norm(pa - ra, axis=-1), np.linalg.norm(pb - rb, axis=-1),
                  np.degrees(np.abs(wrap_angle(pt - rt)))]          # each (B, K)
        rows.append({"what": name, **{f"{part}_{k + 1}": round(float(np.median(e[:, k])), 2)
                                      for part, e in zip(("agent_px", "block_px", "angle_deg"), errors)
                                      for k in range(steps)}})
    return rows


def add_ensemble_flags(parser):
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="RUN", help="plan with these oracle runs' "
                        "predictors beside this one's (the same flags but --seed; ours, a probe)")
    parser.add_argument("--disagreement", type=float, default=0.0,
                        help="with --ensemble: weight of the members' spread in the cost")


def check_plan_data(path):
    if not (Path(path) / "meta.json").is_file():
        sys.exit(f"error: --plan-data {path} is not a dataset folder (no meta.json)")


def planning_data(path, run_data):
    """Another dataset folder to plan on, z-scored with the run's own statistics (as its model was
    trained); SystemExit if it is no dataset or its frames are not the run's size."""
    check_plan_data(path)
    data = dataclasses.replace(load_dataset(path), stats=run_data.stats)
    if data.config.render_size != run_data.config.render_size:
        sys.exit(f"error: --plan-data {path} has {data.config.render_size} px frames, the run "
                 f"{run_data.config.render_size}")
    return data


def report_rollouts(predictor, data, slots, cfg, path):
    """rollout_errors on the CPU, written to ``path`` and printed a row a line."""
    device = next(predictor.parameters()).device
    errors = rollout_errors(predictor.cpu(), data, slots, cfg)
    predictor.to(device)
    atomic_write_json(path, errors)
    for row in errors:
        print(row["what"] + ": " + "; ".join(
            f"{part} " + " ".join(str(row[f"{part}_{k}"]) for k in range(1, 6))
            for part in ("agent_px", "block_px", "angle_deg")))


class OracleWorldModel(WorldModel):
    """plan.py's world model with the encoder replaced by ``object_slots`` of the env state."""

    def __init__(self, run_cfg, predictor, stats, device):
        super().__init__(run_cfg, None, predictor, stats, device)

    def encode(self, pixels, states=None, after=None):
        if states is None:
            raise ValueError("the oracle world model reads env states: pass states=")
        return torch.from_numpy(object_slots(states)).to(self.device)


class _Member(OracleWorldModel):
    """One predictor of an ensemble; keeps the last slots its cost scored."""

    def predict(self, *args, **kwargs):
        ends, proprio = super().predict(*args, **kwargs)
        self.last = ends
        return ends, proprio


class EnsembleWorldModel(OracleWorldModel):
    """Ours, a probe (--ensemble, --disagreement): predictors trained alike but for --seed plan
    together. A candidate costs the members' mean cost plus ``disagreement`` times their spread,
    each member's last slots' mean squared distance from the members' mean (the cost's slot
    units): where the members part, the data did not pin the rollout down, as on the plans that
    fool one predictor (docs/expert.md). 0 is the plain mean cost."""

    def __init__(self, run_cfg, predictors, stats, device, disagreement):
        super().__init__(run_cfg, predictors[0], stats, device)
        self.members = [_Member(run_cfg, p, stats, device) for p in predictors]
        self.disagreement = disagreement

    def predict(self, slots, proprio, candidates, history, align="right"):
        """The members' mean last slots; no proprio (each member predicts it in its own embedding)."""
        ends = [m.predict(slots, proprio, candidates, history, align)[0] for m in self.members]
        return torch.stack(ends).mean(0), None

    def costs(self, slots, proprio, goal_slots, goal_proprio, candidates, history, proprio_weight, align="right"):
        costs = torch.stack([m.costs(slots, proprio, goal_slots, goal_proprio, candidates, history,
                                     proprio_weight, align) for m in self.members])      # (K, E, N)
        ends = torch.stack([m.last for m in self.members])                              # (K, E, N, S, D)
        self.spread = (ends - ends.mean(0)).pow(2).mean(dim=(0, -2, -1))             # (E, N), kept
        return costs.mean(0) + self.disagreement * self.spread


def ensemble_predictors(cfg, runs, disagreement, device):
    """The finished predictors of the oracle runs ``runs``, each trained with ``cfg`` but for its
    --seed; SystemExit naming the run and what differs otherwise."""
    if not disagreement >= 0 or (disagreement and not runs):
        sys.exit("error: --disagreement weighs an --ensemble's spread: at least 0, with --ensemble; "
                 f"got {disagreement}")
    predictors = []
    for run in runs:
        try:
            ckpt = load_checkpoint(Path(run) / "predictor.pt", config_to_dict(cfg), may_differ=("seed",))
        except (FileNotFoundError, ValueError) as err:
            sys.exit(f"error: --ensemble {run}: {err}")
        if not ckpt["done"]:
            sys.exit(f"error: --ensemble {run}: its predictor is unfinished (oracle_plan.py --resume)")
        predictor = build_predictor(cfg).to(device)
        predictor.load_state_dict(ckpt["model"])
        predictors.append(predictor)
    return predictors


def with_ensemble(model, runs, disagreement):
    """``model`` (an OracleWorldModel) planning with the predictors of ``runs`` beside its own."""
    others = ensemble_predictors(model.cfg, runs, disagreement, model.device)
    if not others:
        return model
    ensemble = EnsembleWorldModel(model.cfg, [model.predictor, *others], model.stats, model.device, disagreement)
    ensemble.checkpoint = {**model.checkpoint, "ensemble": [str(r) for r in runs], "disagreement": disagreement}
    return ensemble


def main(argv=None):
    parser = build_parser(TrainConfig, PRESETS, __doc__.split("\n")[0] + " Every train.py flag "
                          "applies to the predictor; --n-slots and --slot-dim are the oracle's.")
    parser.add_argument("--out", required=True, help="run folder: predictor.pt, log.jsonl, plan-<plan-name>.json")
    parser.add_argument("--plan-seeds", type=int, nargs="+", default=[0, 1, 2], help="planning seeds")
    parser.add_argument("--plan-episodes", type=int, default=50, help="episodes per planning seed")
    parser.add_argument("--gifs", type=int, default=3)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training, and keep the "
                        "seeds plan-<name>.json holds for the same protocol and checkpoint")
    parser.add_argument("--check-only", action="store_true", help="rollout errors only, no planning")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--plan-name", default="oracle", help="results go to <out>/plan-<name>.json")
    parser.add_argument("--plan-split", default=PlanConfig().split, help="where starts and goals are drawn")
    parser.add_argument("--plan-data", default="", help="draw them from this dataset folder (same frame size) "
                        "instead of the run's own: another data's goals for the same model")
    parser.add_argument("--time-align", default=PlanConfig().time_align, help="right | left (ours, earlier)")
    parser.add_argument("--clip-actions", action="store_true", help="clamp CEM candidates to [-1, 1] (ours)")
    parser.add_argument("--init-std", type=float, default=PlanConfig().init_std, help="CEM's first std (the protocol: 1)")
    parser.add_argument("--noise-beta", type=float, default=PlanConfig().noise_beta,
                        help="CEM's noise coloured over time, power 1/f^beta (iCEM's; plan.py's probe)")
    parser.add_argument("--plan-history", type=int, default=PlanConfig().history,
                        help="most frames of context while planning (0: the model's n_history)")
    add_ensemble_flags(parser)
    add_window_flags(parser)
    args = parser.parse_args(argv)
    if misused := misused_flags(args, PlanConfig().iterations):
        sys.exit(f"error: {misused}")
    plan_cfg = PlanConfig(ckpt=args.out, seeds=tuple(args.plan_seeds), episodes=args.plan_episodes,
                          gifs=args.gifs, split=args.plan_split, time_align=args.time_align,
                          clip_actions=args.clip_actions, history=args.plan_history, noise_beta=args.noise_beta,
                          init_std=args.init_std, resume=args.resume)
    try:
        check_protocol(plan_cfg)                               # before any data or training
    except ValueError as err:
        sys.exit(f"error: {err}")
    if args.plan_data:
        check_plan_data(args.plan_data)
    # true states are each frame's own: frame mode, the value every true-state run was made with
    cfg = dataclasses.replace(config_from_args(TrainConfig, PRESETS, args, default_preset="cpu"),
                              n_slots=2, slot_dim=SLOT_DIM, slot_mode="frame")
    if cfg.mask_moments:
        sys.exit("error: true object states have no masks: --mask-moments is for slots")
    if cfg.dataset != "pusht" or not 0 <= cfg.masked <= cfg.n_slots:
        sys.exit(f"error: the oracle is for --dataset pusht with --masked 0, 1 or 2, got {cfg.dataset}, "
                 f"{cfg.masked}")
    ensemble_predictors(cfg, args.ensemble, args.disagreement, "cpu")      # checked before any training
    folder = data_dir(".", data_config(cfg))
    if not (folder / "meta.json").is_file():
        sys.exit(f"error: no {folder}: make it first with python train.py --until data and the same "
                 "data flags (--episodes, --render-size, ...)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"config": config_to_dict(cfg), "data": str(folder),
                                            "encoder": "none, true object states: plan this run with diagnostics/oracle_plan.py"})
    data = open_dataset(cfg, folder)
    slots = object_slots(data.state)
    ctx = setup(args.device, progress=not args.no_progress)
    train_predictor(cfg, data, slots, out, redo=False, resume=args.resume, ctx=ctx)

    predictor = build_predictor(cfg).to(ctx.device)
    ckpt = load_checkpoint(out / "predictor.pt", config_to_dict(cfg))
    predictor.load_state_dict(ckpt["model"])
    model = OracleWorldModel(cfg, predictor, data.stats, ctx.device)
    model.checkpoint = {"path": str(out / "predictor.pt"), "step": ckpt["step"], "done": bool(ckpt["done"]),
                        "config_hash": config_hash(cfg)}   # recorded in the results
    model = with_ensemble(model, args.ensemble, args.disagreement)
    report_rollouts(predictor, data, slots, cfg, out / "rollout-errors.json")
    run_data = data
    if args.plan_data:
        data = planning_data(args.plan_data, data)
        model.checkpoint["goals"] = args.plan_data
        print(f"on {args.plan_data}:")
        report_rollouts(predictor, data, object_slots(data.state), cfg, out / f"rollout-errors-{args.plan_name}.json")
    if args.check_only:
        return
    if args.candidates == "data":
        model.solve_all = WindowSearch(model, run_data, data, args, plan_cfg)
        model.checkpoint.update(model.solve_all.record())
    try:
        results, path = evaluate_model(plan_cfg, model, data, out / f"plan-{args.plan_name}.json",
                                       progress=not args.no_progress)
    except ValueError as err:                                  # e.g. --resume on another protocol's file
        sys.exit(f"error: {err}")
    print(json.dumps({"success_mean": results["success_mean"], "success_std": results["success_std"],
                      "per_seed": [r["success_rate"] for r in results["seeds"].values()]}))


if __name__ == "__main__":
    main()
