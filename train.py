"""C-JEPA training end to end: data -> slot encoder -> slot extraction -> predictor.

    python train.py --dataset pusht --masked 1                # the CPU preset
    python train.py --dataset collide --masked 4              # the collide world, for vqa.py
    python train.py --preset paper --dinov2-path dinov2_vits14_pretrain.pth
    python train.py --model dino-wm                           # the patch-token baseline (App. H)
    torchrun --nproc_per_node=2 train.py --preset tiny        # the same script under DDP

Stages (paper: a frozen object-centric encoder, then the masked predictor of the method
section; FACTS sections 1, 2 and 6):
1. data: collect the Push-T dataset (``data.py``; on Push-T also the encoder's all-moving
   variant) or generate the collide world (``collide_data.py``) into ``data/<name>-<hash>``.
2. encoder: train the slot encoder (``encoder.py``) into ``runs/encoders/<name>-<hash>``.
3. slots: write the frozen encoder's slots of every frame next to it (``encoder.py``).
4. predictor: train the C-JEPA predictor (``predictor.py``) on those slots into ``--out``:
   the loop below, ``train_predictor``.

The config and its presets are ``config.TrainConfig``. Each stage's output is named by a hash
of the fields it depends on, so runs that differ only in the predictor (``--masked 0`` and
``--masked 1``) share data and encoder. A finished stage is skipped; ``--redo STAGE`` runs it
again. Checkpoints are plain dicts ``{"model", "optimizer", "config", "step", "done", "rng"}``
written atomically and loadable with ``torch.load(weights_only=True)``; ``--resume`` continues
an interrupted stage at the same step with the same batches and masks. The predictor's
learning rate is constant, so ``--resume`` with more ``--epochs`` continues a finished
predictor to exactly where a run of that many epochs from the start would be.
"""

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from common import (PRECISIONS, autocast, batch_indices, build_parser, check_precision, collate,
                    config_from_args, config_to_dict, setup, Stage, step_generator, validate)
from files import atomic_write_json, claim, error_line, read_json
from config import (DATASETS, MODELS, PRESETS, STAGES, TrainConfig, build_predictor, check_config,
                    data_config, data_dir, describe_method, encoder_data_config, encoder_hash, load_checkpoint,
                    make_dataset, open_dataset)
from data import Windows
from encoder import (evaluate_encoder, extract_slots, LivePatches, load_slots, slots_extracted, token_files,
                     train_encoder)
from masking import make_mask
from predictor import cjepa_loss


# ---------------------------------------------------------------------------------------
# Stage 4: the C-JEPA predictor
# ---------------------------------------------------------------------------------------
def predictor_loss(cfg):
    """The C-JEPA loss of a batch of windows (FACTS section 1; predictor.cjepa_loss).

    With ``cfg.random_history`` (ours, not the paper's) each call draws h in 1..n_history
    from the step's generator and drops the oldest n_history - h frames of every window; the
    frames left keep their time positions (the newest observed frame stays at n_history - 1,
    as in a right-aligned rollout). The planner's first prediction is made from one frame.
    """
    def loss_fn(model, batch, generator, step):
        n_history = cfg.n_history
        if cfg.random_history:
            n_history = int(torch.randint(1, cfg.n_history + 1, (1,), generator=generator))
        drop = cfg.n_history - n_history
        slots = batch["slots"][:, drop:]  # (B, T, S, D)
        actions, proprio = (None if x is None else x[:, drop:]  # None on collide
                            for x in (batch.get("actions"), batch.get("proprio")))
        mask = make_mask(cfg.mask_kind, slots.shape[0], n_history, cfg.n_future,
                         slots.shape[2], cfg.masked, generator, cfg.masked_draw).to(slots.device)
        pred = model(slots, mask, actions, proprio, n_history, time_offset=drop)
        return cjepa_loss(pred, slots, mask, n_history, cfg.history_weight)
    return loss_fn


