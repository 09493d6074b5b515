"""Predictor training throughput (samples per second) for the presets of train.py.

    python benchmarks/bench_train.py --presets cpu paper --steps 20 [--precision bf16]
    python benchmarks/bench_train.py --presets cpu --models c-jepa dino-wm --patch-grid 4 8
    python benchmarks/bench_train.py --presets cpu --models dino-wm --patch-grid 8 --dropout 0
    python benchmarks/bench_train.py --presets paper --models dino-wm --live-patches --batch-size 16

Times forward + backward + AdamW step of the predictor on random token windows of the
preset's shape (no data loading), after a few warm-up steps; with --models, each model of the
paper's Push-T table (config.MODELS) set over each preset, the patch models at each grid.
With --live-patches a patch model's step also encodes its batch's frames (random uint8 pixels
of the preset's render size, B x T of them) with the frozen encoder, as train.py --live-patches
does, and the encoding's share of the step is printed (timed between two synchronisations on a
GPU; the read of the frames from the memory-mapped data is not in it). The encoder's weights are
random (DINOv2's too): a forward pass takes as long whatever they are.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import PRECISIONS, autocast  # noqa: E402
from config import MODELS, PRESETS, build_encoder, build_predictor, slot_dim_seen, tokens_per_frame  # noqa: E402
from encoder import pixels_to_patches  # noqa: E402
from train import predictor_loss  # noqa: E402


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(cfg, steps, device, precision="fp32", warmup=3, live=False):
    """(samples a second, seconds a step, predictor parameters, seconds a step spent encoding
    frames: 0 unless ``live``)."""
    torch.manual_seed(0)
    model = build_predictor(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    T = cfg.n_history + cfg.n_future
    B = cfg.batch_size
    batch = {"slots": torch.randn(B, T, tokens_per_frame(cfg), slot_dim_seen(cfg), device=device),
             "actions": torch.randn(B, T, 2 * cfg.frameskip, device=device),
             "proprio": torch.randn(B, T, 4, device=device)}
    if live:
        encoder = build_encoder(cfg, random_backbone=True).to(device).eval()
        pixels = torch.randint(0, 256, (B * T, cfg.render_size, cfg.render_size, 3), dtype=torch.uint8).numpy()
    loss_fn = predictor_loss(cfg)
    encoding = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            start, encoding = time.perf_counter(), 0.0
        if live:
            synchronize(device)
            tic = time.perf_counter()
            batch["slots"] = pixels_to_patches(encoder, pixels, cfg, device, precision).reshape(B, T, *batch["slots"].shape[2:])
            synchronize(device)
            encoding += time.perf_counter() - tic
        with autocast(device, precision):
            loss, _ = loss_fn(model, batch, torch.Generator().manual_seed(i), i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    return B * steps / seconds, seconds / steps, n_params, encoding / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=sorted(PRESETS))
    parser.add_argument("--models", nargs="+", default=[None], choices=sorted(MODELS),
                        help="models of the paper's Push-T table, set over each preset (default: the preset)")
    parser.add_argument("--patch-grid", type=int, nargs="+", default=None, help="patch grids of the patch models")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="instead of the preset's batch")
    parser.add_argument("--live-patches", action="store_true",
                        help="patch models encode each step's frames, as train.py --live-patches")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="as train.py --precision")
    parser.add_argument("--dropout", type=float, default=None,
                        help="the predictor's dropout instead of the preset's: on a CPU, attention with "
                             "dropout leaves PyTorch's fused kernel for the written-out one")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}")
    for name in args.presets:
        for model in args.models:
            cfg = dataclasses.replace(PRESETS[name], **MODELS[model]) if model else PRESETS[name]
            if args.dropout is not None:
                cfg = dataclasses.replace(cfg, dropout=args.dropout)
            if args.batch_size is not None:
                cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
            grids = args.patch_grid if cfg.tokens == "patches" and args.patch_grid else [cfg.patch_grid]
            for grid in grids:
                cfg = dataclasses.replace(cfg, patch_grid=grid)
                what = f"preset {name}" + (f", {model}" if model else "") + (
                    f" ({grid} x {grid} patches)" if cfg.tokens == "patches" else "") + (
                    f", dropout {cfg.dropout:g}" if args.dropout is not None else "")
                live = args.live_patches and cfg.tokens == "patches"
                rate, per_step, n_params, encoding = throughput(cfg, args.steps, device, args.precision, live=live)
                print(f"{what}: {n_params / 1e6:.2f} M parameters, batch {cfg.batch_size}, "
                      f"{tokens_per_frame(cfg)} tokens a frame: {rate:.0f} samples/s ({per_step * 1000:.0f} ms/step"
                      + (f", of which {encoding * 1000:.0f} ms encode the frames live, {encoding / per_step:.0%})"
                         if live else ")"))


if __name__ == "__main__":
    main()
