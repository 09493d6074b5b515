"""Slot-encoder speed: one training step, and slot extraction per frame by frames per call.

    python benchmarks/bench_encoder.py --preset cpu --chunks 64 512 [--precision bf16] [any train.py flag]

Random weights (DINOv2's too) and random frames of the preset's shape (no data loading),
so ``--preset paper`` needs no weights file. A training step
is forward + backward + Adam on ``encoder_batch`` clips of ``encoder_clip_len`` frames, as
the encoder stage of train.py runs it; extraction encodes single frames from the learned
initial slots under ``torch.inference_mode``, as ``train.extract_slots`` does in frame mode,
``chunk`` frames per call. Each measurement is repeated and the fastest kept.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import PRECISIONS, autocast, build_parser, config_from_args  # noqa: E402
from config import PRESETS, TrainConfig, build_encoder  # noqa: E402
from encoder import encoder_loss  # noqa: E402


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step_seconds(cfg, steps, repeats, precision):
    torch.manual_seed(0)
    model = build_encoder(cfg, random_backbone=True)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.encoder_lr)
    size = cfg.image_size
    batch = {"frames": torch.rand(cfg.encoder_batch, cfg.encoder_clip_len, 3, size, size)}
    loss_fn = encoder_loss(cfg)

    def run():
        for step in range(steps):
            with autocast("cpu", precision):
                loss, _ = loss_fn(model, batch, torch.Generator().manual_seed(step), step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    run()  # warm-up
    return best_of(run, repeats) / steps


def extraction_ms_per_frame(cfg, chunk, n_frames, repeats, precision):
    torch.manual_seed(0)
    model = build_encoder(cfg, random_backbone=True).eval()
    frames = torch.rand(n_frames, 1, 3, cfg.image_size, cfg.image_size)  # (B, T=1, 3, H, W)

    @torch.inference_mode()
    def run():
        for start in range(0, n_frames, chunk):
            with autocast("cpu", precision):
                model.encode(frames[start:start + chunk], noise=False)

    run()  # warm-up
    return best_of(run, repeats) / n_frames * 1000


def main():
    parser = build_parser(TrainConfig, PRESETS, __doc__.split("\n")[0] + " Every train.py flag "
                          "(--decoder-size, --decoder-channels, ...) changes the encoder measured.")
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 512], help="frames per encode call")
    parser.add_argument("--frames", type=int, default=1024, help="frames encoded per measurement")
    parser.add_argument("--steps", type=int, default=5, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="as train.py --precision")
    args = parser.parse_args()
    cfg = config_from_args(TrainConfig, PRESETS, args, default_preset="cpu")
    decoder = (f"broadcast decoder {cfg.decoder_size} px x {cfg.decoder_channels} channels"
               if cfg.decoder == "broadcast" else f"{cfg.decoder} decoder")
    features = "full-size" if cfg.cnn_fullres else ("stride-2" if cfg.cnn_stride2 else "stride-1")
    if cfg.backbone == "dinov2":
        features = f"DINOv2 (similarity weight {cfg.similarity_weight})"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset or 'cpu'}, "
          f"{features} features, {decoder}, {args.precision}")
    seconds = train_step_seconds(cfg, args.steps, args.repeats, args.precision)
    print(f"training step ({cfg.encoder_batch} clips of {cfg.encoder_clip_len} frames at "
          f"{cfg.image_size} px): {seconds:.3f} s, {cfg.encoder_steps} steps ~{seconds * cfg.encoder_steps / 60:.0f} min")
    for chunk in args.chunks:
        ms = extraction_ms_per_frame(cfg, chunk, args.frames, args.repeats, args.precision)
        print(f"extraction, {chunk} frames a call: {ms:.2f} ms/frame")


if __name__ == "__main__":
    main()
