"""Stages 2 and 3 of the pipeline: train the frozen object-centric encoder, score it, and
extract the slots of every frame (paper: the encoder is trained first and frozen; FACTS
sections 6 and 9, App. D.1).

The encoder (``slots.SlotEncoder``) trains on short frame clips with its own reconstruction
loss (and, on DINOv2, VideoSAUR's temporal-similarity loss), a warm-up and a cosine or
exponential schedule; on Push-T its data is the all-moving variant by default
(``config.encoder_data_config``). It is scored by FG-ARI and mBO on the predictor's
validation clips. Extraction writes float32 (N, S, D) slots, row i those of dataset frame i,
encoding each frame alone (as the planner does) or in video mode; it saves its place and
goes on from there when interrupted.
"""

import hashlib
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from einops import rearrange

from common import autocast, batch_indices, collate, config_to_dict, Stage, step_generator, validate
from dinov2 import normalize_imagenet
from files import atomic_write_json, atomic_write_png, check_free_space, read_json
from config import (build_encoder, data_config, data_dir, encoder_config, load_checkpoint,
                    slot_dim_seen, tokens_per_frame)
from data import FrameClips, frames_to_tensor
from masks import N_MOMENTS, fg_ari, mask_moments, masks_to_segmentation, mbo


# ---------------------------------------------------------------------------------------
# Stage 2: the slot encoder
# ---------------------------------------------------------------------------------------
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
    """The encoder's loss at a step (0-based): the model's own, or plain pixel MSE in the last
    ``cfg.encoder_plain_steps`` steps. In training (the model in train mode) a clip is mirrored
    left to right with probability ``cfg.encoder_flip``, drawn from the step's generator."""
    def loss_fn(model, batch, generator, step):
        plain = step >= cfg.encoder_steps - cfg.encoder_plain_steps
        frames = resize_frames(batch["frames"], cfg.image_size)
        if model.training and cfg.encoder_flip:
            flip = (torch.rand(len(frames), generator=generator) < cfg.encoder_flip).to(frames.device)
            frames = torch.where(flip[:, None, None, None, None], frames.flip(-1), frames)
        out = model(frames, generator=generator, recon_weight=0.0 if plain else None)
        return out["loss"], {k: out[k].detach() for k in ("mse", "place", "similarity") if k in out}
    return loss_fn


def encoder_lr_factor(cfg):
    """The encoder's learning rate at a step (0-based) over ``cfg.encoder_lr``: linear warmup,
    then cosine decay to 10 % or (``encoder_schedule`` exponential, VideoSAUR's) 0.5 ** the
    share of the steps after the warmup; the plain-MSE steps at ``cfg.encoder_plain_lr`` when set."""
    def factor(step):
        if cfg.encoder_plain_lr and step >= cfg.encoder_steps - cfg.encoder_plain_steps:
            return cfg.encoder_plain_lr / cfg.encoder_lr
        if step < cfg.encoder_warmup:
            return (step + 1) / cfg.encoder_warmup
        progress = (step - cfg.encoder_warmup) / max(1, cfg.encoder_steps - cfg.encoder_warmup)
        if cfg.encoder_schedule == "exponential":
            return 0.5 ** progress
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))
    return factor


def train_encoder(cfg, data, enc_dir, redo, resume, ctx):
    """Stage 2: train the slot encoder on frame clips of ``data`` into ``enc_dir``, unless a
    finished one with this config is there. Returns it in eval mode."""
    ckpt_path = enc_dir / "encoder.pt"
    config = encoder_config(cfg)
    if ckpt_path.is_file() and not redo:
        ckpt = load_checkpoint(ckpt_path, config)
        if ckpt["done"]:
            model = build_encoder(cfg)
            model.load_state_dict(ckpt["model"])
            return model.to(ctx.device).eval()
    elif ckpt_path.is_file() and redo and ctx.main:
        # what the old encoder made goes with it: an interrupted redo must not leave slots,
        # patches or scores of the old encoder beside the new, unfinished one (the tokens of
        # every dataset, each in its folder: ``tokens_dir``)
        for made in (ckpt_path, enc_dir / "metrics.json", *enc_dir.glob("*/*.json")):
            made.unlink(missing_ok=True)
    ctx.barrier()
    torch.manual_seed(cfg.encoder_seed)
    model = build_encoder(cfg).to(ctx.device)
    if cfg.backbone == "cnn":
        mean, median = colour_stats(data, "train")
        model.pixel_mean.copy_(torch.from_numpy(mean))
        model.background.copy_(torch.from_numpy(median))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.encoder_lr)
    stride = cfg.encoder_stride or cfg.frameskip
    train_set = FrameClips(data, "train", cfg.encoder_clip_len, stride)
    val_set = FrameClips(data, "val", cfg.encoder_clip_len, stride)
    loss_fn, lr_factor = encoder_loss(cfg), encoder_lr_factor(cfg)

    stage = Stage("encoder", ckpt_path, enc_dir / "log.jsonl", config, cfg.encoder_steps, cfg.val_every,
                  cfg.ckpt_every, ctx)
    step = stage.start(model, optimizer, load_checkpoint(ckpt_path, config) if resume and ckpt_path.is_file()
                       else None)
    net = stage.distributed(model)
    while step < cfg.encoder_steps:
        for group in optimizer.param_groups:
            group["lr"] = cfg.encoder_lr * lr_factor(step)
        batch = collate(train_set, batch_indices(len(train_set), cfg.encoder_batch, step, cfg.encoder_seed, ctx),
                        ctx.device)
        with autocast(ctx.device, ctx.precision):
            loss, terms = loss_fn(net, batch, step_generator(cfg.encoder_seed, step, ctx.rank), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.encoder_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.encoder_clip)
        optimizer.step()
        step += 1
        stage.end_step(step, loss, terms, model, optimizer, lambda: validate(
            model, loss_fn, val_set, cfg.val_batches, cfg.encoder_batch, ctx, step - 1))
    stage.close()
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
    atomic_write_png(path, Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST))


