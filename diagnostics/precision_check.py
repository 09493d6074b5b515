"""How far a trained encoder's bf16 slots lie from its fp32 ones, against how far slots move.

    python diagnostics/precision_check.py --run runs/pusht-cpu-m1 [--frames 2048]

Encodes validation frames alone (as the planner does, and extraction in frame mode) once in
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
from plan import load_world_model  # noqa: E402


def encode(model, pixels, precision, chunk=64):
    """The planner's encoding of each frame alone (plan.WorldModel.encode), ``chunk`` at a time."""
    model.precision = precision
    return torch.cat([model.encode(pixels[start:start + chunk]) for start in range(0, len(pixels), chunk)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a run folder of train.py")
    parser.add_argument("--frames", type=int, default=2048, help="validation frames (pairs) encoded")
    args = parser.parse_args()
    model, data = load_world_model(args.run, torch.device("cpu"))
    fs = model.cfg.frameskip
    # frames with a partner fs steps later in the same episode, evenly over the validation split
    rows = np.concatenate([np.arange(data.episode_starts[e], data.episode_starts[e + 1] - fs)
                           for e in data.episodes("val")])
    rows = rows[np.linspace(0, len(rows) - 1, min(args.frames, len(rows))).astype(int)]
    fp32 = encode(model, data.pixels[rows], "fp32")
    bf16 = encode(model, data.pixels[rows], "bf16")
    later = encode(model, data.pixels[rows + fs], "fp32")
    gap = (bf16 - fp32).abs().mean().item()
    size = fp32.abs().mean().item()
    step = (later - fp32).abs().mean().item()
    print(f"{len(rows)} validation frames: mean |bf16 - fp32| {gap:.4f} per slot entry; "
          f"mean |slot entry| {size:.4f} ({100 * gap / size:.1f} %); mean change over one "
          f"world-model step ({fs} env steps) {step:.4f} ({100 * gap / step:.1f} %)")


if __name__ == "__main__":
    main()
