"""Ground-truth object states in the slot-file format of vqa.py: an upper bound for the head.

    python diagnostics/oracle_slots.py --data data/collide-<hash> --out oracle.npy
    python vqa.py --data data/collide-<hash> --slots oracle.npy --out vqa-oracle.json ...

Every video is re-simulated (collision.simulate, exact) and each object becomes one "slot"
per frame, observed and held-out frames alike: [1, x, y, vx, vy, colour one-hot, shape
one-hot] (position / WORLD_SIZE, velocity / 300), zero-padded to --dim; videos with fewer
objects than the most in the dataset get all-zero rows. Slot k is object k in every frame,
so identities never switch. If the head cannot learn a question type from these, no
encoder or predictor will get it there at that data size and training length.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from collision import COLORS, SHAPES, WORLD_SIZE, simulate  # noqa: E402

SPEED_SCALE = 300.0


def object_states(scenes, dim, progress=True):
    """scenes (list of scene dicts) -> float32 (V, T, K, dim), K the most objects in a scene."""
    colours = list(COLORS)
    width = 5 + len(colours) + len(SHAPES)
    if dim < width:
        raise ValueError(f"expected --dim >= {width} (state, colour and shape features), got {dim}")
    n_frames = scenes[0]["n_frames"]
    K = max(len(scene["objects"]) for scene in scenes)
    out = np.zeros((len(scenes), n_frames, K, dim), np.float32)
    for v, scene in enumerate(tqdm(scenes, desc="simulate", unit="video", disable=not progress)):
        trajectory = simulate(scene)
        for k, obj in enumerate(scene["objects"]):
            out[v, :, k, 0] = 1
            out[v, :, k, 1:3] = trajectory.position[:, k] / WORLD_SIZE
            out[v, :, k, 3:5] = trajectory.velocity[:, k] / SPEED_SCALE
            out[v, :, k, 5 + colours.index(obj["color"])] = 1
            out[v, :, k, 5 + len(colours) + SHAPES.index(obj["shape"])] = 1
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a collide dataset folder (collide_data.py)")
    parser.add_argument("--out", required=True, help="the .npy file to write")
    parser.add_argument("--dim", type=int, default=32, help="features per slot (zero-padded)")
    args = parser.parse_args()
    scenes = json.loads((Path(args.data) / "scenes.json").read_text())
    states = object_states(scenes, args.dim)
    np.save(args.out, states)
    print(f"wrote {args.out}: {states.shape} (videos, frames, objects, features)")


if __name__ == "__main__":
    main()
