"""Plumbing shared by every script: dataclass configs with named presets, processes and
precision (DDP, bf16), and a training stage's bookkeeping (files on disk: files.py).

Every script describes its settings as one dataclass whose defaults are the small CPU
values, plus a dict of named presets (``paper`` holds the values from the paper). The
command line is built from the dataclass fields, so ``--preset paper --batch-size 64``
starts from the paper preset and overrides one field.
"""

import argparse
import dataclasses
import hashlib
import io
import json
import os
import time
import typing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from files import atomic_write_bytes


def build_parser(cls, presets, description=None):
    """An argparse parser with ``--preset`` plus one ``--flag`` per field of ``cls``.

    Field defaults are not put into argparse: a flag left out keeps the preset's value.
    Booleans become ``--flag / --no-flag``; tuples become ``nargs='+'``.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--preset", choices=sorted(presets), default=None,
        help="named set of values to start from (flags override it)",
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        origin = typing.get_origin(kind)
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        elif origin is tuple:
            (item, *_) = typing.get_args(kind)
            parser.add_argument(flag, dest=f.name, type=item, nargs="+", default=None,
                                help=help_text)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices,
                                help=help_text)
    return parser


def config_from_args(cls, presets, args, default_preset):
    """Instantiate ``cls`` from a preset and the flags that were given."""
    name = args.preset or default_preset
    base = presets[name]
    overrides = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **overrides)


def parse_config(cls, presets, argv=None, default_preset="cpu", description=None):
    """Parse the command line into an instance of the config dataclass ``cls``."""
    parser = build_parser(cls, presets, description)
    args = parser.parse_args(argv)
    return config_from_args(cls, presets, args, default_preset)


def config_to_dict(cfg):
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def short_hash(obj) -> str:
    """8 hex digits naming a JSON-able object (a config): sha256 of its sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def config_from_dict(cls, d):
    """Rebuild a config dataclass from ``config_to_dict``'s output; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"config has fields {unknown} that {cls.__name__} does not know")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**values)




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


# ---------------------------------------------------------------------------------------
# Training stages: batches, masks' generators, validation, resume, logs and checkpoints
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


class Stage:
    """The bookkeeping of one training stage around a loop its file writes out: resuming,
    logging every step, validating every ``val_every`` steps, checkpointing every
    ``ckpt_every`` and at the end. ``config`` is stored in the checkpoint."""

    def __init__(self, name, ckpt_path, log_path, config, total_steps, val_every, ckpt_every, ctx: Context):
        self.name, self.ckpt_path, self.log_path, self.config = name, Path(ckpt_path), Path(log_path), config
        self.total, self.val_every, self.ckpt_every, self.ctx = total_steps, val_every, ckpt_every, ctx
        self.bar = None

    def start(self, model, optimizer, ckpt=None):
        """Load ``ckpt`` (a checkpoint of this stage, or None to start afresh) into model,
        optimizer and random state; returns the step to go on from. Wraps nothing: the
        caller trains ``self.distributed(model)``."""
        step = 0
        if ckpt is not None:
            if ckpt["step"] > self.total:
                raise ValueError(f"{self.ckpt_path} has trained {ckpt['step']} {self.name} steps, more than "
                                 f"the {self.total} this config asks for; it cannot be shortened")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"])
            if self.ctx.device.type == "cuda" and "cuda_rng" in ckpt:  # dropout draws from the device's RNG
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.ctx.device)
            step = ckpt["step"]
            if self.ctx.main:
                print(f"[{self.name}] resumed from {self.ckpt_path} at step {step}")
                drop_log_after(self.log_path, self.name, step)
        elif self.ckpt_path.is_file():
            raise FileExistsError(f"{self.ckpt_path} holds an unfinished {self.name} run: pass --resume to "
                                  f"continue it or --redo {self.name} to start over")
        self.bar = tqdm(total=self.total, initial=step, desc=self.name, disable=not self.ctx.progress,
                        dynamic_ncols=True)
        self.started = time.perf_counter()
        model.train()
        return step

    def distributed(self, model):
        """The module to train: ``model`` itself, or wrapped for DDP under torchrun."""
        if self.ctx.world == 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None)

    def end_step(self, step, loss, terms, model, optimizer, validation):
        """After optimizer step ``step`` (1-based): log it, validate (``validation()`` returns
        the val_ terms) and checkpoint when due. A loss that is not finite stops the stage
        with FloatingPointError before anything of this step is written: the last checkpoint
        stays the last good one, unfinished. Under DDP every process stops together (a NaN on
        one rank alone would leave the others waiting for it)."""
        finite = torch.isfinite(loss.detach()).float()
        if self.ctx.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite:
            which = "another process's loss is not finite" if torch.isfinite(loss) else f"the loss is {loss.item()}"
            raise FloatingPointError(f"[{self.name}] {which} at step {step}: training diverged (a learning rate "
                                     f"too high, or non-finite inputs); {self.ckpt_path} holds the last good "
                                     "step, unfinished")
        record = {"step": step, "loss": loss.item(), **{k: float(v) for k, v in terms.items()},
                  "seconds": round(time.perf_counter() - self.started, 3)}  # since this process began
        self.bar.set_postfix(loss=f"{record['loss']:.4f}")
        self.bar.update()
        if step % self.val_every == 0 or step == self.total:
            record.update(validation())
            if self.ctx.main:
                self.bar.write(f"[{self.name}] step {step}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")))
        if not self.ctx.main:
            return
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps({"stage": self.name, **record}) + "\n")
        if step % self.ckpt_every == 0 or step == self.total:
            extra = {"cuda_rng": torch.cuda.get_rng_state(self.ctx.device)} if self.ctx.device.type == "cuda" else {}
            save_checkpoint(self.ckpt_path, model, optimizer, self.config, step, step == self.total,
                            precision=self.ctx.precision, **extra)

    def close(self):
        self.bar.close()
        self.ctx.barrier()
