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

def zscore(slots, stats):
    mean, std = stats
    return ((np.asarray(slots, np.float32) - mean) / np.maximum(std, 0.1 * np.median(std))).astype(np.float32)


def slot_stats(enc_dir, cfg, n_frames, slots=None):
    """Each slot entry's mean and std (S, D) over every 7th frame of the run's slots: computed
    once (from ``slots`` when given, else read with encoder.load_slots) and kept on disk."""
    enc_dir = Path(enc_dir)
    moments = f"-moments{cfg.mask_moments:g}" if cfg.mask_moments else ""
    path = encoder.token_files(enc_dir, cfg)[0].with_name(f"zscore-{cfg.slot_mode}{moments}.npz")
    if not path.is_file():
        slots = encoder.load_slots(enc_dir, cfg, n_frames) if slots is None else slots
        sample = np.asarray(slots[::7], np.float64)
        np.savez(path, mean=sample.mean(0), std=sample.std(0))
    stats = np.load(path)
    return stats["mean"].astype(np.float32), stats["std"].astype(np.float32)


def load_zscored(enc_dir, cfg, n_frames):
    """encoder.load_slots, z-scored."""
    slots = encoder.load_slots(Path(enc_dir), cfg, n_frames)
    return zscore(slots, slot_stats(enc_dir, cfg, n_frames, slots))


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "plan", "cost_check", "rollout_check"):
        sys.exit("usage: slot_zscore_probe.py train|plan|cost_check|rollout_check [that script's flags]")
    which, argv = sys.argv[1], sys.argv[2:]
    if which == "train":
        train.load_slots = load_zscored
        return train.main(argv)
    encode, load_world_model = plan.WorldModel.encode, plan.load_world_model

    def load_zscored_model(ckpt, *args, **kwargs):  # the model, encoding every frame z-scored
        model, data = load_world_model(ckpt, *args, **kwargs)
        encoder_dir = plan.open_run(ckpt, "pusht", "the probe runs on Push-T")[1]["encoder"]
        stats = slot_stats(encoder_dir, model.cfg, len(data.pixels))

        def encode_zscored(pixels, states=None, after=None):
            slots = encode(model, pixels, states, after).cpu().numpy()
            return torch.from_numpy(zscore(slots, stats)).to(model.device)
        model.encode = encode_zscored
        return model, data

    plan.load_world_model = load_zscored_model
    return __import__(which).main(argv)


if __name__ == "__main__":
    main()
