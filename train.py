"""End-to-end C-JEPA training: data -> slot encoder -> slot extraction -> predictor.

    python train.py --dataset pusht --masked 1                # the CPU preset
    python train.py --dataset collide --masked 4              # the collide world, for vqa.py
    python train.py --preset paper --dinov2-path dinov2_vits14_pretrain.pth
    torchrun --nproc_per_node=2 train.py --preset tiny        # the same script under DDP

Stages (paper: frozen object-centric encoder, then the masked predictor of the method
section; FACTS sections 1, 2 and 6):
1. data: collect the Push-T dataset (``data.py``) or generate the collide world
   (``collision.py``) into ``data/<name>-<hash>``.
2. encoder: train the video slot encoder (``slots.py``) into ``runs/encoders/<hash>``.
3. slots: write the frozen encoder's slots of every frame next to it
   (``slots-<mode>.npy``: each frame encoded alone, or in video mode; ``--slot-mode``).
4. predictor: train the C-JEPA predictor (``predictor.py``) on those slots into ``--out``.

Each stage's output is named by a hash of the config fields it depends on, so runs that
differ only in the predictor (``--masked 0`` and ``--masked 1``) share data and encoder.
A finished stage is skipped; ``--redo STAGE`` runs it again. Checkpoints are plain dicts
``{"model", "optimizer", "config", "step", "done", "rng"}`` written atomically and loadable
with ``torch.load(weights_only=True)``; ``--resume`` continues an interrupted stage at the
same step with the same batches and masks. The predictor's learning rate is constant, so
``--resume`` with more ``--epochs`` continues a finished predictor to exactly where a run
of that many epochs from the start would be.
"""

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from collision import CollideConfig, generate, load_collide
from common import (atomic_write_bytes, atomic_write_json, build_parser, config_from_args, config_from_dict,
                    config_to_dict)
