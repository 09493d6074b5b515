"""A probe, not an addition: Push-T slots z-scored per slot and feature before the predictor.

    python experiments/slot_zscore_probe.py train --policy expert --slot-mode frame --masked 1 --out runs/zscore-frame-m1
    python experiments/slot_zscore_probe.py cost_check --ckpt runs/zscore-frame-m1 --episodes 32
    python experiments/slot_zscore_probe.py plan --ckpt runs/zscore-frame-m1 --seeds 0 --gifs 0

Each frame-mode slot varies about its own mean by 0.0003 per entry (``diagnostics/slot_modes.py``),
so the predictor's slot loss and the planner's slot term are thousands of times smaller than
the proprio's (the proprio is z-scored). This runs train.py, plan.py or a diagnostic with every
slot entry z-scored: minus that slot index's mean, over that feature's standard deviation (floored
at a tenth of the median one), both from every 7th frame of the run's slots and written beside
them (``zscore-<mode>.npz`` in the encoder's slot folder), applied to the slots the predictor
trains on and to every frame the planner encodes. Its runs record none of this: plan and score
them through this script only. The result is in docs/faithful.md ("Slots z-scored, a probe").
"""

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "diagnostics")]
import encoder  # noqa: E402
import plan  # noqa: E402
import train  # noqa: E402

STATS = {}


def zscore(slots, stats):
    mean, std = stats
    return ((np.asarray(slots, np.float32) - mean) / np.maximum(std, 0.1 * np.median(std))).astype(np.float32)


def load_zscored(enc_dir, cfg, n_frames, load=encoder.load_slots):
    """encoder.load_slots, z-scored; the statistics are computed once and kept on disk."""
    enc_dir = Path(enc_dir)
    slots = load(enc_dir, cfg, n_frames)
    moments = f"-moments{cfg.mask_moments:g}" if cfg.mask_moments else ""
    path = encoder.token_files(enc_dir, cfg)[0].with_name(f"zscore-{cfg.slot_mode}{moments}.npz")
    if not path.is_file():
        sample = np.asarray(slots[::7], np.float64)
        np.savez(path, mean=sample.mean(0), std=sample.std(0))
    stats = np.load(path)
    STATS["stats"] = (stats["mean"].astype(np.float32), stats["std"].astype(np.float32))
    return zscore(slots, STATS["stats"])


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "plan", "cost_check", "rollout_check"):
        sys.exit("usage: slot_zscore_probe.py train|plan|cost_check|rollout_check [that script's flags]")
    which, argv = sys.argv[1], sys.argv[2:]
    if which == "train":
        train.load_slots = load_zscored
        return train.main(argv)
    encode, load_world_model = plan.WorldModel.encode, plan.load_world_model

    def encode_zscored(self, pixels, states=None, after=None):
        return torch.from_numpy(zscore(encode(self, pixels, states, after).cpu().numpy(), STATS["stats"])).to(self.device)

    def load_zscored_model(ckpt, *args, **kwargs):  # the run's statistics, from its slots
        model, data = load_world_model(ckpt, *args, **kwargs)
        load_zscored(plan.open_run(ckpt, "pusht", "the probe runs on Push-T")[1]["encoder"], model.cfg, len(data.pixels))
        return model, data

    plan.WorldModel.encode, plan.load_world_model = encode_zscored, load_zscored_model
    return __import__(which).main(argv)


if __name__ == "__main__":
    main()