# ---------------------------------------------------------------------------------------
# Stage 3: slots (or patches) of every frame
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def patch_features(model, frames, grid):
    """The patch tokens of the DINO-WM baseline (App. H): frames (B, T, 3, H, W) in [0, 1] ->
    (B, T, grid * grid, C), the frozen encoder's own feature map average-pooled to a grid x grid
    grid of patches, row-major. The CNN's is its last convolution's C = cnn_channels map (before
    the pixel branch, the position embedding and the MLP that feed slot attention); DINOv2's is
    its 14 x 14 map of 384-d patches (grid 14 keeps it whole, as DINO-WM plans on it)."""
    model._check_frames(frames)
    B = frames.shape[0]
    flat = frames.flatten(0, 1)
    if model.backbone == "cnn":
        centred = (flat - model.pixel_mean[:, None, None]).contiguous(memory_format=torch.channels_last)
        fmap = model.cnn.convs(centred)  # (B*T, C, h, w)
    else:
        tokens = model.dinov2.forward_features(normalize_imagenet(flat))  # (B*T, N, 384)
        fmap = rearrange(tokens, "n (h w) c -> n c h w", h=model.grid_size)
    if fmap.shape[-1] < grid:
        raise ValueError(f"a {grid} x {grid} patch grid is finer than the encoder's {fmap.shape[-1]} x "
                         f"{fmap.shape[-1]} feature map")
    pooled = F.adaptive_avg_pool2d(fmap.float(), grid)  # (B*T, C, grid, grid)
    return rearrange(pooled, "(b t) c h w -> b t (h w) c", b=B)


def pixels_to_patches(model, pixels, cfg, device, precision="fp32"):
    """uint8 frames (..., H, W, 3) -> their patch tokens (..., G * G, C) on ``device``, each
    frame resized to the run's image size and encoded on its own: what extraction stores, what
    the planner and ``LivePatches`` compute."""
    lead = pixels.shape[:-3]
    frames = frames_to_tensor(pixels, device)
    frames = frames.reshape(-1, 1, *frames.shape[-3:])  # (N, 1, 3, H, W): one frame a clip
    with autocast(device, precision):
        tokens = patch_features(model, resize_frames(frames, cfg.image_size), cfg.patch_grid)
    return tokens[:, 0].float().reshape(*lead, *tokens.shape[2:])


class LivePatches:
    """Every frame's patch tokens, encoded when a batch asks for them instead of read from
    disk (``train.py --live-patches``): rows taken with an integer array, as from the extracted
    (N, G * G, C) array, come back as a tensor on ``device``. For patches the disk cannot hold:
    the ``paper`` preset's 196 x 384 a frame are 90 GB for 2,000 episodes."""

    def __init__(self, model, pixels, cfg, device, precision="fp32"):
        self.model, self.pixels, self.cfg = model.eval(), pixels, cfg
        self.device, self.precision = device, precision
        self.shape = (len(pixels), tokens_per_frame(cfg), slot_dim_seen(cfg))

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        return pixels_to_patches(self.model, self.pixels[np.asarray(index)], self.cfg, self.device,
                                 self.precision)


def tokens_dir(enc_dir, cfg):
    """Where the encoder's tokens of ``cfg``'s predictor data go: a folder inside the encoder's,
    named as the dataset is. One encoder (trained on the all-moving data) serves the predictor
    data of every policy, and each dataset gets its own slots."""
    return enc_dir / data_dir(".", data_config(cfg)).name


