"""Video question answering over slots: a light ALOE-style head (paper, VQA experiments; FACTS section 7).

    python train.py --dataset collide --masked 4          # encoder, slots and predictor
    python vqa.py --run runs/collide-cpu-m4 --seed 0      # -> runs/collide-cpu-m4/vqa-seed0.json
                                                          #    (+ vqa-seed0.pt, --resume continues it)
    python vqa.py --data DATA_DIR --slots SLOTS.npy --out FILE.json   # slots made elsewhere

The paper answers CLEVRER questions from the frozen encoder's slots of the observed frames,
rolled forward by the trained C-JEPA predictor over the held-out future (no masking at rollout).
Under the official protocol (the default) only predictive questions read predicted slots, the
others observed ones; under ``--protocol ours`` every question reads every frame. The answering
model, one transformer over [CLS] + frames x slots + question words (+ choice words), and the
examples it reads are in ``vqa_model.py``; this file rolls the slots out, trains and scores.
Scores follow CLEVRER's: per option (share of choices right) and per question (every choice of
the question right); ``score`` documents how the pooled "all" numbers are formed.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from collide_data import load_collide
from common import (PRECISIONS, autocast, build_parser, check_precision, config_from_args,
                    config_to_dict, save_checkpoint)
from files import atomic_write_json, check_results_path, error_line
from config import build_predictor, load_checkpoint, open_dataset, open_run
from encoder import load_slots
from predictor import rollout
from vqa_model import VQAModel, check_videos, collate, format_table, question_examples, score



# ---------------------------------------------------------------------------------------
# Slots of a whole video: observed frames, then the predictor's rollout
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def video_slots(observed, predictor, n_future, history, batch_size=64, block=1):
    """Append ``n_future`` predicted frames to the observed slots of every video.

    observed: (V, T_obs, S, D) slots of the frozen encoder; predictor: a trained
    ``predictor.Predictor`` without actions or proprio (CLEVRER and collide have neither);
    block: frames predicted per call (``rollout``), the run's n_future, as it was trained.
    Videos go through ``rollout`` ``batch_size`` at a time, with the predictor in eval mode
    (its mode is restored afterwards) and on its own device.
    Returns (V, T_obs + n_future, S, D) on observed's device; the first T_obs frames are
    ``observed`` itself.
    """
    if observed.ndim != 4:
        raise ValueError(f"expected observed slots of shape (V, T_obs, S, D), got {tuple(observed.shape)}")
    device = next(predictor.parameters()).device
    was_training = predictor.training
    predictor.eval()
    try:
        future = [rollout(predictor, chunk.to(device), None, None, n_future, history, block)["slots"]
                  for chunk in observed.split(batch_size)]  # each (chunk, K, S, D)
    finally:
        predictor.train(was_training)
    return torch.cat([observed, torch.cat(future).to(observed.device)], dim=1)  # (V, T_obs + K, S, D)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------
def lr_factor(schedule, warmup, steps, floor=0.01):
    """The learning rate at step s (1-based) over the base rate: constant, or (``schedule``
    "cosine", App. F's) a linear warm-up over the first ``warmup`` share of the steps, then a
    cosine decay, both between ``floor`` and 1 (the official code's floor: 1 % of the rate)."""
    if schedule == "constant":
        return lambda s: 1.0
    warm = round(warmup * steps)

    def factor(s):
        shape = s / warm if s <= warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        return floor + (1 - floor) * shape
    return factor


def train_vqa(model, slots_per_video, train_examples, val_examples, steps, batch_size, lr, generator,
              device, progress=True, weight_decay=0.01, val_every=0, checkpoint=None, config=None,
              precision="fp32", observed=None, schedule="constant", warmup=0.0, grad_clip=1.0, sample=0):
    """Train both heads with AdamW; returns (model, log).

    slots_per_video: (V, T, S, D), indexed by the examples' video; train / val examples:
    ``build_examples`` output (val may be None). Every step draws ``batch_size`` descriptive and
    ``batch_size`` (question, choice) examples with replacement from ``generator`` (a CPU
    torch.Generator) and minimises cross-entropy (descriptive) + BCE with logits (choice), one
    forward pass per kind; a kind with no examples contributes no term. Dropout draws from the
    global RNG reseeded from ``generator`` inside a fork, so a run is fixed by the generator and
    the caller's RNG state is untouched. log: one {"step", "loss", "lr", "descriptive_loss",
    "choice_loss"} per step, plus {"step", "val": score(...)} every ``val_every`` steps
    (0 = never) and after the last step, when val examples are given.

    precision: "fp32", or "bf16" to autocast the forward passes (``train.autocast``); the
    validation scores use it too. observed, sample: how a question reads the frames (``collate``;
    None and 0: every frame); the sampled starts of training draw from ``generator``.

    checkpoint: a file the whole state (model, optimizer, RNGs, log) is written to every
    ``val_every`` steps and after the last, tagged with ``config`` (a dict). If the file exists,
    training resumes from it, which must carry the same ``config`` but for "steps"; a resumed
    run ends with the weights and log of an uninterrupted one. A state with fewer steps than
    ``steps``, finished or not, is trained on to ``steps`` (the learning rate is constant, so
    nothing else depends on the total; under a cosine ``schedule`` the steps must be the same);
    when its last step was a multiple of ``val_every`` this too ends as an uninterrupted run of
    ``steps`` would. The rate follows ``lr_factor(schedule, warmup, steps)``; gradients are
    clipped to norm ``grad_clip`` (0: not clipped).
    """
    check_videos(slots_per_video, train_examples)
    check_precision(precision)
    pools = {kind: train_examples[kind] for kind in ("descriptive", "choice") if train_examples[kind]}
    if not pools:
        raise ValueError("expected training examples, got no descriptive and no choice examples")
    if any(e.answer < 0 for e in train_examples["descriptive"]):
        raise ValueError("training examples include answers outside the answer vocabulary (answer "
                         "-1); build them with unknown_answers='raise' or 'skip'")
    device = torch.device(device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    log = []
    fork = []  # the devices whose RNG dropout uses
    if device.type == "cuda":
        fork = [torch.cuda.current_device() if device.index is None else device.index]
    start = 0
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        if checkpoint is not None and Path(checkpoint).is_file():
            ckpt = load_checkpoint(checkpoint, config, may_differ=("steps",) if schedule == "constant" else ())
            if ckpt["step"] > steps:
                raise ValueError(f"{checkpoint} has trained {ckpt['step']} steps, more than the "
                                 f"{steps} asked for: pass --steps {ckpt['step']} or more")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["rng"])
            if fork:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], fork[0])
            start, log = ckpt["step"], ckpt["log"]
        factor = lr_factor(schedule, warmup, steps)
        for step in tqdm(range(start + 1, steps + 1), desc="vqa", initial=start, total=steps,
                         disable=not progress, dynamic_ncols=True):
            for group in optimizer.param_groups:
                group["lr"] = lr * factor(step)
            terms = {}
            for kind, pool in pools.items():
                picks = torch.randint(len(pool), (batch_size,), generator=generator)
                inputs, target = collate([pool[i] for i in picks], slots_per_video, device, observed,
                                         sample, generator)
                with autocast(device, precision):
                    out = model(**inputs)
                if kind == "descriptive":
                    terms[kind] = F.cross_entropy(out["answer_logits"].float(), target)
                else:
                    terms[kind] = F.binary_cross_entropy_with_logits(out["choice_logit"].float(), target)
            loss = sum(terms.values())
            if not torch.isfinite(loss):  # before this step touches the weights or the checkpoint
                raise FloatingPointError(f"[vqa] the loss is {loss.item()} at step {step}: training "
                                         "diverged; the last checkpoint is kept: lower --lr and --resume")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            log.append({"step": step, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"],
                        **{f"{kind}_loss": term.item() for kind, term in terms.items()}})
            at_val = step == steps or (val_every and step % val_every == 0)
            if val_examples is not None and at_val:
                log.append({"step": step, "val": evaluate(model, slots_per_video, val_examples,
                                                          batch_size, device, precision, observed, sample)})
                model.train()
            if checkpoint is not None and at_val:
                extra = {"cuda_rng": torch.cuda.get_rng_state(fork[0])} if fork else {}
                save_checkpoint(checkpoint, model, optimizer, config, step, step == steps,
                                generator=generator.get_state(), log=log, **extra)
    return model, log


