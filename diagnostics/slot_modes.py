"""How far a Push-T run's video-mode slots lie from the same frames encoded alone.

    python diagnostics/slot_modes.py --run runs/cpu-expert-video-m1 [--every 7]

The predictor trains on video-mode slots (the default: chains of frames frameskip apart,
encoded in order), and the planner encodes its observation and goal alone, as a chain's
first frame (frame mode). This reads both kinds of slots of the run's encoder and data (make
the missing one with the run's train.py flags and ``--slot-mode MODE --until slots``) and
prints, over every ``--every``-th frame: the mean absolute difference per entry between the
two, by the frame's place in its chain (place 0 is encoded alone in both); the mean squared
difference, as it is and under the best matching of slots (plan.matched_slot_cost, the
planner's; a share of frames whose best matching is the identity below 1 would mean the two
modes order objects differently); for scale, the mean entry and each mode's
mean change between frames one world-model step apart in an episode; and what each mode's
slots hold: their variance per entry (each slot index about its own mean, the scale the
predictor's loss and the planning cost see) and the share of it a linear map explains from the
true state (agent and block position, the block angle's cosine and sine), and from the state
and the frame's place in its chain (one-hot) together (a mode whose slots follow the place more
than the scene records time since its chain began), over all frames and over the video-mode
frames 5 or more places into their chain.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import open_dataset, read_run  # noqa: E402
from encoder import load_slots  # noqa: E402
from plan import matched_slot_cost  # noqa: E402
from probe_slots import state_features  # noqa: E402


STEADY = 5   # places from which a chain has left its first frame behind (the last rows of the table)


def explained(slots, features):
    """The share of the variance of slots (n, S, D), over all entries, that a least-squares
    linear map (with a bias) from features (n, F) explains."""
    y = slots.reshape(len(slots), -1)
    y = y - y.mean(0)
    x = np.concatenate([features, np.ones((len(features), 1))], 1)
    residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return float(1 - (residual ** 2).sum() / (y ** 2).sum())


def compare_modes(video, frame, episode_starts, frameskip, every=7, state=None):
    """video, frame: (N, S, D) slots of the same frames; state (N, 5): the frames' true states
    (optional: what the slots hold). Returns a dict of the printed numbers."""
    rows = np.arange(0, len(video), every)
    episode = np.searchsorted(episode_starts, rows, side="right") - 1
    place = (rows - episode_starts[episode]) // frameskip        # the frame's place in its chain
    V, F = np.asarray(video[rows], dtype=np.float64), np.asarray(frame[rows], dtype=np.float64)
    gap = np.abs(V - F).mean(axis=(1, 2))
    mse = ((V - F) ** 2).mean(axis=(1, 2))
    matched = matched_slot_cost(torch.from_numpy(V), torch.from_numpy(F)).numpy()
    later = rows + frameskip < episode_starts[episode + 1]            # one world-model step on, same episode
    step = {name: float(np.abs(np.asarray(s[rows[later] + frameskip]) - np.asarray(s[rows[later]])).mean())
            for name, s in (("video", video), ("frame", frame))}
    held = {}
    if state is not None:
        features = state_features(np.asarray(state[rows], np.float64))
        features = (features - features.mean(0)) / (features.std(0) + 1e-9)
        every_row = np.ones(len(rows), bool)
        for name, x, keep in (("video", V, every_row), ("frame", F, every_row),
                              (f"video, places {STEADY} on", V, place >= STEADY)):
            if not keep.any():
                continue
            x, f = x[keep], features[keep]
            clock = (place[keep][:, None] == np.unique(place[keep])[None, 1:]).astype(np.float64)  # one-hot, 1st the base
            held[name] = {"variance": float(x.var(0).mean()), "state": explained(x, f),
                          "state and place": explained(x, np.concatenate([f, clock], 1))}
    return {"frames": len(rows), "gap": float(gap.mean()), "held": held, "mse": float(mse.mean()), "mse matched": float(matched.mean()),
            "identity best": float((mse <= matched * (1 + 1e-9)).mean()), "mean entry": float(np.abs(F).mean()),
            "step": step, "by place": {int(p): float(gap[place == p].mean()) for p in np.unique(place)}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a Push-T run folder of train.py")
    parser.add_argument("--every", type=int, default=7, help="read every this-many-th frame")
    args = parser.parse_args(argv)
    try:
        cfg, info, _ = read_run(args.run, "pusht", "slot modes are compared on Push-T runs")
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    if cfg.tokens != "slots":
        sys.exit(f"error: {args.run} is a patch-token run: it has no slots")
    data = open_dataset(cfg, info["data"])
    slots = {}
    for mode in ("video", "frame"):
        try:
            slots[mode] = load_slots(Path(info["encoder"]), dataclasses.replace(cfg, slot_mode=mode, mask_moments=0.0),
                                     len(data.pixels))
        except (ValueError, OSError) as err:
            sys.exit(f"error: {err} (make them with the run's train.py flags and --slot-mode {mode} --until slots)")
    r = compare_modes(slots["video"], slots["frame"], data.episode_starts, cfg.frameskip, args.every, data.state)
    print(f"{args.run}: {r['frames']:,} frames; mean |entry| {r['mean entry']:.4f}")
    print(f"video against frame mode, per entry: mean |difference| {r['gap']:.4f}; squared {r['mse']:.4f}, "
          f"{r['mse matched']:.4f} under the best matching (the identity best in {100 * r['identity best']:.1f} % "
          "of frames)")
    print(f"change in one world-model step: video {r['step']['video']:.4f}, frame {r['step']['frame']:.4f}")
    places = sorted(r["by place"])
    print("| place in chain | " + " | ".join(str(p) for p in places) + " |")
    print("|---|" + "---|" * len(places))
    print("| video against frame | " + " | ".join(f"{r['by place'][p]:.4f}" for p in places) + " |")
    print("\n| slots | variance per entry | share explained by the state | by the state and the place |")
    print("|---|---|---|---|")
    for name, h in r["held"].items():
        print(f"| {name} | {h['variance']:.3g} | {h['state']:.3f} | {h['state and place']:.3f} |")


if __name__ == "__main__":
    main()
