"""How far the world model's rollouts drift from the encoded real frames.

    python diagnostics/rollout_check.py --ckpt runs/pusht-cpu-m1-frame [--starts 300] [--steps 5]

From ``--starts`` validation frames the predictor rolls out ``--steps`` world-model steps
(``frameskip`` env steps each) with the dataset's own actions from one observed frame (the context growing to the model's history),
as the planner does, every frame encoded alone as plan.py encodes it. At every step the
predicted slots are compared with the slots of the real frame of that time by plan.py's
matched slot MSE (the planning cost without proprio), and so are the start frame's
slots (a model that predicts no motion at all). Printed: medians over all starts and over
the starts whose block really moves (more than ``--moving`` px by the last step). A model
no closer than "no motion" cannot tell a planner what a push does.

``--probe`` also reads agent, block and angle out of the predicted slots with
probe_slots' linear probe (fitted on the run's own training slots, as the predictor sees
them) and prints median errors against the true states in px and degrees, the units of
oracle_plan's rollout-errors.json, beside the probe's error on the encoded real frames (the
floor of what it can read) and on the start frame (no motion). On a run of video-mode slots
(the default) the probe fits slots of chains and reads frames encoded alone, as the planner
encodes them: its floor then holds the difference between the two.

``--slots extracted`` rolls out from and scores against the run's own training slots instead
(on a video-mode run, read off chains of frames), and ``--from-place K`` starts only at frames K
or more model steps into their episode: on a video-mode run the two kinds of start, a chain's
first frame (what the planner gives the model) and a later one (what it mostly trained on), side
by side on the same starts. ``--context K`` gives the model the K real frames up to the start
(K <= its history, the start frame last) instead of the start frame alone, as training does
(K = the model's history): a model no closer than "no motion" even then is not held back by the
planner's short context. (The probe weighs directions in which the training slots hardly
vary, so it may read a rollout far off where its matched MSE is small: trust the MSE first.)
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import normalize_proprio, window_starts  # noqa: E402
from pusht import ACTION_DIM, wrap_angle  # noqa: E402
from plan import load_world_model, matched_slot_cost  # noqa: E402
from predictor import rollout  # noqa: E402
from probe_slots import fit_ridge, split_rows, state_features  # noqa: E402
from config import open_run  # noqa: E402
from encoder import load_slots  # noqa: E402


def fit_state_probe(ckpt, data, every):
    """The linear probe from all of a frame's slot features (as the run's predictor sees them,
    moments included) to probe_slots' state features, fitted on every ``every``-th training
    frame; returns read(slots (..., S, D)) -> agent xy (..., 2), block xy (..., 2), angle (...)."""
    cfg, info, _, _ = open_run(ckpt, "pusht", "the probe reads Push-T states")
    slots = load_slots(Path(info["encoder"]), cfg, len(data.pixels))
    rows = split_rows(data, "train")[::every]
    predict = fit_ridge(np.asarray(slots[rows], np.float64).reshape(len(rows), -1), state_features(data.state[rows]))

    def read(s):
        s = np.asarray(s, np.float64)
        y = predict(s.reshape(-1, s.shape[-2] * s.shape[-1])).reshape(*s.shape[:-2], 6)
        return y[..., 0:2], y[..., 2:4], np.arctan2(y[..., 5], y[..., 4])
    return read


def state_errors(read, slots, state):
    """Median over starts of the probed agent and block error (px) and angle error (deg), per step."""
    agent, block, angle = read(slots)
    errors = (np.linalg.norm(agent - state[..., 0:2], axis=-1), np.linalg.norm(block - state[..., 2:4], axis=-1),
              np.degrees(np.abs(wrap_angle(angle - state[..., 4]))))
    return [np.median(e, axis=0) for e in errors]                    # each (K,)


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a train.py run folder on Push-T")
    parser.add_argument("--starts", type=int, default=300, help="validation start frames")
    parser.add_argument("--steps", type=int, default=5, help="world-model steps rolled out")
    parser.add_argument("--moving", type=float, default=10.0, help="px the block must move to count as moving")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", action="store_true", help="also read states out of the slots with a linear probe")
    parser.add_argument("--probe-every", type=int, default=30, help="fit the probe on every n-th training frame")
    parser.add_argument("--slots", choices=("alone", "extracted"), default="alone",
                        help="alone: every frame encoded alone, as plan.py encodes it; extracted: the run's "
                             "training slots (video mode: read off chains)")
    parser.add_argument("--from-place", type=int, default=0,
                        help="start only at frames this many model steps or more into their episode")
    parser.add_argument("--context", type=int, default=1,
                        help="real frames the rollout starts from, the start frame last (<= the model's history)")
    args = parser.parse_args(argv)
    model, data = load_world_model(args.ckpt, torch.device("cpu"))
    fs, context = model.cfg.frameskip, args.context
    if not 1 <= context <= model.predictor.n_history:
        raise SystemExit(f"error: --context must be 1 to the model's history {model.predictor.n_history}, got {context}")

    starts = window_starts(data, "val", args.steps * fs + 1)
    begins = data.episode_starts[np.searchsorted(data.episode_starts, starts, side="right") - 1]
    place = max(args.from_place, context - 1)
    starts = starts[starts - begins >= place * fs]
    if not len(starts):
        raise SystemExit(f"error: no validation window starts {place} model steps into its episode")
    starts = np.sort(np.random.default_rng(args.seed).choice(starts, min(args.starts, len(starts)), replace=False))
    times = starts[:, None] + fs * np.arange(1, args.steps + 1)       # (B, K) frame rows
    seen = starts[:, None] - fs * np.arange(context - 1, -1, -1)      # (B, context) rows, the start last
    actions = model.from_env_actions(np.stack([data.action[t - (context - 1) * fs:t + args.steps * fs]
                                               for t in starts]))
    # the action at the last predicted frame is not part of a plan: the dataset mean, as plan.py
    actions = np.concatenate([actions, np.zeros((len(starts), 1, fs * ACTION_DIM))], axis=1)
    if args.slots == "alone":
        encode = lambda rows: model.encode(data.pixels[rows])          # noqa: E731
    else:
        _, info, _, _ = open_run(args.ckpt, "pusht", "rollout_check reads Push-T runs")
        extracted = load_slots(Path(info["encoder"]), model.cfg, len(data.pixels))
        encode = lambda rows: torch.from_numpy(extracted[rows]).float()  # noqa: E731
    history = torch.stack([encode(rows) for rows in seen.T], dim=1)   # (B, context, S, D)
    slots = history[:, -1:]                                          # (B, 1, S, D): the start frame
    proprio = torch.from_numpy(normalize_proprio(data.proprio[seen], data.stats))
    out = rollout(model.predictor, history, torch.from_numpy(actions).float(), proprio,
                  n_future=args.steps, history=model.predictor.n_history)
    real = torch.cat([encode(t) for t in times.T], dim=0)  # (K * B, S, D), step-major
    real = real.reshape(args.steps, len(starts), *real.shape[1:]).transpose(0, 1)  # (B, K, S, D)
    error = {"model": matched_slot_cost(out["slots"], real).numpy(),   # (B, K)
             "no motion": matched_slot_cost(slots.expand_as(real), real).numpy()}
    moved = np.linalg.norm(data.state[times[:, -1], 2:4] - data.state[starts, 2:4], axis=-1) > args.moving

    print(f"{args.slots} slots, {context} real frame{'s' * (context > 1)} of context; {len(starts)} validation "
          f"starts, {moved.sum()} with the block moving > "
          f"{args.moving:g} px by step {args.steps}. Matched slot MSE to the encoded real frame, median over all starts / "
          "over the moving ones:")
    print("| step (env steps) | model | no motion |\n|---|---|---|")
    for k in range(args.steps):
        cells = [f"{np.median(e[:, k]):.3g} / {np.median(e[moved, k]):.3g}" for e in error.values()]
        print(f"| {k + 1} ({(k + 1) * fs}) | " + " | ".join(cells) + " |")
    if not args.probe:
        return
    read = fit_state_probe(args.ckpt, data, args.probe_every)
    state = data.state[times]                                        # (B, K, 5)
    table = {"model": state_errors(read, out["slots"].numpy(), state),
             "no motion": state_errors(read, slots.expand_as(real).numpy(), state),
             "real frame": state_errors(read, real.numpy(), state)}
    print("\nRead by a linear probe, median error against the true state over all starts: "
          "agent px / block px / angle deg")
    print("| step (env steps) | " + " | ".join(table) + " |\n|---|---|---|---|")
    for k in range(args.steps):
        cells = [" / ".join(f"{e[k]:.1f}" for e in errs) for errs in table.values()]
        print(f"| {k + 1} ({(k + 1) * fs}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