def token_files(enc_dir, cfg):
    """The tokens ``cfg``'s predictor reads, and their description (npy, json): the slots of
    its slot mode, or its patch grid's patches."""
    name = f"patches-{cfg.patch_grid}" if cfg.tokens == "patches" else f"slots-{cfg.slot_mode}"
    return tokens_dir(enc_dir, cfg) / f"{name}.npy", tokens_dir(enc_dir, cfg) / f"{name}.json"


def moments_file(enc_dir, cfg):
    """The mask moments (masks.mask_moments, unweighted) of the slots of ``token_files``."""
    return tokens_dir(enc_dir, cfg) / f"moments-{cfg.slot_mode}.npy"


def slots_extracted(enc_dir, cfg):
    """Whether the slots (or patches) ``cfg`` trains on are on disk, mask moments included when
    it uses them."""
    meta = token_files(enc_dir, cfg)[1]
    return meta.is_file() and (not cfg.mask_moments or read_json(meta).get("moments", False))


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
    """Write the frozen encoder's slots of every frame of ``data`` (``cfg``'s predictor data) to
    ``token_files(enc_dir, cfg)``.

    Format: float32 (N, S, D), row i the slots of dataset frame i; beside it
    ``moments_file``, float32 (N, S, 10), their masks' moments (masks.mask_moments,
    unweighted, for ``--mask-moments``); the json records the encoder config, the dataset's
    config and the mode.
    Slot-initialisation noise is off, so extraction is deterministic. ``cfg.slot_mode``:
    - "frame": every frame encoded alone, from the learned initial slots, exactly as
      plan.py encodes its observations and goals (history 1). With query init, slot k is
      the same object in every frame.
    - "video" (the default, the paper's pipeline): the encoder runs in video mode over the
      frames that the world model sees together: for each episode and each phase r <
      frameskip, the chain of frames r, r + frameskip, ... (chains are padded with their last
      frame to a common length; the encoder is causal in time, so padding changes no real
      frame's slots). A frame's slots then depend on the frames before it, which a planner
      given one frame does not have; the official pipeline plans so as well (docs/faithful.md).

    With ``cfg.tokens`` "patches" it writes the frame's ``patch_features`` (N, G * G, C) to
    ``token_files`` instead, each frame alone, whatever the slot mode, and without moments.

    An interrupted extraction goes on from its last save (every ``save_every`` seconds) when
    run again with ``resume``, if the partial file was written by the same weights, mode,
    dataset size and ``precision`` (see ``autocast``); otherwise it starts over.
    """
    model.eval()
    patches = cfg.tokens == "patches"
    fs = cfg.frameskip
    mode = "frame" if patches else cfg.slot_mode
    if mode == "frame":  # chains of one frame
        chains = [np.array([i]) for i in range(len(data.pixels))]
        # a GPU wants large calls; on a CPU 64 frames a call run faster than 512 (docs/speed.md)
        batch_chains = 512 if torch.device(device).type == "cuda" else 64
    else:
        chains = []
        for e in range(len(data.episode_starts) - 1):
            begin, end = data.episode_starts[e], data.episode_starts[e + 1]
            chains += [np.arange(begin + r, end, fs) for r in range(min(fs, end - begin))]
    out_path, meta_path = token_files(enc_dir, cfg)
    moments_path = moments_file(enc_dir, cfg)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp, tmp_moments = out_path.with_suffix(".npy.partial"), moments_path.with_suffix(".npy.partial")
    place_path = out_path.with_suffix(".partial.json")
    shape = (len(data.pixels), *((tokens_per_frame(cfg), slot_dim_seen(cfg)) if patches
                                 else (cfg.n_slots, cfg.slot_dim)))
    # what a partial file must have been written with to be continued
    written_by = {"weights": weights_fingerprint(model), "mode": mode,
                  "shape": list(shape), "precision": precision, "moments": not patches}
    first = 0
    if resume and tmp.is_file() and (patches or tmp_moments.is_file()) and place_path.is_file():
        saved = read_json(place_path)
        if saved["written_by"] == written_by:
            first = saved["next_chain"]
    moments = None
    if first:
        slots = np.lib.format.open_memmap(tmp, mode="r+")
        if not patches:
            moments = np.lib.format.open_memmap(tmp_moments, mode="r+")
        print(f"[slots] resuming {tmp} at chain {first} of {len(chains)}")
    else:
        place_path.unlink(missing_ok=True)
        # the space this extraction's own unfinished files hold is free to it (the moments'
        # partial file of a slot extraction beside a patch one is not its own)
        for partial in (tmp,) if patches else (tmp, tmp_moments):
            partial.unlink(missing_ok=True)
        need = 4 * int(np.prod(shape)) + (0 if patches else 4 * shape[0] * shape[1] * N_MOMENTS)
        what = (f"the {'patches' if patches else 'slots'} of {shape[0]:,} frames ({shape[1]} x {shape[2]} "
                f"float32 numbers each{'' if patches else ', and their mask moments'})")
        advice = ("free some, train with --live-patches, or use a coarser --patch-grid" if patches
                  else "free some, or use fewer --episodes")
        check_free_space(out_path.parent, need, what, advice)
        slots = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        if not patches:
            moments = np.lib.format.open_memmap(tmp_moments, mode="w+", dtype=np.float32,
                                                shape=(*shape[:2], N_MOMENTS))
    what = f"patches ({cfg.patch_grid} x {cfg.patch_grid})" if patches else f"slots ({cfg.slot_mode})"
    bar = tqdm(total=len(data.pixels), initial=sum(len(c) for c in chains[:first]),
               desc=what, unit="frame", disable=not progress)
    last_save = time.time()
    for start in range(first, len(chains), batch_chains):
        group = chains[start:start + batch_chains]
        length = max(len(c) for c in group)
        index = np.stack([np.concatenate([c, np.full(length - len(c), c[-1])]) for c in group])
        if patches:
            z = pixels_to_patches(model, data.pixels[index], cfg, device, precision).cpu().numpy()
        else:
            frames = frames_to_tensor(data.pixels[index], device)  # (B, T, 3, H, W)
            with autocast(device, precision):
                out = model.encode(resize_frames(frames, cfg.image_size), noise=False)
                z = out["slots"].float().cpu().numpy()
                m = mask_moments(out["attn"].float()).cpu().numpy()
        for b, chain in enumerate(group):
            slots[chain] = z[b, :len(chain)]
            if moments is not None:
                moments[chain] = m[b, :len(chain)]
        bar.update(sum(len(c) for c in group))
        if time.time() - last_save > save_every:  # the rows are on disk before the count is
            for array in (slots, moments):
                if array is not None:
                    array.flush()
            atomic_write_json(place_path, {"written_by": written_by,
                                              "next_chain": start + len(group)})
            last_save = time.time()
    bar.close()
    for array in (slots, moments):
        if array is not None:
            array.flush()
    del slots, moments
    os.replace(tmp, out_path)
    if not patches:
        os.replace(tmp_moments, moments_path)
    place_path.unlink(missing_ok=True)
    atomic_write_json(meta_path, {"encoder": encoder_config(cfg), "data": config_to_dict(data_config(cfg)),
                                  "mode": mode,
                                  "shape": list(shape), "precision": precision, "moments": not patches})


