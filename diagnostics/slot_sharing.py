"""Do objects of one colour share a slot? Pairs of objects on the collide world's encoder.

    python diagnostics/slot_sharing.py --run runs/collide-cpu-m0 [--clips 64]

Runs the run's encoder on the validation clips that ``train.evaluate_encoder`` scores
(``train.validation_segments``: the same 64 clips of 8 frames, in video mode), gives every object in every frame the slot that
holds most of its pixels, and counts the pairs of objects seen in one frame (each with at
least ``--min-pixels`` pixels) whose objects went to the same slot: separately for pairs of
one colour and pairs of two colours. An encoder that clusters colours merges nearly every
pair of one colour and few others.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from config import build_encoder, encoder_config, load_checkpoint, open_dataset, read_run  # noqa: E402
from encoder import validation_segments  # noqa: E402


def shared_pairs(truth, seg, colours, min_pixels):
    """truth, seg: ids (H, W) of one frame (0 = background); colours[k]: object k + 1's colour.
    Returns [(same colour?, same slot?)] over the pairs of objects with >= min_pixels pixels."""
    slot_of = {}
    for k in np.unique(truth):
        if k == 0 or (truth == k).sum() < min_pixels:
            continue
        slot_of[int(k)] = np.bincount(seg[truth == k]).argmax()
    objects = sorted(slot_of)
    return [(colours[a - 1] == colours[b - 1], slot_of[a] == slot_of[b])
            for i, a in enumerate(objects) for b in objects[i + 1:]]


def collide_encoder(run_dir, purpose):
    """(config.json's dict, TrainConfig, dataset, trained encoder) of a train.py collide run
    folder; exits with one line of error on a Push-T run (``purpose`` says why that is wrong)."""
    try:
        cfg, info, _ = read_run(run_dir, "collide", purpose)
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    model = build_encoder(cfg)
    model.load_state_dict(load_checkpoint(Path(info["encoder"]) / "encoder.pt", encoder_config(cfg))["model"])
    return info, cfg, open_dataset(cfg, info["data"]), model


def clip_parser(doc, clips):
    """The command line of a tool that scores a collide encoder on validation clips."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a collide run folder of train.py (its config.json)")
    parser.add_argument("--clips", type=int, default=clips)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--min-pixels", type=int, default=4, help="objects with fewer pixels are left out")
    return parser


@torch.no_grad()
def main(argv=None):
    args = clip_parser(__doc__, clips=64).parse_args(argv)
    info, cfg, data, model = collide_encoder(args.run, "this counts collide objects")
    length = data.episode_starts[1] - data.episode_starts[0]
    pairs = []
    for _, _, seg, indices in validation_segments(model, data, cfg, "cpu", args.clips, args.clip_len):
        for b, index in enumerate(indices):
            colours = [o["color"] for o in data.scenes[index[0] // length]["objects"]]
            for t, truth in enumerate(data.id_maps(index)):
                pairs += shared_pairs(truth, seg[b, t], colours, args.min_pixels)
    pairs = np.array(pairs, dtype=bool).reshape(-1, 2)
    print(f"{info['encoder']}: {args.clips} validation clips of {args.clip_len} frames")
    for same, name in ((True, "one colour"), (False, "two colours")):
        rows = pairs[pairs[:, 0] == same]
        print(f"  pairs of {name}: {len(rows)}, in one slot {rows[:, 1].mean():.1%}")


if __name__ == "__main__":
    main()
