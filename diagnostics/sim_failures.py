"""Why planning fails, with a perfect world model or the trained one: each episode's first CEM
solve set beside the dataset's own plan to the same goal.

    python diagnostics/sim_failures.py --run runs/oracle1k-expert-m1 [--seed 0] [--episodes 50]
    python diagnostics/sim_failures.py --run runs/oracle1k-expert-m1 --model predictor [--init-std 2]

The episodes are the protocol's for one seed (plan.py's starts and goals). The first solve runs
as in diagnostics/sim_plan.py (the simulator as the model, the run's cost, the same CEM draws:
the same plan). That plan and the dataset's own 25 actions from the start to the goal are then
executed from the start in the env, with the success test at every step, and both are scored by
the cost, its slot (object-state) and proprio terms apart. An episode whose CEM plan misses
within its 25 steps falls in one of three classes:

    search   the dataset's plan succeeds and costs less: the cost's minimum was there, CEM did
             not find it;
    cost     the dataset's plan succeeds, CEM's costs as little or less and misses: the cost
             prefers a plan that fails to one that succeeds;
    unreached  the dataset's own plan misses as well (from the start as the env resets it, one
             substep after the dataset's state, as plan.py's replay policy runs it).

``--model predictor`` plans with the run's trained predictor instead (oracle_plan.py's planner)
and ranks by its rollouts' cost; the class ``cost`` then says the predictor scores a failing
plan at most as dear as the dataset's plan that succeeds: the model is wrong about it, since the
simulator's own cost ranked every plan of the perfect-model runs as the success test does. Each
record then also holds the simulator's cost of both plans, where the predictor's rollout of
CEM's plan ends and how far that is from where the plan really ends (block px, angle deg), the
same for the dataset's plan, and CEM's plan's action size (rms, z-scored units).

The second solve the protocol allows (steps 26-50) is not run: this is about what one solve can
find. Results: RUN/sim-failures-sS.json (``--model predictor``: RUN/model-failures-sS.json;
``--out``: elsewhere) and a table on stdout; ``--table
FILE ...`` prints one table of several such files' episodes together.
``--proprio-weight``, ``--samples``, ``--topk``, ``--iterations``, ``--init-std``, ``--noise-beta``
and ``--clip-actions`` change the solve (a probe); ``--plan-data DIR`` draws the episodes from
another dataset folder, and ``--ensemble RUN ... --disagreement W`` plans with several
predictors, as oracle_plan.py's flags do; ``--candidates data`` ranks the training data's own
action windows instead of running CEM (window_plan.py; the table's "CEM's plan" is then the
window it chose).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import sample_eval_pairs  # noqa: E402
from files import atomic_write_json, check_results_path  # noqa: E402
from oracle_plan import OracleWorldModel, add_ensemble_flags, physical, planning_data, with_ensemble  # noqa: E402
from plan import PlanConfig, check_protocol, goal_errors, solve_all  # noqa: E402
from pusht import PushTEnv, SUCCESS_ANGLE, SUCCESS_DIST  # noqa: E402
from sim_plan import add_search_flags, open_sim_run, search_of  # noqa: E402
from window_plan import WindowSearch, add_window_flags, misused_flags  # noqa: E402

CLASSES = ("solved", "search", "cost", "unreached")


def execute(render_size, start, goal, actions):
    """Step an env reset to the dataset state ``start`` (as the protocol resets it) through
    ``actions`` (T, 2) toward ``goal``: (whether any step met the success test, the step it first
    did or -1, goal_errors (3,) after the last step, the state (7,) after it)."""
    env = PushTEnv(render_size)
    env.reset(options={"state": start.astype(np.float64), "goal_state": goal})
    first = -1
    for t, action in enumerate(actions):
        _, _, _, _, info = env.step(action)
        if first < 0 and info["is_success"]:
            first = t + 1
    return first >= 0, first, goal_errors(info["state"], goal), info["state"]


def trained_model(sim, run_dir, ensemble=(), disagreement=0.0):
    """The run's trained predictor as oracle_plan.py plans with it (the cost is the same), with
    the predictors of the runs ``ensemble`` beside it as oracle_plan.py's --ensemble."""
    if not sim.checkpoint["done"]:
        raise SystemExit(f"error: {run_dir / 'predictor.pt'} is unfinished: finish it with oracle_plan.py --resume")
    model = OracleWorldModel(sim.cfg, sim.predictor, sim.stats, torch.device("cpu"))
    model.checkpoint = {**sim.checkpoint, "rollouts": "predictor"}
    return with_ensemble(model, ensemble, disagreement)


