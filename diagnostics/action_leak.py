"""Does the predictor read the action taken at the frame it predicts?

    python diagnostics/action_leak.py --run RUN_DIR [--windows 4000]

``actions[t]`` is taken at frame t and moves the world to t + 1, so the action at the last
frame of a window changes nothing inside it. But the data's policy picks that action from
where the agent and the block are, so a predictor that sees it (the default; not with
``--hide-last-action``) can read part of the predicted frame from it. While planning it
sees CEM's next candidate there instead. On validation windows of one visible and one
hidden frame (as the planner rolls out), this scores the predicted frame with that action
as in the data, set to the dataset mean (0 in z-scored units), and taken from another
window (shuffled). A predictor that does not use it scores the same three times.
Works on train.py runs and on diagnostics/oracle_plan.py runs (true object states, errors
in px as well).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import Windows, load_dataset  # noqa: E402
from oracle_plan import object_slots, physical  # noqa: E402
from config import build_predictor, data_config, open_run  # noqa: E402
from encoder import load_slots  # noqa: E402


@torch.no_grad()
def leak_table(predictor, windows, pick, oracle, seed=0):
    """Rows {'last action', 'slot_mse', ...} for the true, mean and shuffled last action."""
    batch = [windows[i] for i in pick]
    slots = torch.from_numpy(np.stack([b["slots"] for b in batch])).float()      # (B, 2, S, D)
    actions = torch.from_numpy(np.stack([b["actions"] for b in batch])).float()  # (B, 2, A)
    proprio = torch.from_numpy(np.stack([b["proprio"] for b in batch])).float()
    mask = torch.zeros(slots.shape[:3], dtype=torch.bool)
    mask[:, 1] = True
    shuffled = torch.randperm(len(batch), generator=torch.Generator().manual_seed(seed))
    variants = {"as in the data": actions[:, 1], "mean (0)": torch.zeros_like(actions[:, 1]),
                "from another window": actions[shuffled, 1]}
    rows = []
    for name, last in variants.items():
        acts = torch.stack([actions[:, 0], last], dim=1)
        pred = predictor(slots, mask, acts, proprio, n_history=1,
                         time_offset=predictor.n_history - 1)["slots"][:, 1]  # right-aligned, as a rollout
        row = {"last action": name, "slot_mse": float((pred - slots[:, 1]).pow(2).mean())}
        if oracle:
            (pa, pb, _), (ra, rb, _) = physical(pred.numpy()), physical(slots[:, 1].numpy())
            row["agent_px_median"] = float(np.median(np.linalg.norm(pa - ra, axis=-1)))
            row["block_px_median"] = float(np.median(np.linalg.norm(pb - rb, axis=-1)))
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder of train.py or oracle_plan.py")
    parser.add_argument("--windows", type=int, default=4000, help="validation windows, evenly spaced")
    parser.add_argument("--out", default="", help="JSON file (default: RUN/action-leak.json)")
    args = parser.parse_args(argv)
    cfg, info, run_dir, ckpt = open_run(args.run, "pusht", "action_leak.py needs a Push-T run")
    if not ckpt["done"]:
        print(f"warning: {run_dir / 'predictor.pt'} is from an unfinished run (step {ckpt['step']})")
    data = load_dataset(info["data"], expect=data_config(cfg))
    oracle = str(info["encoder"]).startswith("none")
    slots = object_slots(data.state) if oracle else load_slots(Path(info["encoder"]), cfg, len(data.pixels))
    predictor = build_predictor(cfg)
    predictor.load_state_dict(ckpt["model"])
    predictor.eval()
    windows = Windows(data, "val", 1, 1, cfg.frameskip, slots=slots)
    pick = np.linspace(0, len(windows) - 1, min(args.windows, len(windows))).astype(int)
    rows = leak_table(predictor, windows, pick, oracle)
    for row in rows:
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))
    out = Path(args.out) if args.out else run_dir / "action-leak.json"
    out.write_text(json.dumps({"run": str(run_dir), "step": ckpt["step"], "future_action": cfg.future_action,
                               "windows": len(pick), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
