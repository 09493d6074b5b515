"""Collide datasets: videos of the collision world with their questions, made in parallel
and written as a folder that loads only once complete (FACTS section 7).

    python collide_data.py --preset cpu --out data/collide-cpu

A video is drawn from its own seed, simulated, re-simulated once per removed object, rendered
and asked its questions (``questions.py``); the folder holds pixels, ground-truth object ids,
the scenes with their collision logs and one question file per split.
"""

import multiprocessing as mp
import os
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import build_parser, config_from_args, config_to_dict
from files import (atomic_write_json, check_replaceable, DatasetError, error_line, load_array,
                   publish_dataset, read_dataset_meta, read_json)
from collision import COLORS, SHAPES, render_video, sample_scene, simulate
from questions import load_questions, make_questions, question_stats


# ---------------------------------------------------------------------------------------
# Dataset generation
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CollideConfig:
    """What a collide dataset is made of; two datasets with equal configs are identical."""
    name: str = "collide"
    videos: int = 2000
    n_observed: int = 32          # frames the model sees
    n_future: int = 8             # held-out frames after them (predictive, counterfactual)
    frame_substeps: int = 4       # physics steps of DT = 0.01 s per frame
    render_size: int = 64
    min_objects: int = 3
    max_objects: int = 6
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0


COLLIDE_PRESETS = {
    # CLEVRER's size: 20k videos (10k / 5k / 5k), 128 observed frames; ~200 GiB on disk.
    "paper": CollideConfig(videos=20000, n_observed=128, n_future=32, render_size=128,
                           val_fraction=0.25, test_fraction=0.25),
    "cpu": CollideConfig(),
    "tiny": CollideConfig(videos=16, n_observed=12, n_future=4, frame_substeps=10,
                          val_fraction=0.25, test_fraction=0.25),
}


def make_video(cfg: CollideConfig, seed_seq):
    """One video from its own seed: (pixels (T, H, W, 3), ids (T, H, W), scene, questions)."""
    rng = np.random.default_rng(seed_seq)
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    scene = sample_scene(rng, n_objects, cfg.n_observed + cfg.n_future, cfg.frame_substeps)
    factual = simulate(scene)
    removed = [simulate(scene, remove=k) for k in range(n_objects)]
    pixels, ids = render_video(scene, factual, cfg.render_size)
    questions = make_questions(rng, scene, factual, removed, cfg.n_observed)
    scene["collisions"] = [list(event) for event in factual.collisions]
    return pixels, ids, scene, questions


def _video_job(job):
    v, cfg, seed_seq = job
    return v, make_video(cfg, seed_seq)


FORMAT = "cjepa-collide/1"
SPLITS = ("train", "val", "test")


def generate(cfg: CollideConfig, out, workers=0, progress=True, overwrite=False):
    """Generate a dataset into the folder ``out`` and return it loaded.

    Video v draws everything from ``np.random.SeedSequence(cfg.seed).spawn(videos + 1)[v]``
    (the last child splits the videos), so the bytes do not depend on ``workers``
    (0 = one process per core, 1 = this process). Everything is written into
    ``out.partial``, ``meta.json`` last, then renamed to ``out``: an interrupted generation
    never leaves a folder that loads.
    """
    out = Path(out)
    check_replaceable(out, FORMAT, overwrite)
    if not 2 <= cfg.min_objects <= cfg.max_objects <= len(SHAPES) * len(COLORS):
        raise ValueError(f"need 2 <= min_objects <= max_objects <= {len(SHAPES) * len(COLORS)}, "
                         f"got {cfg.min_objects}, {cfg.max_objects}")
    n_val, n_test = round(cfg.val_fraction * cfg.videos), round(cfg.test_fraction * cfg.videos)
    n_train = cfg.videos - n_val - n_test
    if cfg.n_observed < 2 or cfg.n_future < 1 or min(n_train, n_val, n_test) < 1:
        raise ValueError(f"need n_observed >= 2, n_future >= 1 and at least one video per split; "
                         f"got {cfg.n_observed}, {cfg.n_future} and {cfg.videos} videos split "
                         f"{cfg.val_fraction} / {cfg.test_fraction}")
    length = cfg.n_observed + cfg.n_future
    starts = np.arange(cfg.videos + 1, dtype=np.int64) * length
    *seeds, split_seed = np.random.SeedSequence(cfg.seed).spawn(cfg.videos + 1)

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    size = cfg.render_size
    pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8,
                                       shape=(int(starts[-1]), size, size, 3))
    ids = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=np.uint8,
                                    shape=(int(starts[-1]), size, size))
    scenes, questions = [None] * cfg.videos, [None] * cfg.videos
    jobs = [(v, cfg, seeds[v]) for v in range(cfg.videos)]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=cfg.videos, desc=f"generate {out.name}", unit="video", disable=not progress)
    with mp.get_context("spawn").Pool(workers) if workers > 1 else nullcontext() as pool:
        results = (pool.imap_unordered(_video_job, jobs, chunksize=8) if pool
                   else map(_video_job, jobs))
        for v, (video_pixels, video_ids, scene, video_questions) in results:
            pixels[starts[v]:starts[v + 1]] = video_pixels
            ids[starts[v]:starts[v + 1]] = video_ids
            scenes[v], questions[v] = {"video_index": v, **scene}, video_questions
            bar.update()
    bar.close()
    pixels.flush()
    ids.flush()
    del pixels, ids
    np.save(tmp / "episode_starts.npy", starts)

    order = np.random.default_rng(split_seed).permutation(cfg.videos)
    splits = {"val": np.sort(order[:n_val]), "test": np.sort(order[n_val:n_val + n_test]),
              "train": np.sort(order[n_val + n_test:])}
    atomic_write_json(tmp / "scenes.json", scenes)
    for split in SPLITS:
        atomic_write_json(tmp / f"questions_{split}.json", [
            {"scene_index": int(v), "video_filename": f"video_{v:05d}", "questions": questions[v]}
            for v in splits[split]])
    meta = {
        "format": FORMAT,
        "config": config_to_dict(cfg),
        "n_videos": cfg.videos,
        "n_frames": int(starts[-1]),
        "n_observed": cfg.n_observed,
        "n_future": cfg.n_future,
        "splits": {split: splits[split].tolist() for split in SPLITS},
    }
    publish_dataset(tmp, out, meta)
    return load_collide(out)


