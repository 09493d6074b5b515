"""The masking test on Push-T's true states: do the block's forecast and attention follow the pushes?

    python diagnostics/masking_pusht.py --runs runs/oracle1k-m0 runs/oracle1k-m1

Push-T's counterpart of masking_test.py, on runs of diagnostics/oracle_plan.py (a true-state slot
for the agent and one for the block, with the action and proprio nodes). On every validation
window of the run's data (history 3, one predicted frame, frameskip 5), with every history frame
visible and the predicted frame hidden, as a rollout sees it:

1. interaction error: the predicted block's position (px) and angle (deg) error, split by whether
   it is pushed in the predicted window (it moves more than 0.5 px or 0.005 rad over those 5 env
   steps, diagnostics/data_motion.py's test), beside no motion and constant velocity (the last
   two history frames extrapolated);
2. attention: with the block hidden in the predicted frame, the share of its attention (softmax
   weights averaged over heads and layers) on the agent's tokens, of all its attention to tokens
   other than its own (the agent's, the action and proprio nodes); its AUROC against "pushed"
   (0.5: the block's attention does not know when it is pushed), and the mean share in pushed
   and in resting windows (in the JSON also the shares on the action nodes, and the AUROC of
   the share on the agent's and the action's tokens together). The same with the block hidden in history frames 1-2, as the object
   mask hides it in training.

No counterfactual rollout: the agent is in every frame of Push-T's data, so a history without it
is a kind of input the predictor never saw (collide's data has absent objects). Writes
RUN/masking-pusht.json for each run and prints one markdown row per run, then, where a data
and M have several runs (training seeds), their mean +/- std.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import config_from_dict  # noqa: E402
from config import TrainConfig, build_predictor, data_config, data_dir, load_checkpoint, open_dataset  # noqa: E402
from data import Windows  # noqa: E402
from files import atomic_write_json, read_json  # noqa: E402
from masking_table import cell, dig  # noqa: E402
from masking_test import auroc, hidden_rows  # noqa: E402
from oracle_plan import SLOT_DIM, object_slots, physical  # noqa: E402
from pusht import wrap_angle  # noqa: E402

AGENT, BLOCK = 0, 1       # slot order of oracle_plan.object_slots
MOVES_PX, MOVES_RAD = 0.5, 0.005


def load_run(run):
    """(config, predictor in eval mode) of an oracle_plan.py run folder; exits on another kind."""
    path = Path(run) / "config.json"
    if not path.is_file():
        sys.exit(f"error: {path} is missing: expected a run folder of diagnostics/oracle_plan.py")
    info = read_json(path)
    cfg = config_from_dict(TrainConfig, info["config"])
    if cfg.dataset != "pusht" or (cfg.n_slots, cfg.slot_dim) != (2, SLOT_DIM):
        sys.exit(f"error: {run} is not a Push-T true-state run of diagnostics/oracle_plan.py")
    predictor = build_predictor(cfg)
    predictor.load_state_dict(load_checkpoint(Path(run) / "predictor.pt", info["config"])["model"])
    return cfg, predictor.eval()


def block_shares(predictor, batch, where, h):
    """(B, 2): the share of the hidden block's attention on the agent's tokens and on the action
    nodes, of its attention to every token but its own; the block hidden in the predicted frame
    ("future") or in history frames 1..h-1 ("history")."""
    rows = hidden_rows(predictor, batch["slots"], BLOCK, where, h, batch["actions"], batch["proprio"])
    S = batch["slots"].shape[2]                              # token S of a frame: its action node
    return rows[:, [AGENT, S]] / np.maximum(1 - rows[:, BLOCK:BLOCK + 1], 1e-12)


def measure(cfg, predictor, data, batch_size=512):
    """The run's interaction errors and attention scores on the validation windows."""
    h = cfg.n_history
    windows = Windows(data, "val", h, cfg.n_future, cfg.frameskip, slots=object_slots(data.state))
    errors = {(who, part): [] for who in ("model", "no motion", "constant velocity") for part in ("px", "deg")}
    pushed, shares = [], {"future": [], "history": []}
    for start in range(0, len(windows), batch_size):
        batch = windows.batch(range(start, min(start + batch_size, len(windows))))
        state = batch["state"].numpy().astype(np.float64)                   # (B, T, 7)
        mask = torch.zeros(batch["slots"].shape[:3], dtype=torch.bool)
        mask[:, h:] = True
        hidden = batch["slots"].masked_fill(mask[..., None], 0)
        with torch.no_grad():
            pred = predictor(hidden, mask, batch["actions"], batch["proprio"], n_history=h)["slots"][:, h]
        _, block, angle = physical(pred.numpy())
        truth, last, before = state[:, h], state[:, h - 1], state[:, h - 2]
        guesses = {"model": (block, angle), "no motion": (last[:, 2:4], last[:, 4]),
                   "constant velocity": (2 * last[:, 2:4] - before[:, 2:4],
                                         last[:, 4] + wrap_angle(last[:, 4] - before[:, 4]))}
        for who, (xy, a) in guesses.items():
            errors[(who, "px")].append(np.linalg.norm(xy - truth[:, 2:4], axis=-1))
            errors[(who, "deg")].append(np.degrees(np.abs(wrap_angle(a - truth[:, 4]))))
        pushed.append((np.linalg.norm(truth[:, 2:4] - last[:, 2:4], axis=-1) > MOVES_PX)
                      | (np.abs(wrap_angle(truth[:, 4] - last[:, 4])) > MOVES_RAD))
        for where in shares:
            shares[where].append(block_shares(predictor, batch, where, h))
    pushed = np.concatenate(pushed)
    result = {"windows": int(len(pushed)), "pushed windows": int(pushed.sum()), "error": {}, "attention": {}}
    for (who, part), values in errors.items():
        values = np.concatenate(values)
        for label, keep in (("pushed", pushed), ("resting", ~pushed)):
            result["error"][f"{who}, {label}, {part}"] = round(float(values[keep].mean()), 3)
    for where, values in shares.items():
        values = np.concatenate(values)
        result["attention"][where] = {"auroc": round(auroc(values[:, 0], pushed), 4),
                                      "auroc, agent and action": round(auroc(values.sum(axis=1), pushed), 4)} | {
            f"{token} share, {label}": round(float(values[keep, i].mean()), 4)
            for i, token in enumerate(("agent", "action")) for label, keep in (("pushed", pushed), ("resting", ~pushed))}
    return result


