"""How far the world model's rollouts drift from the real states, read through a linear probe.

    python benchmarks/rollout_check.py --ckpt runs/pusht-cpu-m1-rh [--starts 300] [--steps 5]

Frames are encoded one at a time, as plan.py does. A ridge probe from the S x D slots to
(agent x, y, block x, y, cos and sin of the block angle) is fitted on encoded training
frames. From ``--starts`` validation frames the predictor rolls out ``--steps``
world-model steps (``frameskip`` env steps each) with the dataset's own actions and one
frame of history, as the planner does. At every step the probe reads the block's
position and angle from
- the predicted slots (the model),
- the encoded real frame of that time (the probe's own floor: what the slots hold),
- the start frame (a model that predicts no motion at all),
and each is compared with the true state. Printed per step: median errors over all starts
and over the starts whose block really moves (more than ``--moving`` px by the last step).
If the model's error on moving blocks is near the no-motion error, the model does not
predict pushes, and a planner using it cannot plan them.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import ACTION_DIM, normalize_proprio, window_starts, wrap_angle  # noqa: E402
from plan import load_world_model  # noqa: E402
from predictor import rollout  # noqa: E402
from probe_slots import fit_ridge, split_rows, state_features  # noqa: E402


def encode_rows(model, data, rows, batch=256):
    """Slots of frames ``rows``, each encoded alone: float (len(rows), S * D)."""
    return np.concatenate([model.encode(data.pixels[rows[i:i + batch]]).flatten(1).cpu().numpy()
                           for i in range(0, len(rows), batch)])


def block_errors(features, state):
    """Probe output (..., 6) against true states (..., 7): block position (px), angle (deg)."""
    position = np.linalg.norm(features[..., 2:4] - state[..., 2:4], axis=-1)
    angle = np.arctan2(features[..., 5], features[..., 4])
    return position, np.degrees(np.abs(wrap_angle(angle - state[..., 4])))


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a train.py run folder on Push-T")
    parser.add_argument("--starts", type=int, default=300, help="validation start frames")
    parser.add_argument("--steps", type=int, default=5, help="world-model steps rolled out")
    parser.add_argument("--probe-every", type=int, default=10, help="fit the probe on every n-th training frame")
    parser.add_argument("--moving", type=float, default=10.0, help="px the block must move to count as moving")
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty of the probe")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, data = load_world_model(args.ckpt, torch.device("cpu"))
    fs = model.cfg.frameskip

    rows = split_rows(data, "train")[::args.probe_every]
    probe = fit_ridge(encode_rows(model, data, rows), state_features(data.state[rows]), args.alpha)

    starts = window_starts(data, "val", args.steps * fs + 1)
    starts = np.sort(np.random.default_rng(args.seed).choice(starts, min(args.starts, len(starts)), replace=False))
    times = starts[:, None] + fs * np.arange(args.steps + 1)           # (B, K + 1) frame rows
    mean = np.tile(data.stats["action_mean"], fs)
    std = np.tile(data.stats["action_std"], fs)
    actions = np.stack([data.action[t:t + args.steps * fs].reshape(args.steps, fs * ACTION_DIM) for t in starts])
    actions = np.concatenate([(actions - mean) / std, np.zeros((len(starts), 1, fs * ACTION_DIM))], axis=1)
    slots = model.encode(data.pixels[starts])[:, None]                # (B, 1, S, D)
    proprio = torch.from_numpy(normalize_proprio(data.proprio[starts], data.stats))[:, None]
    out = rollout(model.predictor, slots, torch.from_numpy(actions).float(), proprio,
                  n_future=args.steps, history=1)
    predicted = probe(out["slots"].flatten(2).numpy().reshape(-1, slots[0, 0].numel()))
    predicted = predicted.reshape(len(starts), args.steps, -1)        # (B, K, 6)
    real = probe(encode_rows(model, data, times[:, 1:].reshape(-1))).reshape(len(starts), args.steps, -1)
    still = np.repeat(probe(encode_rows(model, data, starts))[:, None], args.steps, axis=1)
    real_slots = encode_rows(model, data, times[:, 1:].reshape(-1)).reshape(len(starts), args.steps, -1)
    start_slots = slots.flatten(1).numpy()[:, None]
    pred_slots = out["slots"].flatten(2).numpy()
    print("slot distance to the encoded real frame: model", np.median(np.linalg.norm(pred_slots - real_slots, axis=-1), 0).round(2),
          "no motion", np.median(np.linalg.norm(start_slots - real_slots, axis=-1), 0).round(2))
    truth = data.state[times[:, 1:]]                                   # (B, K, 7)
    moved = np.linalg.norm(truth[:, -1, 2:4] - data.state[starts, 2:4], axis=-1) > args.moving

    print(f"{len(starts)} validation starts, {moved.sum()} with the block moving > {args.moving:g} px "
          f"by step {args.steps}; probe fitted on {len(rows)} training frames")
    print("median block error, position px / angle deg: all starts | moving blocks only")
    print("| step (env steps) | model | encoded real frame | no motion |")
    print("|---|---|---|---|")
    errors = {name: block_errors(f, truth) for name, f in
              (("model", predicted), ("real", real), ("still", still))}
    for k in range(args.steps):
        cells = []
        for name in ("model", "real", "still"):
            position, angle = errors[name]
            cells.append(f"{np.median(position[:, k]):.0f} / {np.median(angle[:, k]):.0f} | "
                         f"{np.median(position[moved, k]):.0f} / {np.median(angle[moved, k]):.0f}")
        print(f"| {k + 1} ({(k + 1) * fs}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
