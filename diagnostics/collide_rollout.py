"""How close are the future slots the VQA head reads to the encoder's slots of the real frames?

    python diagnostics/collide_rollout.py --run runs/collide-cpu-m4 [--split val] [--videos 500]

``vqa.run_slots`` gives the head the encoder's slots of a collide video's observed frames
and, for the held-out frames, the run's predictor rolled forward from them (no masking).
This rolls out the first ``--videos`` videos of ``--split`` the same way as its chain of model
frames (the `cpu` head's; not the `paper` head's rollout of every offset) and compares each
predicted future frame with the encoder's own slots of that real frame (video-mode slots
keep their order through a video, so slot k is compared with slot k): mean squared error
per future frame, beside "no motion" (the last observed frame's slots repeated). Run it on
an M = 0 and an M > 0 run of the same encoder to see whether masking changed what the head
is given.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import build_predictor  # noqa: E402
from vqa import collide_frames, video_slots  # noqa: E402


def future_errors(run_dir, split="val", n_videos=500, block=None):
    """Per future model frame: (predicted MSE, no-motion MSE, real frame index), arrays (n_future,).
    block: frames predicted per predictor call (default the run's n_future, as vqa.py does)."""
    cfg, ckpt, data, slots, observed, future = collide_frames(run_dir, "collide_rollout.py")
    videos = data.episodes(split)[:n_videos]
    starts = data.episode_starts[videos, None]
    obs = torch.from_numpy(np.asarray(slots[starts + observed]))  # (V, T_obs, S, D)
    real = torch.from_numpy(np.asarray(slots[starts + future]))   # (V, T_fut, S, D)
    predictor = build_predictor(cfg)
    predictor.load_state_dict(ckpt["model"])
    pred = video_slots(obs, predictor, len(future), cfg.n_history, block=block or cfg.n_future)
    pred = pred[:, len(observed):]
    still = obs[:, -1:].expand_as(real)
    per_frame = lambda a: ((a - real) ** 2).mean(dim=(0, 2, 3)).numpy()  # noqa: E731
    if not ckpt.get("done"):
        print(f"{run_dir}: the predictor is unfinished, scored at its step {ckpt.get('step')}")
    return per_frame(pred), per_frame(still), future


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, nargs="+", help="train.py --dataset collide run folders")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--block", type=int, default=None,
                        help="frames predicted per call (default: the run's n_future, as vqa.py)")
    args = parser.parse_args(argv)
    if args.videos < 1:
        parser.error("--videos must be at least 1")
    for run in args.run:
        pred, still, frames = future_errors(run, args.split, args.videos, args.block)
        print(f"{run}: slot MSE of the rolled-out future, {args.split}, first {args.videos} videos, "
              f"block {args.block or 'n_future'}")
        for f, p, s in zip(frames, pred, still):
            print(f"  real frame {f:3d}: predicted {p:.4g}   no motion {s:.4g}   ratio {p / s:.3f}")
        print(f"  mean: predicted {pred.mean():.4g}   no motion {still.mean():.4g}")


if __name__ == "__main__":
    main()