# ---------------------------------------------------------------------------------------
# Prediction and its scores
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model, slots_per_video, examples, batch_size, device, precision="fp32", observed=None, sample=0):
    """{"descriptive": [answer id], "choice": [0 / 1]}, in the order of ``examples``; eval mode,
    forward passes in ``precision``, frames read as ``observed`` and ``sample`` say (``collate``:
    sampled starts are drawn at scoring too, as ALOE's are, but fixed per question, so a score
    repeats and every head is scored on the same frames)."""
    check_videos(slots_per_video, examples)
    check_precision(precision)
    model.to(device).eval()
    predictions = {"descriptive": [], "choice": []}
    for kind, pool in examples.items():
        for start in range(0, len(pool), batch_size):
            inputs, _ = collate(pool[start:start + batch_size], slots_per_video, device, observed, sample)
            with autocast(device, precision):
                out = model(**inputs)
            guess = out["answer_logits"].argmax(-1) if kind == "descriptive" else out["choice_logit"] > 0
            predictions[kind] += guess.long().tolist()
    return predictions


def evaluate(model, slots_per_video, examples, batch_size, device, precision="fp32", observed=None, sample=0):
    """``score`` of the model's predictions on ``examples``."""
    return score(predict(model, slots_per_video, examples, batch_size, device, precision, observed, sample),
                 examples)