# The predictor's learning rate is constant, so these fields may grow on --resume and the
# run continues exactly as one that long from the start.
PREDICTOR_EXTENDABLE = ("epochs",)


def existing_predictor(cfg, out, redo, resume):
    """The predictor checkpoint in ``out`` that this config would continue or skip, or None.

    Fails clearly when it belongs to another config; one trained for another number of
    epochs only continues with ``resume``."""
    ckpt_path = Path(out) / "predictor.pt"
    if redo or not ckpt_path.is_file():
        return None
    ckpt = load_checkpoint(ckpt_path, config_to_dict(cfg), may_differ=PREDICTOR_EXTENDABLE)
    if ckpt["config"]["epochs"] != cfg.epochs and not resume:
        raise ValueError(f"{ckpt_path} was trained for {ckpt['config']['epochs']} epochs, not "
                         f"{cfg.epochs}: pass --resume to continue it to {cfg.epochs} epochs "
                         "or --redo predictor to start over")
    return ckpt


def train_predictor(cfg, data, slots, out, redo, resume, ctx):
    """Stage 4: train the C-JEPA predictor on the frozen encoder's ``slots`` into ``out``."""
    ckpt_path = out / "predictor.pt"
    config = config_to_dict(cfg)
    ckpt = existing_predictor(cfg, out, redo, resume)
    if ckpt is not None and ckpt["done"] and not resume:
        print(f"[predictor] {ckpt_path} is finished; pass --redo predictor to train again")
        return
    if ckpt_path.is_file() and redo and ctx.main:
        ckpt_path.unlink()
    ctx.barrier()
    torch.manual_seed(cfg.seed)
    model = build_predictor(cfg).to(ctx.device)
    aux_params = {name: list(layer.parameters()) if layer is not None else []
                  for name, layer in (("action", model.action_in), ("proprio", model.proprio_in))}
    special = {id(p) for group in aux_params.values() for p in group}
    optimizer = torch.optim.AdamW([  # constant learning rates, no warm-up, no clipping (App. E)
        {"params": [p for p in model.parameters() if id(p) not in special], "lr": cfg.lr},
        {"params": aux_params["action"], "lr": cfg.action_lr},
        {"params": aux_params["proprio"], "lr": cfg.proprio_lr},
    ])
    train_set = Windows(data, "train", cfg.n_history, cfg.n_future, cfg.frameskip, slots=slots)
    val_set = Windows(data, "val", cfg.n_history, cfg.n_future, cfg.frameskip, slots=slots)
    resumed = None
    if resume and ckpt_path.is_file():
        resumed = load_checkpoint(ckpt_path, config, may_differ=PREDICTOR_EXTENDABLE)
    if cfg.slot_norm and resumed is None:  # ours; a resumed run keeps the statistics it saved
        # the first frames of up to 20,000 training windows, spread evenly, 500 at a time
        n = min(20_000, len(train_set.starts))
        rows = train_set.starts[np.linspace(0, len(train_set.starts) - 1, n).astype(int)]
        model.fit_slot_norm(train_set.slot_rows(rows[i:i + 500]) for i in range(0, n, 500))
    total = cfg.epochs * (len(train_set) // cfg.batch_size)
    if ctx.main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"[predictor] {n_params / 1e6:.2f} M parameters, {len(train_set)} training windows, "
              f"{total} steps")
    loss_fn = predictor_loss(cfg)

    stage = Stage("predictor", ckpt_path, out / "log.jsonl", config, total, cfg.val_every, cfg.ckpt_every, ctx)
    step = stage.start(model, optimizer, resumed)
    net = stage.distributed(model)
    while step < total:
        # a batch of windows: (B, T, S, D) slots, (B, T, A) actions, (B, T, P) proprio
        batch = collate(train_set, batch_indices(len(train_set), cfg.batch_size, step, cfg.seed, ctx), ctx.device)
        with autocast(ctx.device, ctx.precision):  # mask -> predictor -> loss, in predictor_loss
            loss, terms = loss_fn(net, batch, step_generator(cfg.seed, step, ctx.rank), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        stage.end_step(step, loss, terms, model, optimizer, lambda: validate(
            model, loss_fn, val_set, cfg.val_batches, cfg.batch_size, ctx, step - 1))
    stage.close()


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------
def run(cfg: TrainConfig, out, redo=(), resume=False, device="auto", workers=0, progress=True,
        root=".", until="predictor", precision="fp32", live_patches=False):
    """Run every stage up to ``until`` that is missing (or named in ``redo``); return the run
    folder. ``precision`` (fp32 | bf16, see ``autocast``) is how this invocation computes; it
    is recorded in config.json, the checkpoints and the slots' json, not part of the config.
    ``live_patches``: a patch-token run encodes each batch's frames (encoder.LivePatches) and
    extracts nothing; the same numbers as from the extracted patches, up to rounding."""
    check_config(cfg)
    if live_patches and cfg.tokens != "patches":
        raise ValueError("--live-patches is for patch tokens (--model dino-wm), not slots")
    if live_patches and (until == "slots" or "slots" in redo):
        raise ValueError("--live-patches extracts no patches: leave out --until slots and --redo slots")
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, got {until!r}")
    check_precision(precision)
    ctx = setup(device, progress, precision)
    try:
        with claim(out, "a train.py run") if ctx.main else contextlib.nullcontext():
            _run_stages(cfg, Path(out), set(redo), resume, workers, Path(root), until, ctx, live_patches)
    finally:
        if ctx.world > 1:
            dist.destroy_process_group()
    return Path(out)


def _run_stages(cfg, out, redo, resume, workers, root, until, ctx, live_patches):
    data_cfg, enc_data_cfg = data_config(cfg), encoder_data_config(cfg)
    pred_dir, enc_data_dir = data_dir(root, data_cfg), data_dir(root, enc_data_cfg)
    enc_dir = root / "runs" / "encoders" / f"{cfg.dataset}-{encoder_hash(cfg)}"
    if until == "predictor":  # a predictor of another config fails on every rank, config.json untouched
        existing_predictor(cfg, out, "predictor" in redo, resume)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        enc_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", {"config": config_to_dict(cfg), "data": str(pred_dir),
                                                "encoder_data": str(enc_data_dir),
                                                "encoder": str(enc_dir), "precision": ctx.precision})
        for folder, made_of in {pred_dir: data_cfg, enc_data_dir: enc_data_cfg}.items():
            if "data" in redo or not (folder / "meta.json").is_file():
                with claim(folder, "data collection"):
                    make_dataset(made_of, folder, workers=workers, progress=ctx.progress)
    ctx.barrier()
    data = open_dataset(cfg, pred_dir)
    if until == "data":
        return

    enc_data = data if enc_data_dir == pred_dir else open_dataset(cfg, enc_data_dir, enc_data_cfg)
    with claim(enc_dir, "encoder training and slot extraction") if ctx.main and encoder_work(
            cfg, enc_dir, redo, until, live_patches) else contextlib.nullcontext():
        slots = _encoder_stages(cfg, data, enc_data, enc_dir, redo, resume, until, ctx, live_patches)
    if until in ("encoder", "slots"):
        return
    train_predictor(cfg, data, slots, out, "predictor" in redo, resume, ctx)