# ---------------------------------------------------------------------------------------
# Loading, with validation
# ---------------------------------------------------------------------------------------
@dataclass
class CollideData:
    """A loaded dataset. pixels uint8 (N, H, W, 3) and ids uint8 (N, H, W) are memory-mapped
    over all frames of all V videos; video v is frames [episode_starts[v], episode_starts[v
    + 1]), its first n_observed observed and the next n_future held out. scenes[v]: the
    spec ``simulate`` takes plus its collision log; questions[split]: ``load_questions``."""
    path: Path
    config: CollideConfig
    pixels: np.ndarray
    ids: np.ndarray
    episode_starts: np.ndarray
    splits: dict
    n_observed: int
    n_future: int
    scenes: list
    questions: dict

    def episodes(self, split):
        """Video ids of ``split`` (train, val or test): int64 (K,)."""
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return np.asarray(self.splits[split], dtype=np.int64)

    def id_maps(self, index):
        """Ground-truth object ids of frames ``index`` (0 = background, k + 1 = object k):
        uint8 (*index.shape, H, W)."""
        return np.asarray(self.ids[np.asarray(index)])


def load_collide(path, expect: CollideConfig | None = None):
    """Load and validate a folder written by ``generate``; DatasetError says what is wrong."""
    path = Path(path)
    meta, cfg = read_dataset_meta(path, FORMAT, CollideConfig, expect)
    n, s = meta["n_frames"], cfg.render_size
    arrays = {"pixels": load_array(path / "pixels.npy", (n, s, s, 3), np.uint8),
              "ids": load_array(path / "ids.npy", (n, s, s), np.uint8)}
    starts = np.load(path / "episode_starts.npy")
    length = cfg.n_observed + cfg.n_future
    if not np.array_equal(starts, np.arange(meta["n_videos"] + 1) * length):
        raise DatasetError(f"{path}/episode_starts.npy: expected {meta['n_videos'] + 1} offsets "
                           f"{length} frames apart, found {starts.shape}")
    scenes = read_json(path / "scenes.json")
    if len(scenes) != meta["n_videos"]:
        raise DatasetError(f"{path}/scenes.json: expected {meta['n_videos']} scenes, "
                           f"found {len(scenes)}")
    questions = {split: load_questions(path / f"questions_{split}.json") for split in SPLITS}
    return CollideData(path=path, config=cfg, episode_starts=starts, splits=meta["splits"],
                       n_observed=meta["n_observed"], n_future=meta["n_future"],
                       scenes=scenes, questions=questions, **arrays)


# ---------------------------------------------------------------------------------------
# Command line: python collide_data.py --preset cpu --out data/collide-cpu
# ---------------------------------------------------------------------------------------
def main(argv=None):
    parser = build_parser(CollideConfig, COLLIDE_PRESETS, "Generate a collide VQA dataset.")
    parser.add_argument("--out", default=None, help="dataset folder (default data/collide-<preset>)")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    cfg = config_from_args(CollideConfig, COLLIDE_PRESETS, args, default_preset="cpu")
    out = args.out or f"data/collide-{args.preset or 'cpu'}"
    try:
        data = generate(cfg, out, workers=args.workers, overwrite=args.overwrite)
    except (ValueError, OSError) as err:  # DatasetError is a ValueError
        sys.exit(f"error: {error_line(err)}")
    print(f"wrote {data.path}: {len(data.scenes)} videos, {len(data.pixels)} frames, "
          f"{data.pixels.nbytes / 2**20:.0f} MiB of pixels")
    for split, scenes in data.questions.items():
        counts = {t: s["questions"] for t, s in question_stats(scenes).items()}
        print(f"{split}: {counts}")


if __name__ == "__main__":
    main()