from data import DatasetError, FrameClips, PushTDataConfig, Windows, collect, load_dataset
from masking import MASK_KINDS, make_mask
from predictor import Predictor, cjepa_loss
from slots import N_MOMENTS, SlotEncoder, fg_ari, mask_moments, masks_to_segmentation, mbo


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of the pipeline; defaults are the CPU preset."""
    dataset: str = "pusht"        # pusht | collide
    masked: int = 1               # M, object slots hidden per sample (0 = OC-JEPA)
    mask_kind: str = "object"     # object | token | tube | none
    seed: int = 0                 # predictor seed (data and encoder have their own)
    # -- data (data.PushTDataConfig or collision.CollideConfig)
    episodes: int = 1000          # Push-T episodes, or collide videos
    min_steps: int = 100          # Push-T episode length
    max_steps: int = 100
    video_observed: int = 32      # collide: observed frames per video
    video_future: int = 8         # collide: held-out frames after them
    frame_substeps: int = 4       # collide: physics steps per frame
    render_size: int = 64
    val_fraction: float = 0.1     # (collide: test split the same size)
    data_seed: int = 0
    # -- slot encoder (slots.SlotEncoder)
    backbone: str = "cnn"         # cnn | dinov2
    dinov2_path: str = ""         # local dinov2_vits14_pretrain.pth for backbone dinov2
    image_size: int = 64          # frames are resized to this before the encoder
    n_slots: int = 4
    slot_dim: int = 128
    cnn_channels: int = 32
    cnn_fullres: bool = True      # stride-2 CNN features upsampled and joined with the pixels: slot attention at full size
    decoder: str = "attention"    # attention: slot attention's masks paint one colour per slot (ours) | broadcast
    decoder_channels: int = 32    # (broadcast decoder)
    decoder_size: int = 32        # the broadcast decoder reconstructs frames averaged down to this
    decoder_rgb: str = "slot"     # slot: one colour per slot | pixel: RGB per pixel (Locatello)
    slot_init: str = "query"      # query: learned queries, straight-through (BO-QSA) | noise: mu + sigma * noise
    recon_weight: float = 20.0    # pixel weight 1 + this * |pixel - background colour| (0: plain MSE)
    encoder_plain_steps: int = 0  # the last this many encoder steps train with plain MSE (recon_weight 0)
    encoder_plain_lr: float = 0.0  # those steps at this constant learning rate (0: the cosine schedule goes on)
    cnn_stride2: bool = True
    n_iters_first: int = 3
    n_iters: int = 2
    encoder_clip_len: int = 4
    encoder_steps: int = 1500
    encoder_batch: int = 8
    encoder_lr: float = 1e-3
    encoder_warmup: int = 200
    encoder_clip: float = 1.0     # gradient-norm clipping of the encoder (0: none)
    encoder_seed: int = 0
    encoder_data: str = "all_moving"  # Push-T: the encoder trains on all_moving data (App. D.1) | predictor: on the predictor's
    slot_mode: str = "frame"      # slots for the predictor: frame (each frame alone, as plan.py encodes) | video
    # -- predictor (predictor.Predictor); frames are frameskip env steps apart
    n_history: int = 3
    n_future: int = 1
    frameskip: int = 5
    predictor_dim: int = 64       # transformer width (the paper: 128, the slot size)
    depth: int = 3
    heads: int = 4
    dim_head: int = 16
    mlp_dim: int = 256
    dropout: float = 0.1
    aux: str = "nodes"            # nodes (the paper) | concat (the DINO-WM ablation)
    causal: bool = False          # True: block-causal over time (OC-DINO-WM)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4              # AdamW, constant
    action_lr: float = 5e-4
    proprio_lr: float = 5e-4      # App. E (the official Push-T script: 1e-4)
    # -- bookkeeping
    val_every: int = 500
    val_batches: int = 20
    ckpt_every: int = 500
    # -- our additions: each off (its default) is the paper's method; OURS describes them and
    #    docs/additions.md has each one's measured effect
    random_history: bool = False  # each step trains on the last h of the n_history frames, h in 1..n_history
    slot_residual: bool = False   # a hidden slot = its last visible value + predicted change
    proprio_residual: bool = False  # future proprio = last observed + predicted change
    future_action: str = "query"  # visible: the future frame's action token shows its action
    proprio_space: str = "embedding"  # raw: proprio predicted and scored as the z-scored 4 numbers
    mask_moments: float = 0.0     # > 0: each slot followed by this times its mask's moments (slots.mask_moments)
    position_weight: float = 0.0  # attention decoder: + this * each slot's spread in place (slots.mask_spread)


# One line each: what an addition of ours changes against the paper's method (its value there
# is the field's default, and every preset keeps it).
OURS = {
    "random_history": "trains on 1..n_history history frames, as the planner starts from one",
    "slot_residual": "predicts each hidden slot's change since it was last visible",
    "proprio_residual": "predicts the proprio's change since the last observed frame",
    "future_action": "shows the predicted frame's action to the predictor",
    "proprio_space": "predicts and scores raw z-scored proprio, not its embedding",
    "mask_moments": "appends each slot's mask moments (share, centre, spread) to the slot",
    "position_weight": "charges slot attention's masks for their spread in place",
}
PAPER_METHOD = {name: getattr(TrainConfig(), name) for name in OURS}


PRESETS = {
    "cpu": TrainConfig(),
    "paper": TrainConfig(
        episodes=2000, min_steps=100, max_steps=200, render_size=224, backbone="dinov2",
        image_size=196, slot_dim=128, n_iters=2, encoder_clip_len=2, encoder_steps=100_000, encoder_batch=64,
        # CNN-only fields, unused by DINOv2, at their values before they existed: the encoder's
        # folder name and its checkpoints' config stay those of earlier paper runs
        cnn_fullres=False, decoder="broadcast",
        # heads of 64 as App. E says (the official code's nn.MultiheadAttention(128, 16) has heads of 8)
        predictor_dim=128, depth=6, heads=16, dim_head=64, mlp_dim=2048, epochs=30,
        batch_size=256,
        val_every=2000, ckpt_every=2000),
    "tiny": TrainConfig(
        episodes=12, min_steps=30, max_steps=40, val_fraction=0.25, image_size=32, cnn_channels=16,
        decoder_channels=8, decoder_size=16,
        slot_dim=32, encoder_clip_len=2, encoder_steps=6, encoder_batch=4, encoder_warmup=2,
        predictor_dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, epochs=1, batch_size=8, val_every=4,
        val_batches=2, ckpt_every=4),
}
# The collide world (collision.py), CLEVRER's settings where they carry over (FACTS section 2):
# 7 slots, history 6, frameskip 2; 4 predicted frames cover the 8 held-out frames. The cpu
# preset keeps the encoder recipe it was measured with (stride-2 features, a broadcast decoder
# with per-pixel RGB, plain MSE, lr 4e-4, no clipping, noisy slot init; the tiny preset the
# same decoder), trained on the videos themselves (every object already moves). The predictor
# trains on video-mode slots: VQA reads whole observed videos, and objects alike in kind need
# the propagation to keep their slots.
COLLIDE_PRESETS = {
    "cpu": dataclasses.replace(PRESETS["cpu"], dataset="collide", episodes=2000, n_slots=7,
                               frameskip=2, n_history=6, n_future=4, cnn_fullres=False, decoder="broadcast",
                               decoder_rgb="pixel", recon_weight=0.0, encoder_clip_len=2, encoder_steps=4000,
                               encoder_batch=16, encoder_lr=4e-4, encoder_clip=0.0, slot_init="noise",
                               encoder_data="predictor", slot_mode="video"),
    "paper": dataclasses.replace(PRESETS["paper"], dataset="collide", episodes=20000,
                                 video_observed=128, video_future=32, render_size=128,
                                 val_fraction=0.25, n_slots=7, frameskip=2, n_history=6, n_future=10,
                                 encoder_data="predictor", slot_mode="video"),
    "tiny": dataclasses.replace(PRESETS["tiny"], dataset="collide", episodes=16, video_observed=12,
                                video_future=4, frame_substeps=10, n_slots=4, frameskip=2,
                                cnn_fullres=False, decoder="broadcast",
                                n_history=2, n_future=2, encoder_data="predictor", slot_mode="video"),
}
DATASETS = {"pusht": PRESETS, "collide": COLLIDE_PRESETS}
STAGES = ("data", "encoder", "slots", "predictor")


def data_config(cfg: TrainConfig) -> PushTDataConfig | CollideConfig:
    if cfg.dataset == "collide":
        return CollideConfig(name=cfg.dataset, videos=cfg.episodes, n_observed=cfg.video_observed,
                             n_future=cfg.video_future, frame_substeps=cfg.frame_substeps,
                             render_size=cfg.render_size, val_fraction=cfg.val_fraction,
                             test_fraction=cfg.val_fraction, seed=cfg.data_seed)
    return PushTDataConfig(name=cfg.dataset, episodes=cfg.episodes, min_steps=cfg.min_steps,
                           max_steps=cfg.max_steps, render_size=cfg.render_size,
                           val_fraction=cfg.val_fraction, seed=cfg.data_seed)


def encoder_data_config(cfg: TrainConfig) -> PushTDataConfig | CollideConfig:
    """The data the encoder trains on: on Push-T by default the all-moving variant of the
    predictor's data (App. D.1: every object moves randomly, so the block takes every pose)."""
    if cfg.encoder_data == "all_moving":
        return dataclasses.replace(data_config(cfg), policy="all_moving")
    return data_config(cfg)


def data_key(data_cfg) -> dict:
    """A dataset's config as folder names hash it: a field added later is left out at the value
    datasets had before it existed (Push-T's collection policy, "weak"), so their names stay."""
    key = config_to_dict(data_cfg)
    return {k: v for k, v in key.items() if not (k == "policy" and v == "weak")}


def data_dir(root, data_cfg) -> Path:
    """The folder of a dataset, named by a hash of its config."""
    return Path(root) / "data" / f"{data_cfg.name}-{short_hash(data_key(data_cfg))}"


def make_dataset(data_cfg, path, workers=0, progress=True):
    """Collect (Push-T) or generate (collide) the dataset ``data_cfg`` into ``path``."""
    make = generate if isinstance(data_cfg, CollideConfig) else collect
    return make(data_cfg, path, workers=workers, progress=progress, overwrite=True)


def open_dataset(cfg: TrainConfig, path, data_cfg=None):
    """Load the dataset of ``cfg`` (the predictor's, or ``data_cfg``) from ``path``, checking
    it was made with that config."""
    load = load_collide if cfg.dataset == "collide" else load_dataset
    return load(path, expect=data_config(cfg) if data_cfg is None else data_cfg)


