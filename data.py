"""Push-T data: collection policies, on-disk datasets and the torch datasets cut from them
(FACTS sections 4 and 5; the world itself is ``pusht.py``).

Datasets are collected with the weak expert of SWM (the agent pushes about near the
block) or, as the paper trained its slot encoder (App. D.1), in the "all moving" variant:
the agent wanders the whole world and the block moves at random velocities and spins.
A dataset is a folder of ``.npy`` arrays plus ``meta.json`` (see ``collect``); the
torch datasets cut it into frame clips (encoder training) and history + future windows
with a frameskip (world-model training).
"""

import multiprocessing as mp
import os
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import build_parser, config_from_args, config_to_dict
from files import check_replaceable, DatasetError, error_line, load_array, publish_dataset, read_dataset_meta
from expert import ScriptedExpert
from pusht import (ACTION_DIM, ACTION_SCALE, AGENT_HIGH, AGENT_LOW, INNER_HIGH, INNER_LOW, PROPRIO_DIM, STATE_DIM,
                   PushTEnv, render_ids, tee_polygon)


# ---------------------------------------------------------------------------------------
# Data collection: the weak expert (FACTS section 4), "all moving" (App. D.1) and our
# scripted expert (expert.py)
# ---------------------------------------------------------------------------------------
DRIVE_EVERY = 5         # all moving: env steps between two random draws of the block's motion,
DRIVE_SPEED = 200.0     # its speed ~ U[0, 200] px/s (the agent's top step speed is ~374)
DRIVE_SPIN = 3.0        # and its angular velocity ~ U[-3, 3] rad/s (up to 0.3 rad a step)
BACK_OFF_GAP = 40.0     # see wander_action: about one agent step at full speed (37 px),
BACK_OFF_REACH = 130.0  # and the block's reach from its CoG (77) + agent radius + one step


def weak_expert_action(state, rng):
    """a ~ U[-1, 1]^2, its target clipped to the block's +/- 100 px box, back to [-1, 1]^2."""
    agent, block = state[0:2], state[2:4]
    target = np.clip(agent + ACTION_SCALE * rng.uniform(-1, 1, 2), block - 100, block + 100)
    return np.clip((target - agent) / ACTION_SCALE, -1, 1)


def wander_action(state, rng):
    """a ~ U[-1, 1]^2, its target clipped to where the agent fits inside the walls.

    While the block is within BACK_OFF_GAP px of a wall and the agent within BACK_OFF_REACH
    px of the block's centre, the agent backs off from the block at full speed instead:
    a kinematic agent that pins the block against a wall squeezes it through the wall.
    """
    agent = state[0:2]
    target = agent + ACTION_SCALE * rng.uniform(-1, 1, 2)
    outline = np.array(tee_polygon(*state[2:5], 1.0))                 # (8, 2) world px
    away = agent - outline.mean(0)             # the outline's mean vertex is the block's CoG
    wall_gap = min(outline.min() - INNER_LOW, INNER_HIGH - outline.max())
    if wall_gap < BACK_OFF_GAP and np.linalg.norm(away) < BACK_OFF_REACH:
        target = agent + ACTION_SCALE * away / max(np.linalg.norm(away), 1e-6)
    target = np.clip(target, AGENT_LOW, AGENT_HIGH)
    return np.clip((target - agent) / ACTION_SCALE, -1, 1)


def _weak_step(env, t, rng):
    return weak_expert_action(env.get_state(), rng)


def _all_moving_step(env, t, rng):
    if t % DRIVE_EVERY == 0:
        heading, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0, DRIVE_SPEED)
        env.drive_block(speed * np.array([np.cos(heading), np.sin(heading)]),
                        rng.uniform(-DRIVE_SPIN, DRIVE_SPIN))
    return wander_action(env.get_state(), rng)


# policy name -> make(noise) -> one episode's step(env, t, rng): moves the world if the
# policy does so, returns the action
POLICIES = {"weak": lambda noise: _weak_step, "all_moving": lambda noise: _all_moving_step,
            "expert": ScriptedExpert}