def load_slots(enc_dir, cfg, n_frames):
    """The slots of ``cfg.slot_mode`` (N, S, D), after checking they belong to this encoder
    and dataset; with ``cfg.mask_moments`` each slot followed by that times its mask moments
    (N, S, D + 10), as ``with_moments`` computes them. With ``cfg.tokens`` "patches": the
    patches of its grid (N, G * G, C)."""
    npy, meta_path = token_files(enc_dir, cfg)
    if not meta_path.is_file():
        what = "patches" if cfg.tokens == "patches" else f"{cfg.slot_mode}-mode slots"
        raise FileNotFoundError(f"no {what} extracted in {enc_dir}")
    meta = read_json(meta_path)
    expected = [n_frames, cfg.n_slots, cfg.slot_dim]
    if cfg.tokens == "patches":
        expected = [n_frames, tokens_per_frame(cfg), slot_dim_seen(cfg)]
    if (meta["encoder"] != encoder_config(cfg) or meta.get("data") != config_to_dict(data_config(cfg))
            or meta["shape"] != expected):
        raise ValueError(f"{npy} was extracted with another encoder or dataset")
    slots = np.load(npy, mmap_mode="r")
    if list(slots.shape) != expected:
        raise ValueError(f"{npy}: expected shape {expected}, found {slots.shape}")
    if not cfg.mask_moments:
        return np.ascontiguousarray(slots)
    if not meta.get("moments", False):
        raise FileNotFoundError(f"{npy} was extracted without mask moments: a train.py run with "
                                "--mask-moments extracts the slots again with them")
    moments = np.load(moments_file(enc_dir, cfg), mmap_mode="r")
    if moments.shape != (*slots.shape[:2], N_MOMENTS):
        raise ValueError(f"{moments_file(enc_dir, cfg)}: expected shape "
                         f"{(*slots.shape[:2], N_MOMENTS)}, found {moments.shape}")
    # a copy in memory, unlike the slots alone (read through the page cache): 1.01 M frames
    # of 4 slots take 2.2 GB
    return np.concatenate([slots, np.float32(cfg.mask_moments) * moments], axis=-1)