ENCODER_FIELDS = ("backbone", "dinov2_path", "image_size", "n_slots", "slot_dim", "cnn_channels",
                  "cnn_fullres", "decoder", "decoder_channels", "decoder_size", "decoder_rgb", "recon_weight",
                  "position_weight", "encoder_plain_steps", "encoder_plain_lr", "slot_init",
                  "cnn_stride2", "n_iters_first", "n_iters", "encoder_clip_len", "encoder_steps",
                  "encoder_batch", "encoder_lr", "encoder_warmup", "encoder_clip", "encoder_seed",
                  "frameskip")


def encoder_config(cfg: TrainConfig) -> dict:
    """The settings the encoder stage depends on (the data's included)."""
    return {"data": data_key(encoder_data_config(cfg)),
            **{name: getattr(cfg, name) for name in ENCODER_FIELDS}}


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------
# Processes and devices: plain python, or one process per device under torchrun (DDP)
# ---------------------------------------------------------------------------------------
PRECISIONS = ("fp32", "bf16")


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def autocast(device, precision):
    """The precision of forward passes: "fp32", or "bf16" autocast, which runs matrix products
    and convolutions in bfloat16 while parameters, gradients and optimiser state stay float32.
    Its speed and its unsettled effect on slot quality: docs/speed.md, docs/training.md."""
    check_precision(precision)
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class Context:
    rank: int
    world: int
    device: torch.device
    progress: bool
    precision: str = "fp32"

    @property
    def main(self):
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def setup(device_flag: str, progress: bool, precision: str = "fp32") -> Context:
    """Start DDP when launched by torchrun (gloo on CPU, nccl on GPUs) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_flag == "auto":
        device_flag = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(f"cuda:{local}" if device_flag == "cuda" else device_flag)
    if device.type == "cuda" and local >= torch.cuda.device_count():
        raise RuntimeError(f"process {local} of this machine needs GPU {local}, but only "
                           f"{torch.cuda.device_count()} GPU(s) are visible: start at most that "
                           "many processes per node, or pass --device cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(hours=12))
    return Context(rank, world, device, progress and rank == 0, precision)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, config, step, done, **extra):
    """Write the training state to ``path`` atomically; ``extra`` entries are stored alongside."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": config,
             "step": step, "done": done, "rng": torch.get_rng_state(), **extra}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# Values that configs written before a field existed ran with, where they differ from
# today's default; any other missing field ran with its default.
LEGACY_VALUES = {"decoder_rgb": "pixel", "decoder": "broadcast", "cnn_fullres": False, "recon_weight": 0.0,
                 "encoder_clip": 0.0, "slot_init": "noise",
                 "random_history": False, "slot_mode": "video", "proprio_residual": False,
                 "slot_residual": False, "future_action": "visible", "proprio_space": "raw",
                 "encoder_data": "predictor"}


# Encoder fields added after the first encoders were trained; at the value they had before
# they existed they stay out of the encoder folder's hash, so that folder keeps its name.
ADDED_ENCODER_FIELDS = ("decoder_rgb", "recon_weight", "encoder_clip", "slot_init", "encoder_plain_steps",
                        "encoder_plain_lr", "decoder", "cnn_fullres", "position_weight")


def values_before_fields_existed() -> dict:
    """Every TrainConfig field's value in configs written before it existed: LEGACY_VALUES'
    or else its default."""
    return {**config_to_dict(TrainConfig()), **LEGACY_VALUES}


def encoder_hash(cfg: TrainConfig) -> str:
    """The short hash naming the encoder folder of ``cfg``."""
    known = values_before_fields_existed()
    before = {k: known[k] for k in ADDED_ENCODER_FIELDS}
    return short_hash({k: v for k, v in encoder_config(cfg).items() if k not in before or v != before[k]})


def renamed_fields(config: dict) -> dict:
    """A stored config with the flag hide_last_action, which future_action replaced, read as it."""
    config = dict(config)
    if "hide_last_action" in config:
        config["future_action"] = "query" if config.pop("hide_last_action") else "visible"
    return config


def with_legacy_values(config: dict) -> dict:
    """A TrainConfig dict with the LEGACY_VALUES fields it lacks filled in."""
    config = renamed_fields(config)
    return {**{k: v for k, v in LEGACY_VALUES.items() if k not in config}, **config}


def load_checkpoint(path, config=None, known=None, may_differ=()):
    """Load a checkpoint; with ``config``, fail clearly if it was made for another config.

    A field of ``config`` the checkpoint's lacks counts as ``known[field]`` where given
    (default: a TrainConfig's value before the field existed); fields in ``may_differ``
    are not compared."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or not {"model", "config", "step"} <= set(ckpt):
        raise ValueError(f"{path} is not a checkpoint of this project (expected keys model, "
                         "config, step)")
    if config is not None:
        # A field added to TrainConfig after the checkpoint was written takes the value the
        # checkpoint ran with: LEGACY_VALUES' or else the field's default.
        if known is None:
            known = values_before_fields_existed()
        stored = renamed_fields(ckpt["config"])
        theirs = {**{k: known[k] for k in set(config) - set(stored) if k in known}, **stored}
        absent = object()
        diff = sorted(k for k in set(theirs) | set(config)
                      if k not in may_differ and theirs.get(k, absent) != config.get(k, absent))
        if diff:
            raise ValueError(f"{path} was made for another config; differing fields: {diff}")
    return ckpt


def open_run(path, dataset, purpose):
    """Read a finished or unfinished run of this script: a run folder or the predictor.pt in it.

    Returns (cfg, info, run_dir, predictor checkpoint); ``info`` is the run's config.json
    (its "data" and "encoder" folders). Fails clearly when the run is missing or was trained
    on another dataset than ``dataset`` (the message starts with ``purpose``).
    """
    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    info_path = run_dir / "config.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: expected a run folder of train.py or the "
                                "predictor.pt inside one")
    info = json.loads(info_path.read_text())
    cfg = config_from_dict(TrainConfig, with_legacy_values(info["config"]))
    if cfg.dataset != dataset:
        raise ValueError(f"{purpose}; {run_dir} was trained on {cfg.dataset!r}")
    return cfg, info, run_dir, load_checkpoint(run_dir / "predictor.pt", config_to_dict(cfg))


# ---------------------------------------------------------------------------------------
# The training loop shared by the encoder and predictor stages
# ---------------------------------------------------------------------------------------
def batch_indices(n_items, batch_size, step, seed, ctx: Context):
    """This process's item indices for global ``step``: a pure function of its arguments.

    Epoch e shuffles the items with a generator seeded by (seed, e); each process takes
    every world-th item; step k is batch k mod (steps per epoch) of epoch k // (steps
    per epoch). Resuming at a step therefore replays exactly the batches that would follow.
    """
    per_rank = batch_size // ctx.world
    steps_per_epoch = (n_items // ctx.world) // per_rank
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {n_items} training items")
    epoch, k = divmod(step, steps_per_epoch)
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    mine = order[ctx.rank::ctx.world]
    return mine[k * per_rank:(k + 1) * per_rank].tolist()


def collate(dataset, indices, device):
    """The items ``indices`` of ``dataset`` stacked on ``device``: one call of its ``batch``
    where it has one (data.Windows), else item by item."""
    if hasattr(dataset, "batch"):
        return {key: value.to(device) for key, value in dataset.batch(indices).items()}
    items = [dataset[i] for i in indices]
    return {key: torch.stack([item[key] for item in items]).to(device) for key in items[0]}


def step_generator(seed, step, rank):
    """The generator of one training step (mask and slot-init noise), reproducible on resume."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))


