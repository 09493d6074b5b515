"""What does a trained VQA head read from the predicted frames?

    python diagnostics/vqa_future.py --run runs/collide20k-sres-m4 --seed 0 --other runs/collide20k-sres-m0

``vqa.py --run RUN`` trains its head on the encoder's slots of the observed frames followed
by the predictor's rollout over the held-out ones. This scores the finished head
RUN/vqa-seed<S>.pt again on ``--split`` with those future frames swapped for

- rollout: the run's own rollout, as trained (the numbers of vqa-seed<S>.json for a head
  trained on a CPU; this script rolls out and scores on the CPU);
- no motion: the last observed frame's slots repeated;
- real: the encoder's slots of the real held-out frames, what a perfect predictor would give;
- each ``--other`` run's rollout from the same observed slots (e.g. the M = 0 predictor's
  future under an M = 4 head).

The observed frames are the same in every row. Rows that hardly differ mean the head takes
little from the future frames, so a better or worse predictor cannot move its answers much.
The head reads the frames as its protocol says: under ``official`` (vqa.py's default) only
predictive questions see future frames, so only their column can move.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import config_from_dict  # noqa: E402
from config import OLDER_RUNS, load_checkpoint  # noqa: E402
from vqa import VQAConfig, build_model, collide_frames, evaluate, head_input, run_slots  # noqa: E402
from vqa_model import question_examples  # noqa: E402
from vqa_table import TYPES, score_cells  # noqa: E402


def load_head(path):
    """(VQAConfig, checkpoint) of a finished vqa.py training state."""
    ckpt = load_checkpoint(path)
    if not ckpt.get("done"):
        raise ValueError(f"{path} is unfinished (step {ckpt['step']}): finish it with vqa.py --resume")
    fields = {f.name for f in dataclasses.fields(VQAConfig)}
    missing = sorted(fields - set(ckpt["config"]))   # e.g. its protocol: its frames would be read otherwise
    if missing:
        raise ValueError(f"{path} was written by an older version of this code (it lacks {missing}); {OLDER_RUNS}")
    return config_from_dict(VQAConfig, {k: v for k, v in ckpt["config"].items() if k in fields}), ckpt


def future_variants(run_dir, others=(), every_offset=False):
    """{name: slots (V, T, S, D)} with the observed frames of ``run_dir``'s slots and each
    kind of future frame (``run_slots``' frames: model frames, or every frame with
    ``every_offset``); also returns the dataset and how many frames were observed."""
    _, _, _, frame_slots, _, future_frames = collide_frames(run_dir, "vqa_future.py", every_offset)
    slots, data, n_obs = run_slots(run_dir, every_offset=every_offset)
    n_fut = len(future_frames)
    observed = slots[:, :n_obs]
    real = torch.from_numpy(np.asarray(frame_slots[data.episode_starts[:-1, None] + future_frames]))
    variants = {"rollout": slots,
                "no motion": torch.cat([observed, observed[:, -1:].expand(-1, n_fut, -1, -1)], dim=1),
                "real": torch.cat([observed, real], dim=1)}
    for other in others:
        theirs, _, _ = run_slots(other, every_offset=every_offset)
        if theirs.shape != slots.shape or not torch.equal(theirs[:, :n_obs], observed):
            raise ValueError(f"{other} does not share {run_dir}'s observed slots (another encoder?)")
        variants[f"rollout of {other}"] = torch.cat([observed, theirs[:, n_obs:]], dim=1)
    return variants, data, n_obs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a train.py --dataset collide run with a finished VQA head")
    parser.add_argument("--seed", type=int, default=0, help="the head: RUN/vqa-seed<seed>.pt")
    parser.add_argument("--head", help="the head's training state, if not RUN/vqa-seed<seed>.pt")
    parser.add_argument("--other", nargs="*", default=[], help="runs whose rollouts to swap in")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args(argv)
    head = args.head or Path(args.run) / f"vqa-seed{args.seed}.pt"
    try:
        cfg, ckpt = load_head(head)
        variants, data, n_obs = future_variants(args.run, args.other, cfg.every_offset)
        vocab, answers, examples = question_examples(data, cfg.max_words)
        kept, observed = head_input(cfg, variants["rollout"], n_obs)   # read as the head was trained
        if list(kept.shape) != ckpt["config"].get("slots_shape"):
            raise ValueError(f"{head} was trained on slots of shape {ckpt['config'].get('slots_shape')}, "
                             f"but {args.run} gives {list(kept.shape)}")
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    model = build_model(cfg, kept.shape[-1], len(vocab), len(answers), kept.shape[1], kept.shape[2])
    model.load_state_dict(ckpt["model"])
    print(f"{head}, {args.split}, % per option / per question")
    print("| future frames | " + " | ".join(TYPES) + " |")
    print("|---|" + "---|" * len(TYPES))
    for name, slots in variants.items():
        scores = evaluate(model, head_input(cfg, slots, n_obs)[0], examples[args.split], cfg.batch_size,
                          "cpu", cfg.precision, observed, cfg.sample_frames)
        print(f"| {name} | " + " | ".join(score_cells([scores])) + " |")


if __name__ == "__main__":
    main()