# ---------------------------------------------------------------------------------------
# Config and command line
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VQAConfig:
    """The answering model and its training; defaults are the light CPU head (FACTS section 7)."""
    dim: int = 128
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1
    max_words: int = 64          # longest question or choice, in words
    frame_stride: int = 2        # keep every n-th frame, counted back from the last (``keep_frames``)
    every_offset: bool = field(default=False, metadata={
        "help": "--run: roll out each offset of the run's frameskip from its own observed frames, in whole "
                "blocks, and interleave them: slots for every video frame (the official rollout); off: the "
                "chain of frames 0, fs, 2 fs, ... alone"})
    sample_frames: int = field(default=0, metadata={
        "help": "ALOE's frames: a question reads this many of its window, window // n apart, from a random "
                "start (training: one per example; scoring: one per question, fixed) (0: all of them)"})
    steps: int = 4000            # why this many: docs/collide.md (the multiple-choice loss starts late)
    epochs: float = field(default=0, metadata={
        "help": "train this many epochs instead of --steps (App. F: 400), an epoch being as many examples as "
                "the training set holds: (descriptive questions + choice pairs) / (2 x --batch-size) steps"})
    batch_size: int = 64         # per kind: descriptive and (question, choice) examples each
    lr: float = 3e-4
    weight_decay: float = 0.01
    schedule: str = field(default="constant", metadata={
        "choices": ("constant", "cosine"), "help": "cosine: a linear warm-up over --warmup of the steps, "
                                                   "then cosine decay to 1 %% of --lr (App. F)"})
    warmup: float = 0.0          # share of the steps warming up (schedule cosine)
    grad_clip: float = 1.0       # gradient-norm clipping (0: none)
    mlp_dim: int = 0             # the blocks' feed-forward width (0: 4 x dim)
    head_mlp: int = 0            # the answer heads' hidden layer (0: none, a linear map)
    slot_positions: bool = False  # a learned position per slot index (ALOE's per-token positions)
    val_every: int = 500
    seed: int = 0
    # bf16 autocasts the head's forward passes (weights, logits and AdamW stay fp32); its speed:
    # docs/speed.md
    precision: str = field(default="fp32", metadata={
        "choices": PRECISIONS, "help": "bf16: autocast the forward passes of training and scoring"})
    protocol: str = field(default="official", metadata={
        "choices": ("official", "ours"),
        "help": "official (the paper's ALOE loader): a predictive question reads the last frames, the "
                "predicted ones among them, any other question the observed frames; ours: every "
                "question reads every frame"})


PRESETS = {
    "cpu": VQAConfig(),
    # ALOE as App. F trains it: 12 layers, 8 heads, width 144, feed-forward 512, Adam at 1e-3 (no
    # weight decay), cosine with a 10 % warm-up; where the text is silent, as the official code: no
    # clipping, answer heads with a hidden layer of 128, a position per slot, 25 frames 5 apart
    # from a random start of slots for every frame (each frameskip offset rolled out); 400 epochs,
    # in steps of 64 + 64 examples where the official batch is 96 questions with all their
    # choices (docs/collide.md#vqa-at-the-paper-preset).
    "paper": VQAConfig(dim=144, depth=12, heads=8, mlp_dim=512, head_mlp=128, slot_positions=True,
                       frame_stride=1, every_offset=True, sample_frames=25, epochs=400, batch_size=64,
                       lr=1e-3, weight_decay=0.0, schedule="cosine", warmup=0.1,
                       grad_clip=0.0, val_every=5000),
    "tiny": VQAConfig(dim=32, depth=1, heads=2, dropout=0.0, steps=20, batch_size=8, lr=1e-3, val_every=10),
}