@torch.no_grad()
def validate(model, loss_fn, dataset, n_batches, batch_size, ctx, step):
    """Mean loss terms over the first ``n_batches`` of a fixed shuffle of ``dataset``, with
    the loss of training step ``step``."""
    model.eval()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(1234))
    totals = {}
    n = 0
    for b in range(min(n_batches, len(dataset) // batch_size or 1)):
        batch = collate(dataset, order[b * batch_size:(b + 1) * batch_size].tolist(), ctx.device)
        with autocast(ctx.device, ctx.precision):
            loss, terms = loss_fn(model, batch, torch.Generator().manual_seed(b), step)
        for key, value in {"loss": loss, **terms}.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        n += 1
    model.train()
    return {f"val_{k}": v / n for k, v in totals.items()}


def drop_log_after(log_path, stage, step):
    """Forget the log records of ``stage`` past ``step`` (written after the last checkpoint)."""
    if not Path(log_path).is_file():
        return
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    kept = [r for r in records if r["stage"] != stage or r["step"] <= step]
    atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def fit(name, model, optimizer, lr_factor, loss_fn, train_set, val_set, total_steps, batch_size,
        seed, ckpt_path, config, resume, cfg: TrainConfig, ctx: Context, log_path, clip=0.0,
        extendable=()):
    """Train ``model`` for ``total_steps`` steps; checkpoint, validate, log, resume.

    ``clip`` > 0 clips the gradient's global norm to it before each step. ``extendable``
    names config fields (the length of training) that ``--resume`` may find changed: a
    finished or unfinished run then continues to the new ``total_steps``, which is only
    the same as training that long from the start when ``lr_factor`` does not depend on
    the total.
    """
    step = 0
    # the schedule scales these base rates; a saved optimizer state holds the scaled ones
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    if resume and Path(ckpt_path).is_file():
        ckpt = load_checkpoint(ckpt_path, config, may_differ=extendable)
        if ckpt["step"] > total_steps:
            raise ValueError(f"{ckpt_path} has trained {ckpt['step']} {name} steps, more than the "
                             f"{total_steps} this config asks for; it cannot be shortened")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        if ctx.device.type == "cuda" and "cuda_rng" in ckpt:  # dropout draws from the device's RNG
            torch.cuda.set_rng_state(ckpt["cuda_rng"], ctx.device)
        step = ckpt["step"]
        if ctx.main:
            print(f"[{name}] resumed from {ckpt_path} at step {step}")
            drop_log_after(log_path, name, step)
    elif Path(ckpt_path).is_file():
        raise FileExistsError(f"{ckpt_path} holds an unfinished {name} run: pass --resume to "
                              f"continue it or --redo {name} to start over")
    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    bar = tqdm(total=total_steps, initial=step, desc=name, disable=not ctx.progress,
               dynamic_ncols=True)
    model.train()
    started = time.perf_counter()
    while step < total_steps:
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * lr_factor(step)
        batch = collate(train_set, batch_indices(len(train_set), batch_size, step, seed, ctx),
                        ctx.device)
        with autocast(ctx.device, ctx.precision):
            loss, terms = loss_fn(net, batch, step_generator(seed, step, ctx.rank), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        step += 1
        record = {"step": step, "loss": loss.item(), **{k: float(v) for k, v in terms.items()},
                  "seconds": round(time.perf_counter() - started, 3)}  # since this process began the stage
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        bar.update()
        if step % cfg.val_every == 0 or step == total_steps:
            record.update(validate(model, loss_fn, val_set, cfg.val_batches, batch_size, ctx, step - 1))
            if ctx.main:
                bar.write(f"[{name}] step {step}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")))
        if ctx.main:
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"stage": name, **record}) + "\n")
            if step % cfg.ckpt_every == 0 or step == total_steps:
                extra = {"cuda_rng": torch.cuda.get_rng_state(ctx.device)} if ctx.device.type == "cuda" else {}
                save_checkpoint(ckpt_path, model, optimizer, config, step, step == total_steps,
                                precision=ctx.precision, **extra)
    bar.close()
    ctx.barrier()
    return model


# ---------------------------------------------------------------------------------------
# Stage 1 and 2: data and slot encoder
# ---------------------------------------------------------------------------------------
def build_encoder(cfg: TrainConfig) -> SlotEncoder:
    if cfg.backbone == "dinov2" and not cfg.dinov2_path:
        raise ValueError("backbone dinov2 needs the frozen ViT-S/14 weights: pass --dinov2-path "
                         "/path/to/dinov2_vits14_pretrain.pth (or use --backbone cnn)")
    return SlotEncoder(backbone=cfg.backbone, image_size=cfg.image_size, n_slots=cfg.n_slots,
                       slot_dim=cfg.slot_dim, n_iters_first=cfg.n_iters_first,
                       n_iters=cfg.n_iters, cnn_channels=cfg.cnn_channels,
                       cnn_stride2=cfg.cnn_stride2, cnn_full_res=cfg.cnn_fullres, decoder=cfg.decoder,
                       decoder_channels=cfg.decoder_channels,
                       decoder_size=cfg.decoder_size, decoder_rgb=cfg.decoder_rgb,
                       recon_weight=cfg.recon_weight, position_weight=cfg.position_weight,
                       slot_init=cfg.slot_init,
                       dinov2_weights=cfg.dinov2_path or None)