SUMMARY = [  # (header, the keys down to each number of the cell) of the table over seeds
    ("block pushed: model / const. velocity / no motion (px)",
     [("error", f"{who}, pushed, px") for who in ("model", "constant velocity", "no motion")]),
    ("block pushed: model (deg)", [("error", "model, pushed, deg")]),
    ("block resting: model (px / deg)", [("error", "model, resting, px"), ("error", "model, resting, deg")]),
    ("AUROC of the block's attention on the agent, future / history",
     [("attention", "future", "auroc"), ("attention", "history", "auroc")]),
    ("the same on agent and action, future", [("attention", "future", "auroc, agent and action")]),
]


def summary_rows(results):
    """Markdown rows, one per (data, M), mean +/- std over the seeds: {(data, M): [results]}."""
    out = []
    for (data, m), runs in sorted(results.items()):
        cells = [data, str(m), str(len(runs))]
        for _, paths in SUMMARY:
            cells.append(" / ".join(cell([dig(r, path) for r in runs]) for path in paths))
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run folders of diagnostics/oracle_plan.py")
    parser.add_argument("--reuse", action="store_true", help="read RUN/masking-pusht.json where it exists")
    args = parser.parse_args(argv)
    rows, by_group = [], defaultdict(list)
    for run in args.runs:
        cfg, predictor = load_run(run)
        folder = data_dir(".", data_config(cfg))
        saved = Path(run) / "masking-pusht.json"
        if args.reuse and saved.is_file():
            result = read_json(saved)
        else:
            if not (folder / "meta.json").is_file():
                sys.exit(f"error: no {folder}: the data {run} was trained on (python train.py --until data with its flags)")
            result = {"masked": cfg.masked, "seed": cfg.seed} | measure(cfg, predictor, open_dataset(cfg, folder))
            atomic_write_json(saved, result)
        by_group[(folder.name, cfg.masked)].append(result)
        e, a = result["error"], result["attention"]
        rows.append(f"| {run} | {cfg.masked} | {e['model, pushed, px']:.2f} / {e['constant velocity, pushed, px']:.2f} / "
                    f"{e['no motion, pushed, px']:.2f} | {e['model, pushed, deg']:.2f} / "
                    f"{e['constant velocity, pushed, deg']:.2f} / {e['no motion, pushed, deg']:.2f} | "
                    f"{e['model, resting, px']:.2f} / {e['model, resting, deg']:.2f} | "
                    f"{a['future']['auroc']:.3f} / {a['history']['auroc']:.3f} | "
                    f"{a['future']['agent share, pushed']:.3f} / {a['future']['agent share, resting']:.3f} |")
    print("| run | M | block pushed: model / const. velocity / no motion (px) | the same (deg) | "
          "block resting: model (px / deg) | AUROC of the block's attention on the agent, future / history | "
          "agent share, future: pushed / resting |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if any(len(runs) > 1 for runs in by_group.values()):
        print("\nMean +/- std over the runs of each data and M (their training seeds):\n")
        print("| data | M | runs | " + " | ".join(header for header, _ in SUMMARY) + " |")
        print("|---" * (3 + len(SUMMARY)) + "|")
        print("\n".join(summary_rows(by_group)))


if __name__ == "__main__":
    main()