def build_model(cfg: VQAConfig, slot_dim, vocab_size, n_answers, max_frames, n_slots):
    """A VQAModel from the config for slots of ``max_frames`` frames (``cfg.sample_frames`` when
    it samples), initialised from ``cfg.seed`` (the caller's RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return VQAModel(slot_dim, vocab_size, n_answers, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                        mlp_dim=cfg.mlp_dim or 4 * cfg.dim, head_mlp=cfg.head_mlp,
                        slot_positions=n_slots if cfg.slot_positions else 0,
                        max_frames=cfg.sample_frames or max_frames, max_words=cfg.max_words, dropout=cfg.dropout)


def load_video_slots(path, n_videos, n_frames):
    """float32 (V, T, S, D) slots from a .npy file, checked against the dataset: a tensor."""
    slots = np.load(path, mmap_mode="r")
    if slots.dtype != np.float32 or slots.ndim != 4 or slots.shape[:2] != (n_videos, n_frames):
        raise ValueError(f"{path}: expected float32 slots of shape ({n_videos}, {n_frames}, S, D) "
                         f"(every video, observed + future frames), found {slots.dtype} {slots.shape}")
    return torch.from_numpy(np.array(slots))  # a writable copy in memory


def collide_frames(run_dir, who="vqa.py", every_frame=False):
    """What the VQA tools read of a ``train.py --dataset collide`` run folder.

    Returns (cfg, ckpt, data, frame_slots, observed, future): the run's config and predictor
    checkpoint, its CollideData, the frozen encoder's slots of every frame (N, S, D) memory-mapped,
    and the frames of a video as indices into it, frameskip apart (model frames) or with
    ``every_frame`` each one: ``observed`` up to the held-out part, ``future`` after it to the
    end. ``who`` names the caller in the error on a Push-T run."""
    cfg, info, run_dir, ckpt = open_run(run_dir, "collide", f"{who} needs a collide run")
    data = open_dataset(cfg, info["data"])
    frame_slots = load_slots(Path(info["encoder"]), cfg, len(data.pixels))  # (N, S, D)
    fs, length = 1 if every_frame else cfg.frameskip, data.n_observed + data.n_future
    observed = np.arange(0, data.n_observed, fs)
    return cfg, ckpt, data, frame_slots, observed, np.arange(len(observed) * fs, length, fs)


def run_slots(run_dir, device="cpu", every_offset=False):
    """Slots of every video of a ``train.py --dataset collide`` run, its dataset, and how many
    leading frames of the slots were observed.

    The frozen encoder's slots of the observed frames are rolled forward by the run's trained
    predictor over the held-out frames, ``n_history`` frames of context and ``n_future``
    predicted frames a call, as it was trained, as the paper does for CLEVRER (its 128 observed
    frames rolled out to 160; FACTS section 2). Without ``every_offset`` the chain of frames 0,
    fs, 2 fs, ... (fs = the run's frameskip) is rolled out, and the slots are model frames; with
    it, as the official code does, each offset o < fs rolls out its own chain (..., o + fs k)
    from its last ``n_history`` observed frames, in whole calls of ``n_future`` (the surplus
    dropped), and the chains interleave into slots for every video frame.
    Returns (slots float32 (V, T_obs + T_future, S, D), CollideData, T_obs).
    """
    cfg, ckpt, data, frame_slots, observed, future = collide_frames(run_dir, every_frame=every_offset)
    if not ckpt.get("done"):
        raise ValueError(f"{run_dir}/predictor.pt is unfinished: finish it with train.py --resume")
    predictor = build_predictor(cfg)
    predictor.load_state_dict(ckpt["model"])
    predictor.to(device)
    starts = data.episode_starts[:-1, None]
    if not every_offset:
        observed_slots = torch.from_numpy(frame_slots[starts + observed])  # (V, T_obs, S, D)
        slots = video_slots(observed_slots, predictor, len(future), cfg.n_history, block=cfg.n_future)
        return slots.cpu(), data, len(observed)
    slots = torch.from_numpy(frame_slots[starts + np.arange(len(observed) + len(future))])  # (V, T, S, D)
    for offset in range(cfg.frameskip):
        chain = np.arange(offset, len(observed), cfg.frameskip)[-cfg.n_history:]
        if not len(chain):
            raise ValueError(f"{run_dir}: offset {offset} of frameskip {cfg.frameskip} has no observed frame")
        ahead = np.arange(chain[-1] + cfg.frameskip, slots.shape[1], cfg.frameskip)   # its held-out frames
        calls = -(-len(ahead) // cfg.n_future)
        if len(ahead):
            pred = video_slots(slots[:, chain], predictor, calls * cfg.n_future, cfg.n_history, block=cfg.n_future)
            slots[:, ahead] = pred[:, len(chain):len(chain) + len(ahead)].cpu()
    return slots, data, len(observed)


def head_input(cfg, slots, n_observed):
    """(slots, observed): the slots as ``cfg``'s head reads them, every ``cfg.frame_stride``-th
    frame counted back from the last (``keep_frames``), and ``collate``'s ``observed`` for
    ``cfg.protocol``: None (ours: every question reads every frame) or how many of the kept
    frames were observed, given that the first ``n_observed`` of ``slots`` (V, T, S, D) were."""
    n_frames = slots.shape[1]
    observed = None
    if cfg.protocol == "official":
        if not n_observed or not 0 < n_observed < n_frames:
            raise ValueError(f"protocol official needs the observed frames among the {n_frames} given, "
                             f"got n_observed = {n_observed}")
        kept = np.arange(n_frames)[(n_frames - 1) % cfg.frame_stride::cfg.frame_stride]
        observed = int((kept < n_observed).sum())   # leading frames of the kept ones
    elif cfg.protocol != "ours":
        raise ValueError(f"protocol must be ours or official, got {cfg.protocol!r}")
    slots = keep_frames(slots, cfg.frame_stride)
    window = slots.shape[1] if observed is None else observed
    if cfg.sample_frames > window:
        raise ValueError(f"--sample-frames {cfg.sample_frames} is more than a question's window of {window} "
                         f"frames (protocol {cfg.protocol}, frame stride {cfg.frame_stride})")
    return slots, observed


def keep_frames(slots, stride):
    """Every ``stride``-th frame of slots (V, T, ...), counted back from the last, so the head
    always sees how each video ends: the last predicted frame, and with an even stride on a
    run's slots (16 observed + 4 predicted) the last observed one too. Counting from frame 0
    instead would drop both, leaving collisions at the very end of a video in no input."""
    if stride < 1:
        raise ValueError(f"expected frame_stride >= 1, got {stride}")
    return slots[:, (slots.shape[1] - 1) % stride::stride]


def run_vqa(cfg: VQAConfig, slots, data, device="cpu", progress=True, checkpoint=None, source=None,
            n_observed=None):
    """Train on the train questions, score val and test; returns a JSON-friendly result dict.

    slots: float (V, T, S, D), every video's slots (observed and future frames, at any
    frame rate); data: the collide dataset (``load_collide``) the questions come from;
    checkpoint: a file to save the training state to and resume from (``train_vqa``), which
    must have been made on the same device type from the same ``source`` (where the slots
    came from, e.g. the run folder; recorded in the result as "slots"). The vocabularies are
    ``question_examples``'. n_observed: how many leading frames of ``slots`` were observed,
    needed by ``cfg.protocol`` "official".
    """
    if not torch.isfinite(slots).all():
        raise FloatingPointError(f"the slots from {source or 'the input'} hold NaN or inf values: the "
                                 "encoder or predictor that made them diverged; train it again")
    slots, observed = head_input(cfg, slots, n_observed)
    vocab, answers, examples = question_examples(data, cfg.max_words)
    model = build_model(cfg, slots.shape[-1], len(vocab), len(answers), slots.shape[1], slots.shape[2])
    generator = torch.Generator().manual_seed(cfg.seed)
    tag = {**config_to_dict(cfg), "data": str(data.path), "slots": source, "slots_shape": list(slots.shape),
           "device": torch.device(device).type}
    steps = cfg.steps
    if cfg.epochs:   # as many examples an epoch as the training set holds
        steps = math.ceil(cfg.epochs * sum(map(len, examples["train"].values())) / (2 * cfg.batch_size))
    model, log = train_vqa(model, slots, examples["train"], examples["val"], steps, cfg.batch_size,
                           cfg.lr, generator, device, progress, cfg.weight_decay, cfg.val_every,
                           checkpoint, tag, cfg.precision, observed, cfg.schedule, cfg.warmup, cfg.grad_clip,
                           cfg.sample_frames)
    return {"config": config_to_dict(cfg), "data": str(data.path), "slots": source, "steps": steps,
            "answers": answers, "n_examples": {split: {k: len(v) for k, v in ex.items()}
                                               for split, ex in examples.items()},
            **{split: evaluate(model, slots, examples[split], cfg.batch_size, device, cfg.precision, observed,
                               cfg.sample_frames) for split in ("val", "test")},
            "log": log}


def main(argv=None):
    parser = build_parser(VQAConfig, PRESETS, "Train and score the VQA head on slots of a collide dataset.")
    parser.add_argument("--run", help="a train.py --dataset collide run folder: its encoder's "
                        "slots rolled forward by its predictor")
    parser.add_argument("--data", help="collide dataset folder (collide_data.py), with --slots")
    parser.add_argument("--slots",
                        help="float32 .npy (V, T, S, D): slots of every video, observed + future frames")
    parser.add_argument("--out", help="JSON file for the scores and the training log "
                        "(default RUN/vqa-seed<seed>.json with --run)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--resume", action="store_true",
                        help="continue the training saved next to --out (OUT with .pt for .json); "
                        "a finished one is scored again, or trained on to a larger --steps (constant "
                        "--schedule only)")
    args = parser.parse_args(argv)
    by_run = args.run and not (args.data or args.slots)
    by_files = args.data and args.slots and not args.run
    if not (by_run or by_files):
        parser.error("pass either --run RUN_DIR or both --data DIR and --slots FILE.npy")
    cfg = config_from_args(VQAConfig, PRESETS, args, default_preset="cpu")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.data and not args.out:
        parser.error("--out is required with --data and --slots")
    out = args.out or str(Path(args.run) / f"vqa-seed{cfg.seed}.json")
    checkpoint = Path(out).with_suffix(".pt")
    if checkpoint == Path(out):
        parser.error("--out names the JSON result; its training state goes beside it as .pt")
    if checkpoint.name in ("predictor.pt", "encoder.pt"):
        parser.error(f"--out {out}: its training state would replace the run's {checkpoint.name}")
    for name in ("steps", "batch_size", "val_every", "frame_stride", "dim", "depth", "heads"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if (not cfg.lr > 0 or not 0 <= cfg.warmup < 1 or cfg.grad_clip < 0
            or min(cfg.mlp_dim, cfg.head_mlp, cfg.sample_frames, cfg.epochs) < 0):
        parser.error(f"need --lr > 0, 0 <= --warmup < 1 and --grad-clip, --mlp-dim, --head-mlp, --sample-frames, "
                     f"--epochs >= 0, got {cfg.lr}, {cfg.warmup}, {cfg.grad_clip}, {cfg.mlp_dim}, {cfg.head_mlp}, "
                     f"{cfg.sample_frames} and {cfg.epochs}")
    try:
        check_results_path(out, "vqa.py", ("val", "test"))
    except ValueError as err:
        parser.error(str(err))
    if checkpoint.is_file() and not args.resume:
        sys.exit(f"error: {checkpoint} holds a VQA training run: pass --resume to continue it (a finished one "
                 "is scored again, or, under a constant --schedule, trained on to a larger --steps), or delete it "
                 "to start over")
    try:
        if args.run:
            slots, data, n_observed = run_slots(args.run, device, cfg.every_offset)
        else:
            data = load_collide(args.data)
            slots = load_video_slots(args.slots, len(data.scenes), data.n_observed + data.n_future)
            n_observed = data.n_observed
    except (ValueError, OSError) as err:  # DatasetError is a ValueError
        sys.exit(f"error: {error_line(err)}")
    try:
        result = run_vqa(cfg, slots, data, device, checkpoint=checkpoint, source=args.run or args.slots,
                         n_observed=n_observed)
    except (ValueError, OSError, FloatingPointError) as err:  # e.g. a checkpoint of another run
        sys.exit(f"error: {error_line(err)}")
    atomic_write_json(out, result)
    for split in ("val", "test"):
        print(f"{split}:\n{format_table(result[split])}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