def policy_step(name, noise=0.0):
    """A fresh episode's step function of the collection policy ``name`` (ValueError if there
    is none); ``noise`` is the expert's action noise."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {sorted(POLICIES)}")
    return POLICIES[name](noise)


@dataclass(frozen=True)
class PushTDataConfig:
    """What a Push-T dataset is made of; two datasets with equal configs are identical."""
    name: str = "pusht"
    episodes: int = 1000
    min_steps: int = 100          # episode length (env steps) drawn uniformly in [min, max]
    max_steps: int = 100
    render_size: int = 64
    val_fraction: float = 0.1     # share of episodes held out as the validation split
    seed: int = 0
    policy: str = field(default="expert", metadata={
        "choices": sorted(POLICIES),
        "help": "expert: our scripted pusher (expert.py; docs/expert.md); weak: SWM's weak expert; "
                "all_moving: the block moves randomly too (App. D.1)"})
    expert_noise: float = field(default=0.03, metadata={
        "help": "std of the Gaussian noise on the scripted expert's actions (of 1)"})


DATA_PRESETS = {
    "paper": PushTDataConfig(episodes=2000, min_steps=100, max_steps=200, render_size=224, policy="expert"),
    "cpu": PushTDataConfig(),
    "tiny": PushTDataConfig(episodes=12, min_steps=30, max_steps=40, val_fraction=0.25),
}


def collect_episode(n_steps, seed, render_size, policy=PushTDataConfig.policy, noise=PushTDataConfig.expert_noise):
    """Roll out ``policy`` for ``n_steps`` env steps from a random start.

    "weak": SWM's weak expert (``weak_expert_action``); the block moves only when pushed.
    "all_moving": the agent wanders the whole world (``wander_action``) and the block
    moves of its own accord (``PushTEnv.drive_block``): every DRIVE_EVERY steps it is given
    a new random velocity (uniform heading, speed U[0, DRIVE_SPEED] px/s) and spin
    (U[-DRIVE_SPIN, DRIVE_SPIN] rad/s), which it keeps wherever the walls and the agent
    leave it free; they stop and push it as usual. The block's motion is not in the
    recorded action, so this data is for training the slot encoder, not a world model.
    "expert": our scripted pusher (``expert.ScriptedExpert``) pushes the block toward target
    poses it picks, with Gaussian action noise of std ``noise``.

    Returns arrays over the n_steps + 1 frames: pixels uint8 (L, H, W, 3), state float32
    (L, 7), proprio float32 (L, 4), action float32 (L, 2) where action[i] is the action
    given to the env at frame i and the last row, which has no action, is NaN. All
    randomness comes from ``np.random.default_rng(seed)``.
    """
    step = policy_step(policy, noise)
    rng = np.random.default_rng(seed)
    env = PushTEnv(render_size)
    obs, info = env.reset(seed=int(rng.integers(2**31)))
    pixels, states, proprio, actions = [obs["pixels"]], [info["state"]], [obs["proprio"]], []
    for t in range(n_steps):
        action = step(env, t, rng)
        obs, _, _, _, info = env.step(action)
        actions.append(action)
        pixels.append(obs["pixels"])
        states.append(info["state"])
        proprio.append(obs["proprio"])
    actions.append(np.full(ACTION_DIM, np.nan))
    return {"pixels": np.stack(pixels), "state": np.stack(states).astype(np.float32),
            "proprio": np.stack(proprio).astype(np.float32),
            "action": np.stack(actions).astype(np.float32)}


def _collect_job(job):
    return job[0], collect_episode(*job[1:])


ARRAYS = {  # name -> (trailing shape given the render size, dtype)
    "pixels": (lambda s: (s, s, 3), "uint8"),
    "state": (lambda s: (STATE_DIM,), "float32"),
    "proprio": (lambda s: (PROPRIO_DIM,), "float32"),
    "action": (lambda s: (ACTION_DIM,), "float32"),
}
FORMAT = "cjepa-pusht/1"


def collect(cfg: PushTDataConfig, out, workers=0, progress=True, overwrite=False):
    """Collect a dataset with the policy ``cfg.policy`` into the folder ``out`` and return
    it loaded.

    Episodes are collected in parallel (``workers`` processes, 0 = one per core; 1 collects
    in this process) and streamed into memory-mapped arrays inside ``out.partial``; only when
    everything, ``meta.json`` last, is written is that folder renamed to ``out``. An
    interrupted collection therefore never leaves a folder that loads as a dataset.
    """
    policy_step(cfg.policy)
    out = Path(out)
    check_replaceable(out, FORMAT, overwrite)
    if cfg.min_steps < 1 or cfg.max_steps < cfg.min_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {cfg.min_steps}, {cfg.max_steps}")
    if cfg.episodes < 2 or not 0 < cfg.val_fraction < 1:
        raise ValueError("need at least 2 episodes and 0 < val_fraction < 1")
    if not cfg.expert_noise >= 0:
        raise ValueError(f"--expert-noise is a standard deviation: at least 0, got {cfg.expert_noise}")
    master = np.random.default_rng(cfg.seed)
    lengths = master.integers(cfg.min_steps, cfg.max_steps + 1, cfg.episodes) + 1  # frames
    seeds = master.integers(2**63, size=cfg.episodes)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_frames = int(starts[-1])

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arrays = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype,
                                              shape=(n_frames, *shape(cfg.render_size)))
              for name, (shape, dtype) in ARRAYS.items()}
    jobs = [(e, int(lengths[e]) - 1, int(seeds[e]), cfg.render_size, cfg.policy, cfg.expert_noise)
            for e in range(cfg.episodes)]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=cfg.episodes, desc=f"collect {out.name}", unit="ep", disable=not progress)
    with mp.get_context("spawn").Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap_unordered(_collect_job, jobs, chunksize=4) if pool else map(_collect_job, jobs)
        for e, episode in results:
            for name, values in episode.items():
                arrays[name][starts[e]:starts[e + 1]] = values
            bar.update()
    bar.close()
    for array in arrays.values():
        array.flush()
    np.save(tmp / "episode_starts.npy", starts)

    val = np.sort(master.permutation(cfg.episodes)[:max(1, round(cfg.val_fraction * cfg.episodes))])
    train = np.setdiff1d(np.arange(cfg.episodes), val)
    rows = np.concatenate([np.arange(starts[e], starts[e + 1]) for e in train])
    meta = {
        "format": FORMAT,
        "config": config_to_dict(cfg),
        "n_frames": n_frames,
        "n_episodes": cfg.episodes,
        "splits": {"train": train.tolist(), "val": val.tolist()},
        "stats": {  # z-scoring statistics over the train split
            "action_mean": np.nanmean(arrays["action"][rows], 0).tolist(),
            "action_std": np.nanstd(arrays["action"][rows], 0).tolist(),
            "proprio_mean": arrays["proprio"][rows].mean(0).tolist(),
            "proprio_std": arrays["proprio"][rows].std(0).tolist(),
        },
    }
    del arrays
    publish_dataset(tmp, out, meta)
    return load_dataset(out)


# ---------------------------------------------------------------------------------------
# Loading, with validation
# ---------------------------------------------------------------------------------------
@dataclass
class PushTData:
    """A loaded dataset: memory-mapped arrays over all N frames of all E episodes.

    pixels uint8 (N, H, W, 3); state float32 (N, 7); proprio float32 (N, 4);
    action float32 (N, 2), NaN on each episode's last frame; episode_starts int64 (E + 1,);
    splits {"train": episode ids, "val": episode ids}; stats: z-scoring statistics.
    """
    path: Path
    config: PushTDataConfig
    pixels: np.ndarray
    state: np.ndarray
    proprio: np.ndarray
    action: np.ndarray
    episode_starts: np.ndarray
    splits: dict
    stats: dict

    def episodes(self, split):
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return np.asarray(self.splits[split], dtype=np.int64)

    def id_maps(self, index):
        """Ground-truth object ids (OBJECT_IDS) of frames ``index``: uint8 (*index.shape, H, W)."""
        index = np.asarray(index)
        size = self.config.render_size
        maps = [render_ids(s, size) for s in self.state[index.ravel()]]
        return np.stack(maps).reshape(*index.shape, size, size)


def load_dataset(path, expect: PushTDataConfig | None = None):
    """Load and validate a dataset folder written by ``collect``.

    Raises DatasetError, saying what was expected and found, when meta.json is missing
    (never finished, or not a dataset), an array is truncated or has the wrong shape or
    dtype, or the dataset was made with another config than ``expect``.
    """
    path = Path(path)
    meta, cfg = read_dataset_meta(path, FORMAT, PushTDataConfig, expect)
    n = meta["n_frames"]
    arrays = {name: load_array(path / f"{name}.npy", (n, *shape(cfg.render_size)), dtype)
              for name, (shape, dtype) in ARRAYS.items()}
    starts = np.load(path / "episode_starts.npy")
    if (starts.shape != (meta["n_episodes"] + 1,) or starts[0] != 0 or starts[-1] != n
            or np.any(np.diff(starts) < 2)):
        raise DatasetError(f"{path}/episode_starts.npy: expected {meta['n_episodes'] + 1} "
                           f"increasing offsets from 0 to {n}, found {starts.shape}")
    return PushTData(path=path, config=cfg, episode_starts=starts, splits=meta["splits"],
                     stats={k: np.asarray(v, np.float32) for k, v in meta["stats"].items()},
                     **arrays)


# ---------------------------------------------------------------------------------------
# Torch datasets: frame clips (encoder) and history + future windows (world model)
# ---------------------------------------------------------------------------------------
def window_starts(data, split, n_frames_needed):
    """Global frame indices t0 of every window of ``n_frames_needed`` consecutive frames
    that fits inside one episode of ``split``. Returns int64 (K,)."""
    out = []
    for e in data.episodes(split):
        begin, end = data.episode_starts[e], data.episode_starts[e + 1]
        out.append(np.arange(begin, end - n_frames_needed + 1))
    return np.concatenate(out).astype(np.int64)


def frames_to_tensor(pixels, device=None):
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1], on ``device`` (moved there as
    uint8, a quarter of the bytes). Read-only frames (a slice of a memory-mapped dataset) are copied."""
    pixels = np.ascontiguousarray(pixels)
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    return torch.from_numpy(pixels).to(device).movedim(-1, -3).float().div_(255)