def predicted_ends(model, slots, proprio, plans, history):
    """The predictor's rollout of each plan (E, H, A) from its start, the one its cost scores
    (plan.WorldModel.predict): its last slots (E, 2, 6)."""
    return model.predict(slots, proprio, plans[:, None], history)[0][:, 0]


def as_state(slots):
    """Slots (E, 2, 6) -> env-state parts (E, 7): agent xy, block xy, angle; velocities 0."""
    agent, block, angle = physical(slots.numpy())
    return np.concatenate([agent, block, angle[:, None], np.zeros((len(agent), 2))], axis=1)


def classify(cem_ok, own_ok, cem_cost, own_cost):
    if cem_ok:
        return "solved"
    if not own_ok:
        return "unreached"
    return "search" if own_cost < cem_cost else "cost"


def dataset_walk(data, model, start, goal):
    """How the dataset's agent gets from frame ``start`` to ``goal``: the length of its path (px)
    and its actions' root mean square in CEM's z-scored units (where CEM starts with std 1)."""
    path = np.linalg.norm(np.diff(data.state[start:goal + 1, :2], axis=0), axis=1).sum()
    z = model.from_env_actions(data.action[start:goal])
    return {"agent_path_px": round(float(path), 2), "action_rms_z": round(float(np.sqrt(np.mean(z ** 2))), 3)}


def first_solves(plan_cfg, model, data, seed, sim=None, search=solve_all):
    """One record per episode of ``seed``: costs, success and end errors of CEM's first plan and
    of the dataset's own plan, and the class. ``model`` plans and ranks; ``sim``, when it is not
    the model (a SimWorldModel), adds the simulator's costs and where the model's rollouts of
    both plans end. ``search``: what solves (window_plan.WindowSearch: the data's windows, not CEM)."""
    pairs = sample_eval_pairs(data, plan_cfg.split, plan_cfg.episodes, seed, plan_cfg.goal_offset)
    size = data.config.render_size
    starts = []
    for s, g in pairs:   # the protocol's start: the dataset state as the env sets it
        env = PushTEnv(size)
        _, info = env.reset(options={"state": data.state[s].astype(np.float64),
                                     "goal_state": data.state[g].astype(np.float64)})
        starts.append(info["state"])
    starts = np.stack(starts)
    goals = data.state[pairs[:, 1]].astype(np.float64)
    goal_slots = model.encode(None, goals)
    goal_proprio = model.proprio(data.proprio[pairs[:, 1]])
    proprio = model.proprio(starts[:, [0, 1, 5, 6]].astype(np.float32))
    no_pixels = np.zeros((len(pairs), 1))                                    # the oracle reads states
    plan = search(plan_cfg, model, no_pixels, starts[:, [0, 1, 5, 6]].astype(np.float32), goal_slots,
                  goal_proprio, seed, 0, starts)                                # (E, H, A)
    own = torch.from_numpy(model.from_env_actions(np.stack([data.action[s:g] for s, g in pairs]))).float()
    candidates = torch.stack([plan, own], dim=1)                              # (E, 2, H, A)
    slots = model.encode(None, starts)
    args = (slots, proprio, goal_slots, goal_proprio, candidates, plan_cfg.history)
    total = model.costs(*args, plan_cfg.proprio_weight).numpy()
    slot_term = model.costs(*args, 0.0).numpy()
    spread = getattr(model, "spread", None)                  # an ensemble's: its members' spread
    if sim is not None:
        sim_total = sim.costs(*args, plan_cfg.proprio_weight).numpy()
        predicted = [as_state(predicted_ends(model, slots, proprio, c, plan_cfg.history)) for c in (plan, own)]
    records = []
    for e, (s, g) in enumerate(pairs):
        cem_ok, cem_step, cem_end, cem_state = execute(size, data.state[s], goals[e],
                                                       model.to_env_actions(plan[e:e + 1])[0])
        own_ok, own_step, own_end, own_state = execute(size, data.state[s], goals[e], data.action[s:g])
        start_err = goal_errors(starts[e], goals[e])
        record = {
            "start": int(s), "goal": int(g),
            "needs_push": bool(start_err[1] >= SUCCESS_DIST or start_err[2] >= np.degrees(SUCCESS_ANGLE)),
            "start_errors": start_err.round(2).tolist(),
            "cem": {"success": cem_ok, "first_step": cem_step, "end_errors": cem_end.round(2).tolist(),
                    "cost": float(total[e, 0]), "slot_term": float(slot_term[e, 0]),
                    "action_rms_z": round(float(plan[e].pow(2).mean().sqrt()), 3)},
            "own": {"success": own_ok, "first_step": own_step, "end_errors": own_end.round(2).tolist(),
                    "cost": float(total[e, 1]), "slot_term": float(slot_term[e, 1]), **dataset_walk(data, model, s, g)},
            "class": classify(cem_ok, own_ok, total[e, 0], total[e, 1])}
        if spread is not None:
            record["cem"]["spread"], record["own"]["spread"] = float(spread[e, 0]), float(spread[e, 1])
        if sim is not None:
            record["cem"]["sim_cost"], record["own"]["sim_cost"] = float(sim_total[e, 0]), float(sim_total[e, 1])
            for who, real, ends in (("cem", cem_state, predicted[0]), ("own", own_state, predicted[1])):
                record[who]["predicted_end_errors"] = goal_errors(ends[e], goals[e]).round(2).tolist()
                record[who]["model_error"] = goal_errors(ends[e], real)[1:].round(2).tolist()
        records.append(record)
    return records


