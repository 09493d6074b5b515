"""Pictures of the masking test: counterfactual rollouts, and attention beside the collision log.

    python diagnostics/masking_figure.py --runs runs/mtest-m0-s0 runs/mtest-m1-s0 --out docs/masking.png

Top: one row per counterfactual case of the validation videos (the first ``--cases``, as
diagnostics/masking_test.py scores them). Panels: the factual future; the world re-simulated
without X; then each run's rollout after X was taken out of its history. Each object is drawn
where it is at the last history frame (a ring) and along its path to the end of the video
(dots every model frame). X is the crossed ring of the first panel. In the model panels the
re-simulated paths are drawn in grey underneath: a rollout that has learned what X did puts its
coloured dots on them.

Bottom: one window of a validation video with collisions in its predicted frames. For each run
the share of object A's attention (A hidden in the future frames, a row) going to each other
object B (a column), scaled within the row from white (the object A attends to least) to black
(most; the ranking masking_test.py's AUROC scores), beside the collision log of the window (black: A and B
begin a collision there), the quantitative form of which is masking_test.py's AUROC.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from collision import COLORS, WORLD_SIZE  # noqa: E402
from common import config_from_dict  # noqa: E402
from config import TrainConfig, build_predictor, load_checkpoint, open_dataset  # noqa: E402
from files import atomic_write_png, read_json  # noqa: E402
from masking_test import (STATE_DIM, attention_shares, counterfactual_cases, counterfactual_rollouts,  # noqa: E402
                          positions)
from oracle_slots import object_states  # noqa: E402

PANEL, CELL, GREY = 180, 22, (200, 200, 200)


def load_run(run):
    """(config, predictor in eval mode, data folder) of a masking_test.py run folder."""
    info = read_json(Path(run) / "config.json")
    cfg = config_from_dict(TrainConfig, info["config"])
    predictor = build_predictor(cfg)
    predictor.load_state_dict(load_checkpoint(Path(run) / "predictor.pt", info["config"])["model"])
    return cfg, predictor.eval(), info["data"]


def draw_paths(draw, origin, paths, start, colours, under=None, crossed=None):
    """One panel at ``origin``: per object k, a ring at start[k] and dots along paths[:, k]
    (positions in px of the world); ``under``: grey paths drawn first; ``crossed``: an object
    drawn as a crossed ring."""
    scale = PANEL / WORLD_SIZE
    x0, y0 = origin
    draw.rectangle([x0, y0, x0 + PANEL - 1, y0 + PANEL - 1], outline=(0, 0, 0))
    at = lambda p: (x0 + p[0] * scale, y0 + p[1] * scale)  # noqa: E731
    for k in range(start.shape[0]):
        if under is not None:
            for p in under[:, k]:
                cx, cy = at(p)
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=GREY)
    for k, colour in enumerate(colours):
        if paths is not None and k != crossed:
            for p in paths[:, k]:
                cx, cy = at(p)
                draw.ellipse([cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5], fill=colour)
        cx, cy = at(start[k])
        draw.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], outline=colour, width=2)
        if k == crossed:
            draw.line([cx - 8, cy - 8, cx + 8, cy + 8], fill=(0, 0, 0), width=2)
            draw.line([cx - 8, cy + 8, cx + 8, cy - 8], fill=(0, 0, 0), width=2)


def collision_window(states, scenes, videos, cfg):
    """(video, real frames of the window): the first window of ``videos`` in which two
    different pairs of objects begin a collision in the predicted frames, or failing that the
    first with one."""
    fs, h, f = cfg.frameskip, cfg.n_history, cfg.n_future
    first_with_one = None
    for v in videos:
        for start in range(0, states.shape[1] - (h + f - 1) * fs, 2):
            real = start + fs * np.arange(h + f)
            pairs = {(a, b) for t, a, b in scenes[v]["collisions"] if real[h - 1] < t <= real[-1]}
            if len(pairs) >= 2:
                return v, real
            if pairs and first_with_one is None:
                first_with_one = (v, real)
    if first_with_one is None:
        raise ValueError("no validation window has a collision in its predicted frames")
    return first_with_one


def draw_grid(draw, origin, values, colours, title):
    """A K x K grid of ``values`` in [0, 1] (darker for more) with the objects' colours along the
    rows and columns."""
    x0, y0 = origin
    draw.text((x0, y0 - 14), title, fill=(0, 0, 0))
    K = values.shape[0]
    for k, colour in enumerate(colours):
        draw.rectangle([x0 + (k + 1) * CELL, y0, x0 + (k + 2) * CELL - 2, y0 + CELL - 2], fill=colour)
        draw.rectangle([x0, y0 + (k + 1) * CELL, x0 + CELL - 2, y0 + (k + 2) * CELL - 2], fill=colour)
    for a in range(K):
        for b in range(K):
            shade = int(255 * (1 - values[a, b]))
            box = [x0 + (b + 1) * CELL, y0 + (a + 1) * CELL, x0 + (b + 2) * CELL - 2, y0 + (a + 2) * CELL - 2]
            draw.rectangle(box, fill=(shade, shade, shade), outline=GREY)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="masking_test.py run folders (e.g. M = 0 and M = 1)")
    parser.add_argument("--cases", type=int, default=4, help="counterfactual cases, one row each")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error(f"--cases must be at least 1, got {args.cases}")
    runs = [load_run(run) for run in args.runs]
    cfg, _, folder = runs[0]
    if any(other[2] != folder for other in runs):
        sys.exit("error: the runs were trained on different datasets")
    data = open_dataset(cfg, folder)
    states = object_states(data.scenes, STATE_DIM)
    videos = data.episodes("val")
    labels = ["factual", "without X"] + [f"M = {run_cfg.masked}, X removed" for run_cfg, _, _ in runs]

    cases = list(counterfactual_cases(states, data.scenes, videos, cfg, args.cases))
    K = states.shape[2]
    grid_height = (K + 2) * CELL + 30
    image = Image.new("RGB", (len(labels) * (PANEL + 10) + 10, 20 + len(cases) * (PANEL + 10) + grid_height),
                      "white")
    draw = ImageDraw.Draw(image)
    for i, label in enumerate(labels):
        draw.text((10 + i * (PANEL + 10), 4), label, fill=(0, 0, 0))
    for row, (v, x, model_frames, cf, moved) in enumerate(cases):
        h, n = cfg.n_history, len(data.scenes[v]["objects"])
        colours = [COLORS[obj["color"]] for obj in data.scenes[v]["objects"]]
        start = positions(states[v, model_frames[h - 1], :n])
        factual = positions(states[v, model_frames[h:], :n])
        y = 20 + row * (PANEL + 10)
        draw_paths(draw, (10, y), factual, start, colours, crossed=x)
        without = np.nan_to_num(cf[:, :n])
        keep = [k for k in range(n) if k != x]
        draw_paths(draw, (20 + PANEL, y), without[:, keep], start[keep], [colours[k] for k in keep])
        for i, (run_cfg, predictor, _) in enumerate(runs):
            rolled = positions(counterfactual_rollouts(predictor, states, v, x, model_frames, run_cfg)["intervened"][:, :n])
            draw_paths(draw, (10 + (i + 2) * (PANEL + 10), y), rolled[:, keep], start[keep],
                       [colours[k] for k in keep], under=without[:, keep])

    try:
        v, real = collision_window(states, data.scenes, videos, cfg)
    except ValueError as err:
        sys.exit(f"error: {err}")
    h, n = cfg.n_history, len(data.scenes[v]["objects"])
    colours = [COLORS[obj["color"]] for obj in data.scenes[v]["objects"]]
    window = torch.from_numpy(states[v, real][None]).clone()
    window[:, h:] = 0
    present = states[v, real[h - 1], :, 0][None] > 0
    log = np.zeros((n, n))
    for t, a, b in data.scenes[v]["collisions"]:
        if real[h - 1] < t <= real[-1]:
            log[a, b] = log[b, a] = 1
    y = 20 + len(cases) * (PANEL + 10) + 20
    draw_grid(draw, (10, y), log, colours, "collision log")
    for i, (run_cfg, predictor, _) in enumerate(runs):
        shares = np.stack([attention_shares(predictor, window, present, a, "future", h)[0, :n] for a in range(n)])
        others = ~np.eye(n, dtype=bool)
        low = np.where(others, shares, np.inf).min(axis=1, keepdims=True)
        high = np.where(others, shares, -np.inf).max(axis=1, keepdims=True)
        draw_grid(draw, (10 + (i + 1) * (PANEL + 10), y), np.where(others, (shares - low) / (high - low + 1e-12), 0),
                  colours, f"M = {run_cfg.masked}: attention of A (row)")
    out = Path(args.out)
    atomic_write_png(out, image)
    print(f"wrote {out}: {len(cases)} counterfactual cases, attention on video {v}, frames {real.tolist()}")


if __name__ == "__main__":
    main()
