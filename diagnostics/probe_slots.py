"""How much of the Push-T state the extracted slots hold: a linear (ridge) probe.

    python diagnostics/probe_slots.py --run runs/pusht-cpu-m1 [--features slots|moments|both]

The run needs its slots, not a predictor: ``python train.py --until slots --out RUN`` is enough
(add ``--slot-mode frame`` for each frame's slots alone, as docs/encoder.md's rows).

Fits state features (agent x, y, block x, y, cos and sin of the block angle) from the slots
of every third training frame, all slots concatenated in the encoder's order, and reports
R^2 and RMSE on every validation frame. ``--features moments`` reads each slot's mask
moments (masks.mask_moments, as extracted beside the slots) instead of its vector, ``both``
the two side by side. The planning cost is a squared distance between
slots, so what a linear map cannot read from them the planner can hardly steer toward:
success needs agent and block within 20 px together and the angle within pi / 9.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import load_dataset  # noqa: E402
from config import read_run  # noqa: E402
from encoder import load_slots  # noqa: E402

TARGETS = ("agent x", "agent y", "block x", "block y", "cos angle", "sin angle")


def state_features(state):
    angle = state[:, 4]
    return np.stack([state[:, 0], state[:, 1], state[:, 2], state[:, 3], np.cos(angle), np.sin(angle)], 1)


def split_rows(data, split):
    return np.concatenate([np.arange(data.episode_starts[e], data.episode_starts[e + 1])
                           for e in data.episodes(split)])


def fit_ridge(x_train, y_train, alpha=1.0):
    """Standardise x, fit ridge regression with a bias; returns predict(x) -> y."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6

    def design(x):
        return np.c_[(x - mean) / std, np.ones(len(x))]
    a = design(x_train)
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y_train)
    return lambda x: design(x) @ weights


def ridge_probe(x_train, y_train, x_test, y_test, alpha=1.0):
    """``fit_ridge`` on the train rows; returns (R^2, RMSE) per target on the test rows."""
    pred = fit_ridge(x_train, y_train, alpha)(x_test)
    r2 = 1 - ((pred - y_test) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)
    return r2, np.sqrt(((pred - y_test) ** 2).mean(0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a train.py run folder on Push-T")
    parser.add_argument("--every", type=int, default=3, help="use every n-th training frame")
    parser.add_argument("--features", choices=("slots", "moments", "both"), default="slots",
                        help="what of each slot to read: its vector, its mask moments, or both")
    args = parser.parse_args(argv)
    try:   # the run's slots are enough: a run of train.py --until slots will do
        cfg, info, _ = read_run(args.run, "pusht", "the probe reads Push-T states")
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    data = load_dataset(info["data"])
    # the slots alone, or followed by their moments at weight 1, whatever the run trained on
    cfg = dataclasses.replace(cfg, mask_moments=0.0 if args.features == "slots" else 1.0)
    slots = load_slots(Path(info["encoder"]), cfg, len(data.pixels))  # (N, S, D or D + 10), the run's slot mode
    if args.features == "moments":
        slots = slots[..., cfg.slot_dim:]
    train, val = split_rows(data, "train")[::args.every], split_rows(data, "val")
    y = state_features(data.state)
    r2, rmse = ridge_probe(np.asarray(slots[train]).reshape(len(train), -1), y[train],
                           np.asarray(slots[val]).reshape(len(val), -1), y[val])
    print(f"linear probe from {slots.shape[1]} x {slots.shape[2]} slot features ({args.features}), {len(train)} train / {len(val)} val frames")
    print("| target | R^2 | RMSE |\n|---|---|---|")
    for name, a, b in zip(TARGETS, r2, rmse):
        print(f"| {name} | {a:.3f} | {b:.2f}{' px' if 'angle' not in name else ''} |")


if __name__ == "__main__":
    main()