class FrameClips(torch.utils.data.Dataset):
    """Clips of T frames, ``frameskip`` frames apart, for training the slot encoder.

    item: {"frames": float (T, 3, H, W) in [0, 1], "index": int64 (T,) dataset frame rows}.
    ``data`` is any dataset with ``pixels``, ``episode_starts`` and ``episodes(split)``:
    Push-T's ``PushTData`` or the collide world's ``CollideData``.
    """

    def __init__(self, data, split, clip_len, frameskip=5):
        self.data, self.clip_len, self.frameskip = data, clip_len, frameskip
        self.starts = window_starts(data, split, (clip_len - 1) * frameskip + 1)
        if len(self.starts) == 0:
            raise ValueError(f"no clip of {clip_len} frames at frameskip {frameskip} fits in "
                             f"the {split!r} episodes of {data.path}")

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        index = self.starts[i] + self.frameskip * np.arange(self.clip_len)
        return {"frames": frames_to_tensor(self.data.pixels[index]), "index": torch.from_numpy(index)}


class Windows(torch.utils.data.Dataset):
    """History + future windows at a frameskip, the world model's training samples.

    Frame k of a window is env step t0 + k * frameskip; its action is the concatenation of
    the ``frameskip`` env actions taken from there (a (frameskip * 2)-vector), so every
    window needs T * frameskip valid actions. Actions and proprio are z-scored with the
    dataset's train statistics.

    With ``slots`` (float (N, S, D), one row per dataset frame) items carry "slots"
    (T, S, D) instead of "frames" (T, 3, H, W). Every item also has "actions" (T, fs * 2),
    "proprio" (T, 4), "state" (T, 7) and "index" (T,). A dataset without actions (the
    collide world's ``CollideData``) gives only "frames" or "slots" and "index", and its
    windows need only (T - 1) * frameskip + 1 frames.
    """

    def __init__(self, data, split, n_history, n_future, frameskip=5, slots=None):
        self.data, self.frameskip = data, frameskip
        self.n_frames = n_history + n_future
        self.controlled = hasattr(data, "action")
        if slots is not None and len(slots) != len(data.pixels):
            raise ValueError(f"expected slots for all {len(data.pixels)} frames, got {len(slots)}")
        self.slots = slots
        span = self.n_frames * frameskip + 1 if self.controlled else (self.n_frames - 1) * frameskip + 1
        self.starts = window_starts(data, split, span)
        if len(self.starts) == 0:
            raise ValueError(f"no window of {self.n_frames} frames at frameskip {frameskip} "
                             f"fits in the {split!r} episodes of {data.path}")
        if self.controlled:
            stats = data.stats
            self.action_mean = np.tile(stats["action_mean"], frameskip)
            self.action_std = np.tile(stats["action_std"], frameskip)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        t0 = self.starts[i]
        index = t0 + self.frameskip * np.arange(self.n_frames)
        item = {"index": torch.from_numpy(index)}
        if self.controlled:
            steps = self.data.action[t0:t0 + self.n_frames * self.frameskip]
            actions = steps.reshape(self.n_frames, self.frameskip * ACTION_DIM)  # (T, fs * 2)
            item["actions"] = torch.from_numpy((actions - self.action_mean) / self.action_std).float()
            item["proprio"] = torch.from_numpy(normalize_proprio(self.data.proprio[index], self.data.stats))
            item["state"] = torch.from_numpy(self.data.state[index].copy())
        if self.slots is None:
            item["frames"] = frames_to_tensor(self.data.pixels[index])
        else:
            item["slots"] = self.slot_rows(index)
        return item

    def slot_rows(self, index):
        """The slots of frames ``index`` as a float32 tensor; tokens encoded as they are asked
        for (encoder.LivePatches) come as a tensor already, on their device."""
        rows = self.slots[index]
        return rows if torch.is_tensor(rows) else torch.as_tensor(np.asarray(rows), dtype=torch.float32)

    def batch(self, indices):
        """Items ``indices`` stacked, as ``torch.stack`` of each key of ``self[i]`` would give,
        gathered with one indexing per array (a batch of 256 windows: 5.6 ms item by item)."""
        t0 = self.starts[np.asarray(indices)]  # (B,)
        index = t0[:, None] + self.frameskip * np.arange(self.n_frames)  # (B, T)
        batch = {"index": torch.from_numpy(index)}
        if self.controlled:
            steps = t0[:, None] + np.arange(self.n_frames * self.frameskip)  # (B, T * fs) env steps
            actions = self.data.action[steps].reshape(len(t0), self.n_frames, self.frameskip * ACTION_DIM)
            batch["actions"] = torch.from_numpy((actions - self.action_mean) / self.action_std).float()
            batch["proprio"] = torch.from_numpy(normalize_proprio(self.data.proprio[index], self.data.stats))
            batch["state"] = torch.from_numpy(self.data.state[index])
        if self.slots is None:
            batch["frames"] = torch.stack([frames_to_tensor(self.data.pixels[i]) for i in index])
        else:
            batch["slots"] = self.slot_rows(index)
        return batch