def resize_frames(frames, size):
    """(B, T, 3, H, W) -> (B, T, 3, size, size), antialiased, if the sizes differ."""
    if frames.shape[-1] == size:
        return frames
    B = frames.shape[0]
    flat = F.interpolate(frames.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True)
    return flat.unflatten(0, (B, -1))


def colour_stats(data, split, n_frames=2000):
    """Mean and median RGB in [0, 1] over up to ``n_frames`` evenly spread frames of ``split``.

    Returns two float32 arrays (3,); the median is the background colour on worlds where
    the background covers most of every frame (Push-T, collide).
    """
    rows = np.concatenate([np.arange(data.episode_starts[e], data.episode_starts[e + 1])
                           for e in data.episodes(split)])
    rows = rows[np.linspace(0, len(rows) - 1, min(n_frames, len(rows))).astype(int)]
    pixels = np.asarray(data.pixels[rows]).reshape(-1, 3) / 255
    return pixels.mean(0).astype(np.float32), np.median(pixels, axis=0).astype(np.float32)


def encoder_loss(cfg):
    """The encoder's loss at a training step (0-based): the model's own, or plain pixel MSE in
    the last ``cfg.encoder_plain_steps`` steps."""
    def loss_fn(model, batch, generator, step):
        plain = step >= cfg.encoder_steps - cfg.encoder_plain_steps
        out = model(resize_frames(batch["frames"], cfg.image_size), generator=generator,
                    recon_weight=0.0 if plain else None)
        return out["loss"], {k: out[k].detach() for k in ("mse", "place") if k in out}
    return loss_fn


def encoder_lr_factor(cfg):
    """The encoder's learning rate at a step (0-based) over ``cfg.encoder_lr``: linear warmup,
    then cosine decay to 10 %; the plain-MSE steps at ``cfg.encoder_plain_lr`` when it is set."""
    def factor(step):
        if cfg.encoder_plain_lr and step >= cfg.encoder_steps - cfg.encoder_plain_steps:
            return cfg.encoder_plain_lr / cfg.encoder_lr
        if step < cfg.encoder_warmup:
            return (step + 1) / cfg.encoder_warmup
        progress = (step - cfg.encoder_warmup) / max(1, cfg.encoder_steps - cfg.encoder_warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))
    return factor


def train_encoder(cfg, data, enc_dir, redo, resume, ctx):
    """Stage 2: train the slot encoder unless a finished one with this config exists."""
    ckpt_path = enc_dir / "encoder.pt"
    config = encoder_config(cfg)
    if ckpt_path.is_file() and not redo:
        ckpt = load_checkpoint(ckpt_path, config)
        if ckpt["done"]:
            model = build_encoder(cfg)
            model.load_state_dict(ckpt["model"])
            return model.to(ctx.device).eval()
    elif ckpt_path.is_file() and redo and ctx.main:
        ckpt_path.unlink()
    ctx.barrier()
    torch.manual_seed(cfg.encoder_seed)
    model = build_encoder(cfg).to(ctx.device)
    if cfg.backbone == "cnn":
        mean, median = colour_stats(data, "train")
        model.pixel_mean.copy_(torch.from_numpy(mean))
        model.background.copy_(torch.from_numpy(median))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=cfg.encoder_lr)
    train_set = FrameClips(data, "train", cfg.encoder_clip_len, cfg.frameskip)
    val_set = FrameClips(data, "val", cfg.encoder_clip_len, cfg.frameskip)
    fit("encoder", model, optimizer, encoder_lr_factor(cfg), encoder_loss(cfg), train_set, val_set,
        cfg.encoder_steps, cfg.encoder_batch, cfg.encoder_seed, ckpt_path, config,
        resume, cfg, ctx, enc_dir / "log.jsonl", clip=cfg.encoder_clip)
    return model.eval()


