"""VQA head training speed: seconds per step of vqa.py's training loop on random inputs.

    OMP_NUM_THREADS=1 python benchmarks/bench_vqa.py --preset cpu --steps 10 --precision fp32 bf16

One step is what ``vqa.train_vqa`` does: a forward pass over ``batch_size`` descriptive
examples and one over ``batch_size`` (question, choice) examples, backward, AdamW. Inputs are
random slots of the collide run's shape (frames after ``--frame-stride``, slots, slot width)
and random words of typical question / choice lengths; no data loading.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import PRECISIONS, autocast  # noqa: E402
from vqa import PRESETS, build_model  # noqa: E402


def seconds_per_step(cfg, frames, n_slots, slot_dim, steps, precision, question_len=20, choice_len=8,
                     vocab=100, n_answers=20, warmup=2):
    model = build_model(cfg, slot_dim, vocab, n_answers, frames, n_slots).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(0)
    B = cfg.batch_size

    def words(length):
        return torch.randint(vocab, (B, length), generator=g), torch.ones(B, length, dtype=torch.bool)

    slots = torch.randn(B, frames, n_slots, slot_dim, generator=g)
    question, question_mask = words(question_len)
    choice, choice_mask = words(choice_len)
    answers = torch.randint(n_answers, (B,), generator=g)
    labels = torch.randint(2, (B,), generator=g).float()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with autocast("cpu", precision):
            out = model(slots, question, question_mask)
            loss = F.cross_entropy(out["answer_logits"].float(), answers)
            out = model(slots, question, question_mask, choice, choice_mask)
            loss = loss + F.binary_cross_entropy_with_logits(out["choice_logit"].float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, help="frames the head reads (default: the preset's "
                        "--sample-frames, 25 at paper; else 10, the cpu run's 20 model frames at stride 2)")
    parser.add_argument("--slots", type=int, default=7)
    parser.add_argument("--slot-dim", type=int, default=128)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    args = parser.parse_args()
    cfg = PRESETS[args.preset]
    frames = args.frames or cfg.sample_frames or 10
    if cfg.sample_frames and frames != cfg.sample_frames:
        parser.error(f"the {args.preset} head reads {cfg.sample_frames} sampled frames; got --frames {frames}")
    print(f"VQA head, preset {args.preset} (width {cfg.dim}, {cfg.depth} layers, batch {cfg.batch_size} + "
          f"{cfg.batch_size}), {frames} frames x {args.slots} slots, {torch.get_num_threads()} threads")
    for precision in args.precision:
        s = seconds_per_step(cfg, frames, args.slots, args.slot_dim, args.steps, precision)
        print(f"{precision}: {s:.3f} s a step")


if __name__ == "__main__":
    main()