def summary(records):
    """Markdown rows: per class, the episodes, those needing a push, the median end errors (agent
    px, block px, angle deg) and costs of CEM's plan and of the dataset's, and how far the
    dataset's agent walks (its path against the straight line from its start to its goal) with
    how large its actions are (root mean square, in CEM's z-scored units: CEM starts at std 1).
    A last row holds every episode, and a line counts those where the dataset's plan is the cheaper.
    Files that hold them add CEM's plan's action size, and for a trained predictor how far its
    rollout of CEM's plan ends from where the plan really ends and the simulator's costs, and for
    an ensemble its members' spread on both plans."""
    plan_size = all("action_rms_z" in r["cem"] for r in records)
    trained = all("sim_cost" in r["cem"] for r in records)
    ensemble = all("spread" in r["cem"] for r in records)
    head = ["class", "episodes", "need a push", "CEM's plan ends: agent / block px, angle deg", "its cost (slot term)",
            "dataset's plan ends", "its cost (slot term)", "dataset's agent: path / straight px", "its actions, rms z"]
    head += ["CEM's actions, rms z"] * plan_size
    head += ["model's rollout off the real end, block px, angle deg: CEM's plan / dataset's",
             "simulator's cost: CEM's / dataset's"] * trained
    head += ["members' spread: CEM's / dataset's"] * ensemble
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in (*CLASSES, "all"):
        rows = records if name == "all" else [r for r in records if r["class"] == name]
        if not rows:
            continue
        cells = [name, str(len(rows)), str(sum(r["needs_push"] for r in rows))]
        for who in ("cem", "own"):
            end = np.median([r[who]["end_errors"] for r in rows], axis=0)
            cells.append(" / ".join(f"{v:.0f}" for v in end[:2]) + f", {end[2]:.0f}")
            cells.append(f"{np.median([r[who]['cost'] for r in rows]):.4f} "
                         f"({np.median([r[who]['slot_term'] for r in rows]):.4f})")
        cells.append(f"{np.median([r['own']['agent_path_px'] for r in rows]):.0f} / "
                     f"{np.median([r['start_errors'][0] for r in rows]):.0f}")
        cells.append(f"{np.median([r['own']['action_rms_z'] for r in rows]):.2f}")
        if plan_size:
            cells.append(f"{np.median([r['cem']['action_rms_z'] for r in rows]):.2f}")
        if trained:
            cells.append(" / ".join("{:.0f}, {:.0f}".format(*np.median([r[who]["model_error"] for r in rows], axis=0))
                                    for who in ("cem", "own")))
            cells.append(" / ".join(f"{np.median([r[who]['sim_cost'] for r in rows]):.4f}" for who in ("cem", "own")))
        if ensemble:
            cells.append(" / ".join(f"{np.median([r[who]['spread'] for r in rows]):.4f}" for who in ("cem", "own")))
        lines.append("| " + " | ".join(cells) + " |")
    cheaper = sum(r["own"]["cost"] < r["cem"]["cost"] for r in records)
    lines.append(f"\nthe dataset's plan costs less than CEM's in {cheaper} of {len(records)} episodes")
    if ensemble:
        lines[-1] += f"; the members part more on it in {sum(r['own']['spread'] > r['cem']['spread'] for r in records)}"
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a true-state run folder of diagnostics/oracle_plan.py")
    parser.add_argument("--table", nargs="+", default=[], metavar="JSON",
                        help="print one table of these results files' episodes together (seeds pooled), solve nothing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=PlanConfig().episodes)
    parser.add_argument("--model", choices=("simulator", "predictor"), default="simulator",
                        help="what CEM plans with: the simulator (a perfect model) or the run's trained predictor")
    parser.add_argument("--plan-data", default="", help="draw starts and goals from this dataset folder instead "
                        "of the run's own (as oracle_plan.py --plan-data)")
    add_search_flags(parser)
    add_window_flags(parser)
    add_ensemble_flags(parser)
    parser.add_argument("--out", default="", help="results JSON (default RUN/sim-failures-sSEED.json, "
                        "with --model predictor RUN/model-failures-sSEED.json)")
    args = parser.parse_args(argv)
    if args.table:
        files = [json.loads(Path(f).read_text()) for f in args.table]
        records = [r for f in files for r in f["episodes"]]
        print(f"seeds {', '.join(str(f['seed']) for f in files)}: " + ", ".join(
            f"{n} {sum(r['class'] == n for r in records)}" for n in CLASSES) + f" of {len(records)}")
        print(summary(records))
        return
    if not args.run:
        parser.error("give --run (or --table)")
    cfg, run_dir, data, sim = open_sim_run(args.run)
    if (args.ensemble or args.disagreement) and args.model == "simulator":
        parser.error("--ensemble and --disagreement are for --model predictor")
    model = sim if args.model == "simulator" else trained_model(sim, run_dir, args.ensemble, args.disagreement)
    if misused := misused_flags(args, args.iterations):
        parser.error(misused)
    prefix = "sim" if args.model == "simulator" else "model"
    out = Path(args.out) if args.out else run_dir / f"{prefix}-failures-s{args.seed}.json"
    plan_cfg = PlanConfig(ckpt=str(run_dir), seeds=(args.seed,), episodes=args.episodes, device="cpu",
                          **search_of(args))
    try:
        check_results_path(out, "sim_failures.py", ("episodes", "summary"))
        check_protocol(plan_cfg)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    run_data = data
    if args.plan_data:
        data = planning_data(args.plan_data, data)
    search = solve_all
    if args.candidates == "data":
        search = WindowSearch(model, run_data, data, args, plan_cfg)
    print(f"solving the first 25 steps of {args.episodes} episodes of seed {args.seed} with the {args.model} "
          "(with the protocol's search on one core: the simulator about 15 s an episode)...", flush=True)
    records = first_solves(plan_cfg, model, data, args.seed, None if model is sim else sim, search)
    counts = {name: sum(r["class"] == name for r in records) for name in CLASSES}
    atomic_write_json(out, {"run": str(run_dir), "seed": args.seed, "checkpoint": model.checkpoint,
                            "goals": str(data.path),
                            "solve": {**search_of(args), **(search.record() if search is not solve_all else {})},
                            "summary": counts, "episodes": records})
    print(f"seed {args.seed}, first solve with the {args.model} as the model: " +
          ", ".join(f"{n} {c}" for n, c in counts.items()) + f" of {len(records)}; {out}")
    print(summary(records))


if __name__ == "__main__":
    main()