def normalize_proprio(proprio, stats):
    """z-score proprio (..., 4) with the dataset statistics; returns float32."""
    return ((proprio - stats["proprio_mean"]) / stats["proprio_std"]).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Evaluation protocol (FACTS section 5)
# ---------------------------------------------------------------------------------------
def sample_eval_pairs(data: PushTData, split="val", n_episodes=50, seed=0, goal_offset=25):
    """Draw (start, goal) frame pairs for planning, as the paper's protocol does.

    Starts are drawn uniformly, without replacement, with ``np.random.default_rng(seed)``
    over the frames of ``split`` whose frame ``goal_offset`` steps later is in the same
    episode; the goal is that later frame. Returns int64 (n_episodes, 2) global indices.
    """
    candidates = window_starts(data, split, goal_offset + 1)
    if len(candidates) < n_episodes:
        raise ValueError(f"only {len(candidates)} start frames in split {split!r} leave room "
                         f"for a goal {goal_offset} steps later; asked for {n_episodes}")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(candidates, size=n_episodes, replace=False))
    return np.stack([starts, starts + goal_offset], axis=1)


# ---------------------------------------------------------------------------------------
# Command line: python data.py --preset cpu --out data/pusht-cpu
# ---------------------------------------------------------------------------------------
def main(argv=None):
    parser = build_parser(PushTDataConfig, DATA_PRESETS, "Collect a Push-T dataset.")
    parser.add_argument("--out", default=None,
                        help="dataset folder (default data/pusht-<preset>[-<policy>])")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    cfg = config_from_args(PushTDataConfig, DATA_PRESETS, args, default_preset="cpu")
    policy = "" if cfg.policy == "expert" else f"-{cfg.policy}"
    out = args.out or f"data/pusht-{args.preset or 'cpu'}{policy}"
    try:
        data = collect(cfg, out, workers=args.workers, overwrite=args.overwrite)
    except (ValueError, OSError) as err:  # DatasetError is a ValueError
        sys.exit(f"error: {error_line(err)}")
    print(f"wrote {data.path}: {len(data.state)} frames in {len(data.episode_starts) - 1} "
          f"episodes, {data.pixels.nbytes / 2**20:.0f} MiB of pixels")


if __name__ == "__main__":
    main()