def encoder_work(cfg, enc_dir, redo, until, live_patches):
    """Whether the encoder stages of this run will write into ``enc_dir`` (and must hold it)."""
    if {"encoder", "slots"} & redo or not (enc_dir / "metrics.json").is_file():
        return True
    ckpt = enc_dir / "encoder.pt"
    if not ckpt.is_file() or not load_checkpoint(ckpt)["done"]:
        return True
    return until != "encoder" and not live_patches and not slots_extracted(enc_dir, cfg)


def _encoder_stages(cfg, data, enc_data, enc_dir, redo, resume, until, ctx, live_patches):
    """Stages 2 and 3: the encoder (trained, or the finished one), its scores, every frame's
    slots; returns the slots (or the encoder's ``LivePatches``), or None with ``until="encoder"``."""
    encoder = train_encoder(cfg, enc_data, enc_dir, "encoder" in redo, resume, ctx)
    # scored on the predictor's validation episodes: the frames its slots are made of
    if ctx.main and ("encoder" in redo or not (enc_dir / "metrics.json").is_file()):
        metrics = evaluate_encoder(encoder, data, cfg, ctx.device, enc_dir / "encoder.png")
        atomic_write_json(enc_dir / "metrics.json", metrics)
        print("[encoder] validation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if until == "encoder":
        return None
    if live_patches:
        return LivePatches(encoder, data.pixels, cfg, ctx.device, ctx.precision)
    if ctx.main and ({"encoder", "slots"} & redo or not slots_extracted(enc_dir, cfg)):
        precision = ctx.precision
        meta = token_files(enc_dir, cfg)[1]
        if not {"encoder", "slots"} & redo and meta.is_file():
            # slots without moments, extracted again for them: in the precision they were
            # made in, so the runs that trained on them keep the same slots
            precision = read_json(meta).get("precision", "fp32")
        extract_slots(encoder, data, cfg, enc_dir, ctx.device, ctx.progress,
                      resume=not {"encoder", "slots"} & redo, precision=precision)
    ctx.barrier()
    return load_slots(enc_dir, cfg, len(data.pixels))


def main(argv=None):
    parser = build_parser(TrainConfig, PRESETS, "Train C-JEPA end to end. Presets are per "
                          "dataset: --dataset collide --preset cpu is the collide world's.")
    parser.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<preset>-m<M>; "
                        "-dino-wm or -oc-dino-wm in place of -m<M> with those --model)")
    parser.add_argument("--redo", nargs="+", choices=STAGES, default=(), help="stages to rerun")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted stage")
    parser.add_argument("--until", choices=STAGES, default="predictor", help="stop after this stage")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: autocast forward passes (2.2-2.4x faster on a CPU with AMX)")
    parser.add_argument("--workers", type=int, default=0, help="data collection processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--live-patches", action="store_true",
                        help="patch tokens: encode each batch's frames with the frozen encoder instead of "
                        "extracting every frame's to disk (the paper preset's 196 x 384 a frame, --patch-grid 14, do not fit)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="a model of the paper's Push-T table, set over the preset: " + "; ".join(
                            f"{name}: {fields or 'the preset'}" for name, fields in MODELS.items()))
    args = parser.parse_args(argv)
    if args.dataset is not None and args.dataset not in DATASETS:
        parser.error(f"unknown --dataset {args.dataset!r}; available: {', '.join(DATASETS)}")
    cfg = config_from_args(TrainConfig, DATASETS[args.dataset or "pusht"], args, default_preset="cpu")
    if args.model:  # its fields over the preset; a flag may not say otherwise
        clash = [f"--{k.replace('_', '-')}" for k, v in MODELS[args.model].items()
                 if getattr(args, k) is not None and getattr(args, k) != v]
        if clash:
            parser.error(f"--model {args.model} sets {', '.join(clash)}: leave them out")
        cfg = dataclasses.replace(cfg, **MODELS[args.model])
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return
    name = args.model if args.model in ("dino-wm", "oc-dino-wm") else f"m{cfg.masked}"
    out = args.out or f"runs/{cfg.dataset}-{args.preset or 'cpu'}-{name}"
    print(describe_method(cfg))
    start = time.time()
    try:
        run(cfg, out, redo=tuple(args.redo), resume=args.resume, device=args.device,
            workers=args.workers, progress=not args.no_progress, until=args.until,
            precision=args.precision, live_patches=args.live_patches)
    except (ValueError, OSError, FloatingPointError) as err:  # DatasetError is a ValueError
        sys.exit(f"error: {error_line(err)}")
    print(f"done in {time.time() - start:.0f} s: {out}")


if __name__ == "__main__":
    main()
