"""What a decoder of a given mask resolution can at best score: FG-ARI and mBO of ideal masks.

    python diagnostics/mask_ceiling.py --data data/pusht-XXXXXXXX --sizes 16 32 64

The CNN encoder's masks come out at ``decoder_size`` and are upsampled bilinearly to the
frame size before the argmax (``masks.masks_to_segmentation``), as train.py's evaluation
does. Here the masks are ideal: each object's share of every low-resolution cell (the
ground-truth id map, one-hot, area-averaged down). Scored as train.py's evaluation scores
(clips of 8 frames, 5 env steps apart; FG-ARI per video and mBO against the full-size id
maps), on one clip from each of up to ``--clips`` validation episodes, with nearest
upsampling next to it for comparison. A learned mask
can sharpen its logits beyond the area shares, so this is a guide, not a hard bound.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import load_dataset  # noqa: E402
from pusht import OBJECT_IDS  # noqa: E402
from masks import fg_ari, mbo  # noqa: E402


def ideal_segmentation(ids, size, mode):
    """Id maps (..., H, W) -> ids (..., H, W) of the area-share masks at size x size, upsampled."""
    shape, n_ids = ids.shape, max(OBJECT_IDS.values()) + 1
    onehot = F.one_hot(torch.from_numpy(ids.astype(np.int64)).reshape(-1, *shape[-2:]), n_ids)
    shares = F.interpolate(onehot.permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
    up = F.interpolate(shares, size=shape[-2:], mode=mode)
    return up.argmax(1).reshape(shape).numpy()


def object_iou(truth, pred, object_id):
    """IoU of one object's true pixels with the segment of the same id (ideal masks keep ids)."""
    t, p = truth == object_id, pred == object_id
    union = (t | p).sum()
    return (t & p).sum() / union if union else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a Push-T dataset folder (train.py --until data)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64], help="mask resolutions")
    parser.add_argument("--clips", type=int, default=64, help="validation clips")
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--frameskip", type=int, default=5)
    args = parser.parse_args()
    data = load_dataset(args.data)
    rng = np.random.default_rng(0)
    episodes = data.episodes("val")
    starts, ends = data.episode_starts[episodes], data.episode_starts[episodes + 1]
    span = (args.clip_len - 1) * args.frameskip
    eligible = np.flatnonzero(ends - starts > span)
    if not eligible.size:
        sys.exit(f"error: no validation episode is longer than a clip ({span + 1} frames)")
    chosen = rng.choice(eligible, min(args.clips, len(eligible)), replace=False)
    first = [rng.integers(starts[i], ends[i] - span) for i in chosen]
    truth = data.id_maps(np.array(first)[:, None] + args.frameskip * np.arange(args.clip_len))  # (C, T, H, W)
    names = [name for name in OBJECT_IDS if name != "background"]
    print(f"{len(truth)} validation clips of {args.clip_len} frames at {truth.shape[-1]} px")
    for size in args.sizes:
        for mode in ("bilinear", "nearest"):
            seg = ideal_segmentation(truth, size, mode)
            ari = np.nanmean([fg_ari(t, p) for t, p in zip(truth, seg)])
            overlap = np.nanmean([mbo(t, p) for t, p in zip(truth, seg)])
            ious = [np.nanmean([object_iou(t, p, OBJECT_IDS[n]) for t, p in zip(truth, seg)]) for n in names]
            print(f"masks at {size:3d} px, {mode:8s} up: FG-ARI per video {ari:.3f}, mBO {overlap:.3f}, IoU "
                  + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, ious)))


if __name__ == "__main__":
    main()
