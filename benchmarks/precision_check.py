"""How far a trained encoder's bf16 slots lie from its fp32 ones, against how far slots move.

    python benchmarks/precision_check.py --run runs/pusht-cpu-m1 [--frames 2048]

Encodes validation frames alone (frame mode, as extraction and the planner do) once in
float32 and once under ``train.autocast(..., "bf16")``, and reports the mean absolute
difference per slot entry next to two scales: the mean absolute slot entry, and the mean
absolute change of the fp32 slots between frames one world-model step (frameskip env steps)
apart in the same episode. A predictor trained on bf16 slots and planned on fp32 ones (or
the other way) sees the first difference as noise on top of the second.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import load_dataset  # noqa: E402
from train import autocast, build_encoder, load_checkpoint, open_run, resize_frames  # noqa: E402


@torch.inference_mode()
def encode(model, pixels, image_size, precision, chunk=64):
    out = []
    for start in range(0, len(pixels), chunk):
        frames = torch.from_numpy(np.ascontiguousarray(pixels[start:start + chunk]))
        frames = frames.permute(0, 3, 1, 2).float().div_(255)[:, None]  # (B, 1, 3, H, W)
        with autocast("cpu", precision):
            slots = model.encode(resize_frames(frames, image_size), noise=False)["slots"][:, 0]
        out.append(slots.float())
    return torch.cat(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a run folder of train.py")
    parser.add_argument("--frames", type=int, default=2048, help="validation frames (pairs) encoded")
    args = parser.parse_args()
    cfg, info, _, _ = open_run(args.run, "pusht", "precision_check.py reads a Push-T run")
    model = build_encoder(cfg)
    model.load_state_dict(load_checkpoint(Path(info["encoder"]) / "encoder.pt")["model"])
    model.eval()
    data = load_dataset(info["data"])
    fs = cfg.frameskip
    # frames with a partner fs steps later in the same episode, evenly over the validation split
    rows = np.concatenate([np.arange(data.episode_starts[e], data.episode_starts[e + 1] - fs)
                           for e in data.episodes("val")])
    rows = rows[np.linspace(0, len(rows) - 1, min(args.frames, len(rows))).astype(int)]
    fp32 = encode(model, data.pixels[rows], cfg.image_size, "fp32")
    bf16 = encode(model, data.pixels[rows], cfg.image_size, "bf16")
    later = encode(model, data.pixels[rows + fs], cfg.image_size, "fp32")
    gap = (bf16 - fp32).abs().mean().item()
    size = fp32.abs().mean().item()
    step = (later - fp32).abs().mean().item()
    print(f"{len(rows)} validation frames: mean |bf16 - fp32| {gap:.4f} per slot entry; "
          f"mean |slot entry| {size:.4f} ({100 * gap / size:.1f} %); mean change over one "
          f"world-model step ({fs} env steps) {step:.4f} ({100 * gap / step:.1f} %)")


if __name__ == "__main__":
    main()