@torch.no_grad()
def validation_segments(model, data, cfg, device, n_clips=64, clip_len=8):
    """The encoder in video mode on ``n_clips`` fixed validation clips, 16 a call: yields
    (frames (B, T, 3, h, w) as the encoder saw them, its output, segment ids (B, T, H, W) at
    the data's size, dataset frame indices (B, T))."""
    model.eval()
    longest = max(np.diff(data.episode_starts)[data.episodes("val")])
    clips = FrameClips(data, "val", min(clip_len, (longest - 1) // cfg.frameskip + 1), cfg.frameskip)
    order = np.random.default_rng(0).permutation(len(clips))[:n_clips]
    for start in range(0, len(order), 16):
        batch = collate(clips, order[start:start + 16].tolist(), device)
        frames = resize_frames(batch["frames"], cfg.image_size)
        out = model(frames)
        H = batch["frames"].shape[-1]
        seg = masks_to_segmentation(out["masks"], size=(H, H)).cpu().numpy()
        yield frames, out, seg, batch["index"].cpu().numpy()


def evaluate_encoder(model, data, cfg, device, figure_path, n_clips=64, clip_len=8):
    """FG-ARI (per frame and per video) and mBO on validation clips, and a picture."""
    scores = {"fg_ari_frame": [], "fg_ari_video": [], "mbo": []}
    for start, (frames, out, seg, indices) in enumerate(validation_segments(model, data, cfg, device,
                                                                           n_clips, clip_len)):
        for b, index in enumerate(indices):
            truth = data.id_maps(index)  # (T, H, W)
            scores["fg_ari_video"].append(fg_ari(truth, seg[b]))
            scores["fg_ari_frame"].append(np.nanmean([fg_ari(t, p) for t, p in zip(truth, seg[b])]))
            scores["mbo"].append(mbo(truth, seg[b]))
        if start == 0:
            save_encoder_figure(frames[0], out, figure_path)
    return {k: float(np.nanmean(v)) for k, v in scores.items()}


def save_encoder_figure(frames, out, path):
    """A PNG: frames, reconstructions (CNN backbone) and each slot's mask, one column a frame."""
    T, _, H, W = frames.shape
    rows = [frames]
    if out["recon"].ndim == 5:  # pixels (CNN backbone), at the decoder's size
        rows.append(F.interpolate(out["recon"][0], size=(H, W), mode="nearest").clamp(0, 1))
    masks = F.interpolate(out["masks"][0], size=(H, W), mode="nearest")  # (T, S, H, W)
    for s in range(masks.shape[1]):
        rows.append(frames * masks[:, s, None] + (1 - masks[:, s, None]))
    grid = torch.cat([torch.cat(list(row), dim=-1) for row in rows], dim=-2)  # (3, rows*H, T*W)
    image = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(
        buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------
# Stage 3: slots of every frame
# ---------------------------------------------------------------------------------------
def slot_files(enc_dir, mode):
    """The slots of every frame extracted in ``mode`` and their description: (npy, json)."""
    return enc_dir / f"slots-{mode}.npy", enc_dir / f"slots-{mode}.json"


def moments_file(enc_dir, mode):
    """The mask moments (slots.mask_moments, unweighted) of every frame's slots in ``mode``."""
    return enc_dir / f"moments-{mode}.npy"


def slots_extracted(enc_dir, cfg):
    """Whether the slots ``cfg`` trains on are on disk, mask moments included when it uses them."""
    meta = slot_files(enc_dir, cfg.slot_mode)[1]
    return meta.is_file() and (not cfg.mask_moments or json.loads(meta.read_text()).get("moments", False))


def slot_dim_seen(cfg):
    """The size of a slot as the predictor sees it: the encoder's, plus the mask moments if used."""
    return cfg.slot_dim + (N_MOMENTS if cfg.mask_moments else 0)


def with_moments(slots, attn, cfg):
    """The encoder's slots (B, S, D) and attention (B, S, N) -> the predictor's slots: the
    slots, followed by ``cfg.mask_moments`` times their mask moments when that is set. What
    ``load_slots`` reads back for the same frames."""
    if not cfg.mask_moments:
        return slots
    return torch.cat([slots, cfg.mask_moments * mask_moments(attn.float()).to(slots.dtype)], dim=-1)


def weights_fingerprint(model):
    """A hash of ``model``'s parameters and buffers: which weights wrote a partial file."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def extract_slots(model, data, cfg, enc_dir, device, progress, batch_chains=64, resume=True,
                  save_every=60.0, precision="fp32"):
    """Write the frozen encoder's slots of every dataset frame to ``slot_files(enc_dir, mode)``.

    Format: float32 (N, S, D), row i the slots of dataset frame i; beside it
    ``moments_file``, float32 (N, S, 10), their masks' moments (slots.mask_moments,
    unweighted, for ``--mask-moments``); the json records the encoder config and the mode.
    Slot-initialisation noise is off, so extraction is deterministic. ``cfg.slot_mode``:
    - "frame": every frame encoded alone, from the learned initial slots, exactly as
      plan.py encodes its observations and goals (history 1). With query init, slot k is
      the same object in every frame.
    - "video": the encoder runs in video mode over the frames that the world model sees
      together: for each episode and each phase r < frameskip, the chain of frames r,
      r + frameskip, ... (chains are padded with their last frame to a common length; the
      encoder is causal in time, so padding changes no real frame's slots). A frame's slots
      then depend on the frames before it, which a planner given one frame does not have.

    An interrupted extraction goes on from its last save (every ``save_every`` seconds) when
    run again with ``resume``, if the partial file was written by the same weights, mode,
    dataset size and ``precision`` (see ``autocast``); otherwise it starts over.
    """
    model.eval()
    fs = cfg.frameskip
    if cfg.slot_mode == "frame":  # chains of one frame
        chains = [np.array([i]) for i in range(len(data.pixels))]
        # a GPU wants large calls; on a CPU 64 frames a call run faster than 512 (docs/speed.md)
        batch_chains = 512 if torch.device(device).type == "cuda" else 64
    else:
        chains = []
        for e in range(len(data.episode_starts) - 1):
            begin, end = data.episode_starts[e], data.episode_starts[e + 1]
            chains += [np.arange(begin + r, end, fs) for r in range(min(fs, end - begin))]
    out_path, meta_path = slot_files(enc_dir, cfg.slot_mode)
    moments_path = moments_file(enc_dir, cfg.slot_mode)
    tmp, tmp_moments = out_path.with_suffix(".npy.partial"), moments_path.with_suffix(".npy.partial")
    place_path = out_path.with_suffix(".partial.json")
    shape = (len(data.pixels), cfg.n_slots, cfg.slot_dim)
    # what a partial file must have been written with to be continued
    written_by = {"weights": weights_fingerprint(model), "mode": cfg.slot_mode,
                  "shape": list(shape), "precision": precision, "moments": True}
    first = 0
    if resume and tmp.is_file() and tmp_moments.is_file() and place_path.is_file():
        saved = json.loads(place_path.read_text())
        if saved["written_by"] == written_by:
            first = saved["next_chain"]
    if first:
        slots = np.lib.format.open_memmap(tmp, mode="r+")
        moments = np.lib.format.open_memmap(tmp_moments, mode="r+")
        print(f"[slots] resuming {tmp} at chain {first} of {len(chains)}")
    else:
        place_path.unlink(missing_ok=True)
        slots = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        moments = np.lib.format.open_memmap(tmp_moments, mode="w+", dtype=np.float32,
                                            shape=(*shape[:2], N_MOMENTS))
    bar = tqdm(total=len(data.pixels), initial=sum(len(c) for c in chains[:first]),
               desc=f"slots ({cfg.slot_mode})", unit="frame", disable=not progress)
    last_save = time.time()
    for start in range(first, len(chains), batch_chains):
        group = chains[start:start + batch_chains]
        length = max(len(c) for c in group)
        index = np.stack([np.concatenate([c, np.full(length - len(c), c[-1])]) for c in group])
        frames = torch.from_numpy(np.ascontiguousarray(data.pixels[index]))  # (B, T, H, W, 3)
        frames = frames.to(device).permute(0, 1, 4, 2, 3).float().div_(255)
        with autocast(device, precision):
            out = model.encode(resize_frames(frames, cfg.image_size), noise=False)
        z = out["slots"].float().cpu().numpy()
        m = mask_moments(out["attn"].float()).cpu().numpy()
        for b, chain in enumerate(group):
            slots[chain] = z[b, :len(chain)]
            moments[chain] = m[b, :len(chain)]
        bar.update(sum(len(c) for c in group))
        if time.time() - last_save > save_every:  # the rows are on disk before the count is
            slots.flush()
            moments.flush()
            atomic_write_json(place_path, {"written_by": written_by,
                                              "next_chain": start + len(group)})
            last_save = time.time()
    bar.close()
    slots.flush()
    moments.flush()
    del slots, moments
    os.replace(tmp, out_path)
    os.replace(tmp_moments, moments_path)
    place_path.unlink(missing_ok=True)
    atomic_write_json(meta_path, {"encoder": encoder_config(cfg), "mode": cfg.slot_mode,
                                  "shape": list(shape), "precision": precision, "moments": True})


def load_slots(enc_dir, cfg, n_frames):
    """The slots of ``cfg.slot_mode`` (N, S, D), after checking they belong to this encoder
    and dataset; with ``cfg.mask_moments`` each slot followed by that times its mask moments
    (N, S, D + 10), as ``with_moments`` computes them."""
    npy, meta_path = slot_files(enc_dir, cfg.slot_mode)
    if not meta_path.is_file():
        raise FileNotFoundError(f"no {cfg.slot_mode}-mode slots extracted in {enc_dir}")
    meta = json.loads(meta_path.read_text())
    expected = [n_frames, cfg.n_slots, cfg.slot_dim]
    # An encoder field added after the slots were written ran with its legacy or default value.
    known = values_before_fields_existed()
    written = {**{k: known[k] for k in ENCODER_FIELDS if k not in meta["encoder"]}, **meta["encoder"]}
    if written != encoder_config(cfg) or meta["shape"] != expected:
        raise ValueError(f"{npy} was extracted with another encoder or dataset")
    slots = np.load(npy, mmap_mode="r")
    if list(slots.shape) != expected:
        raise ValueError(f"{npy}: expected shape {expected}, found {slots.shape}")
    if not cfg.mask_moments:
        return np.ascontiguousarray(slots)
    if not meta.get("moments", False):
        raise FileNotFoundError(f"{npy} was extracted without mask moments: a train.py run with "
                                "--mask-moments extracts the slots again with them")
    moments = np.load(moments_file(enc_dir, cfg.slot_mode), mmap_mode="r")
    if moments.shape != (*slots.shape[:2], N_MOMENTS):
        raise ValueError(f"{moments_file(enc_dir, cfg.slot_mode)}: expected shape "
                         f"{(*slots.shape[:2], N_MOMENTS)}, found {moments.shape}")
    # a copy in memory, unlike the slots alone (read through the page cache): 1.01 M frames
    # of 4 slots take 2.2 GB
    return np.concatenate([slots, np.float32(cfg.mask_moments) * moments], axis=-1)


# ---------------------------------------------------------------------------------------
# Stage 4: the C-JEPA predictor
# ---------------------------------------------------------------------------------------
def build_predictor(cfg: TrainConfig) -> Predictor:
    """The predictor of ``cfg``; on collide there are no action or proprio nodes."""
    controlled = cfg.dataset == "pusht"
    return Predictor(n_slots=cfg.n_slots, slot_dim=slot_dim_seen(cfg),
                     action_dim=2 * cfg.frameskip if controlled else 0,
                     proprio_dim=4 if controlled else 0, dim=cfg.predictor_dim, depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head,
                     mlp_dim=cfg.mlp_dim, dropout=cfg.dropout,
                     max_frames=max(16, cfg.n_history + cfg.n_future), aux=cfg.aux,
                     causal=cfg.causal, n_history=cfg.n_history, proprio_space=cfg.proprio_space,
                     future_action=cfg.future_action, proprio_residual=cfg.proprio_residual,
                     slot_residual=cfg.slot_residual)


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
                         cfg.n_slots, cfg.masked, generator).to(slots.device)
        pred = model(slots, mask, actions, proprio, n_history, time_offset=drop)
        return cjepa_loss(pred, slots, mask, n_history)
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
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in special], "lr": cfg.lr},
        {"params": aux_params["action"], "lr": cfg.action_lr},
        {"params": aux_params["proprio"], "lr": cfg.proprio_lr},
    ])
    train_set = Windows(data, "train", cfg.n_history, cfg.n_future, cfg.frameskip, slots=slots)
    val_set = Windows(data, "val", cfg.n_history, cfg.n_future, cfg.frameskip, slots=slots)
    total = cfg.epochs * (len(train_set) // cfg.batch_size)
    if ctx.main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"[predictor] {n_params / 1e6:.2f} M parameters, {len(train_set)} training windows, "
              f"{total} steps")
    fit("predictor", model, optimizer, lambda step: 1.0, predictor_loss(cfg), train_set, val_set,
        total, cfg.batch_size, cfg.seed, ckpt_path, config, resume, cfg, ctx, out / "log.jsonl",
        extendable=PREDICTOR_EXTENDABLE)


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------
def check_config(cfg: TrainConfig):
    if cfg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(DATASETS)}")
    if cfg.mask_kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {cfg.mask_kind!r}")
    if not 0 <= cfg.masked <= cfg.n_slots:
        raise ValueError(f"--masked must be between 0 and n_slots = {cfg.n_slots}, got {cfg.masked}")
    if cfg.mask_kind == "none" and cfg.masked:
        raise ValueError("--mask-kind none hides no slot: use --masked 0")
    if cfg.slot_mode not in ("frame", "video"):
        raise ValueError(f"slot mode must be frame or video, got {cfg.slot_mode!r}")
    if cfg.slot_mode == "frame" and cfg.slot_init != "query":
        raise ValueError("--slot-mode frame needs --slot-init query: with noisy initial slots, slot k "
                         "of one frame is not the same object as slot k of the next; use --slot-mode video")
    if not 0 <= cfg.encoder_plain_steps <= cfg.encoder_steps:
        raise ValueError(f"--encoder-plain-steps must be between 0 and --encoder-steps = {cfg.encoder_steps}, "
                         f"got {cfg.encoder_plain_steps}")
    if cfg.encoder_plain_steps and not (cfg.backbone == "cnn" and cfg.recon_weight):
        raise ValueError("--encoder-plain-steps switches the CNN's weighted pixel loss to plain MSE: it needs "
                         "--backbone cnn and --recon-weight > 0")
    if cfg.encoder_plain_lr < 0 or (cfg.encoder_plain_lr and not cfg.encoder_plain_steps):
        raise ValueError(f"--encoder-plain-lr sets the learning rate of the --encoder-plain-steps: it needs "
                         f"a value >= 0 and --encoder-plain-steps > 0, got {cfg.encoder_plain_lr} and "
                         f"{cfg.encoder_plain_steps}")
    if cfg.position_weight < 0 or (cfg.position_weight and not (cfg.backbone == "cnn" and cfg.decoder == "attention")):
        raise ValueError(f"--position-weight (>= 0, got {cfg.position_weight}) charges slot attention's masks "
                         f"for their spread: it needs --backbone cnn --decoder attention")
    if cfg.mask_moments < 0:
        raise ValueError(f"--mask-moments weighs each slot's mask moments: it must be >= 0, got {cfg.mask_moments}")
    for name, allowed in (("aux", ("nodes", "concat")), ("backbone", ("cnn", "dinov2")),
                          ("future_action", ("query", "visible")), ("proprio_space", ("embedding", "raw")),
                          ("encoder_data", ("all_moving", "predictor"))):
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"--{name.replace('_', '-')} must be one of {'|'.join(allowed)}, "
                             f"got {getattr(cfg, name)!r}")
    if cfg.encoder_data == "all_moving" and cfg.dataset != "pusht":
        raise ValueError("--encoder-data all_moving is a Push-T collection mode: use --encoder-data predictor "
                         f"on {cfg.dataset}")


def run(cfg: TrainConfig, out, redo=(), resume=False, device="auto", workers=0, progress=True,
        root=".", until="predictor", precision="fp32"):
    """Run every stage up to ``until`` that is missing (or named in ``redo``); return the run
    folder. ``precision`` (fp32 | bf16, see ``autocast``) is how this invocation computes; it
    is recorded in config.json, the checkpoints and the slots' json, not part of the config."""
    check_config(cfg)
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, got {until!r}")
    check_precision(precision)
    ctx = setup(device, progress, precision)
    try:
        _run_stages(cfg, Path(out), set(redo), resume, workers, Path(root), until, ctx)
    finally:
        if ctx.world > 1:
            dist.destroy_process_group()
    return Path(out)


def _run_stages(cfg, out, redo, resume, workers, root, until, ctx):
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
                make_dataset(made_of, folder, workers=workers, progress=ctx.progress)
    ctx.barrier()
    data = open_dataset(cfg, pred_dir)
    if until == "data":
        return

    enc_data = data if enc_data_dir == pred_dir else open_dataset(cfg, enc_data_dir, enc_data_cfg)
    encoder = train_encoder(cfg, enc_data, enc_dir, "encoder" in redo, resume, ctx)
    # scored on the predictor's validation episodes: the frames its slots are made of
    if ctx.main and ("encoder" in redo or not (enc_dir / "metrics.json").is_file()):
        metrics = evaluate_encoder(encoder, data, cfg, ctx.device, enc_dir / "encoder.png")
        atomic_write_json(enc_dir / "metrics.json", metrics)
        print("[encoder] validation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if until == "encoder":
        return
    if ctx.main and ({"encoder", "slots"} & redo or not slots_extracted(enc_dir, cfg)):
        precision = ctx.precision
        meta = slot_files(enc_dir, cfg.slot_mode)[1]
        if not {"encoder", "slots"} & redo and meta.is_file():
            # slots without moments, extracted again for them: in the precision they were
            # made in, so the runs that trained on them keep the same slots
            precision = json.loads(meta.read_text()).get("precision", "fp32")
        extract_slots(encoder, data, cfg, enc_dir, ctx.device, ctx.progress,
                      resume=not {"encoder", "slots"} & redo, precision=precision)
    ctx.barrier()
    slots = load_slots(enc_dir, cfg, len(data.pixels))
    if until == "slots":
        return
    train_predictor(cfg, data, slots, out, "predictor" in redo, resume, ctx)


def describe_method(cfg: TrainConfig) -> str:
    """One line: the method ``cfg`` trains, naming every field that differs from the paper's."""
    ours = [f"{k}={getattr(cfg, k)}" for k in OURS if getattr(cfg, k) != PAPER_METHOD[k]]
    ablations = [f"{k}={getattr(cfg, k)}" for k, paper in (("mask_kind", "object"), ("aux", "nodes"),
                                                             ("causal", False)) if getattr(cfg, k) != paper]
    name = "C-JEPA" if cfg.masked else "OC-JEPA (no masking)"
    line = f"[method] {name}, M = {cfg.masked}"
    line += f"; the paper's ablations: {', '.join(ablations)}" if ablations else ""
    line += f"; our additions on: {', '.join(ours)}" if ours else "; the paper's method, none of our additions"
    return line + " (--print-config shows every field)"


def main(argv=None):
    parser = build_parser(TrainConfig, PRESETS, "Train C-JEPA end to end. Presets are per "
                          "dataset: --dataset collide --preset cpu is the collide world's.")
    parser.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<preset>-m<M>)")
    parser.add_argument("--redo", nargs="+", choices=STAGES, default=(), help="stages to rerun")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted stage")
    parser.add_argument("--until", choices=STAGES, default="predictor", help="stop after this stage")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: autocast forward passes (2.3x faster on a CPU with AMX)")
    parser.add_argument("--workers", type=int, default=0, help="data collection processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    args = parser.parse_args(argv)
    if args.dataset is not None and args.dataset not in DATASETS:
        parser.error(f"unknown --dataset {args.dataset!r}; available: {', '.join(DATASETS)}")
    cfg = config_from_args(TrainConfig, DATASETS[args.dataset or "pusht"], args, default_preset="cpu")
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return
    out = args.out or f"runs/{cfg.dataset}-{args.preset or 'cpu'}-m{cfg.masked}"
    print(describe_method(cfg))
    start = time.time()
    try:
        run(cfg, out, redo=tuple(args.redo), resume=args.resume, device=args.device,
            workers=args.workers, progress=not args.no_progress, until=args.until,
            precision=args.precision)
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    print(f"done in {time.time() - start:.0f} s: {out}")


if __name__ == "__main__":
    main()
