"""How much does the block move in a Push-T dataset, and how far are the protocol's goals?

    python diagnostics/data_motion.py --data data/pusht-A [data/pusht-B ...] [--figure docs/expert.png]

For each dataset (every episode, both splits): the share of env steps in which the block
moves (more than 0.5 px or 0.005 rad), and the block's displacement and turn over 25 steps,
the protocol's goal offset (median and 90th percentile over every start of every episode),
with the share of those 25-step pairs whose goal needs a push (block 20 px or 20 degrees or
more away, as plan.py counts them), and the share of episodes in which the block's outline
goes more than 16 px past a wall's inner face (a kinematic agent can squeeze it through). ``--figure`` draws the first ``--episodes`` episodes of
the first dataset: the block's outline every 15 steps, light to dark, and the agent's path.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import load_dataset  # noqa: E402
from pusht import GOAL_POSE, INNER_HIGH, INNER_LOW, WORLD_SIZE, tee_polygon, wrap_angle  # noqa: E402

GOAL_OFFSET = 25
THROUGH_WALL = 16.0     # px past a wall's inner face that count as pushed through it


def motion_stats(data, offset=GOAL_OFFSET):
    """{"moving", "shift_median", "shift_p90", "turn_median_deg", "turn_p90_deg", "needs_push",
    "through_wall"}."""
    moving, shift, turn, through = [], [], [], []
    for e in range(len(data.episode_starts) - 1):
        s = np.asarray(data.state[data.episode_starts[e]:data.episode_starts[e + 1]], np.float64)
        step = np.linalg.norm(np.diff(s[:, 2:4], axis=0), axis=1)
        spin = np.abs(wrap_angle(np.diff(s[:, 4])))
        moving.append((step > 0.5) | (spin > 0.005))
        outline = np.array([tee_polygon(*pose, 1.0) for pose in s[:, 2:5]])       # (T, 8, 2)
        through.append(max(INNER_LOW - outline.min(), outline.max() - INNER_HIGH) > THROUGH_WALL)
        if len(s) > offset:
            shift.append(np.linalg.norm(s[offset:, 2:4] - s[:-offset, 2:4], axis=1))
            turn.append(np.degrees(np.abs(wrap_angle(s[offset:, 4] - s[:-offset, 4]))))
    moving, shift, turn = np.concatenate(moving), np.concatenate(shift), np.concatenate(turn)
    return {"moving": float(moving.mean()), "shift_median": float(np.median(shift)),
            "shift_p90": float(np.percentile(shift, 90)), "turn_median_deg": float(np.median(turn)),
            "turn_p90_deg": float(np.percentile(turn, 90)), "needs_push": float(((shift >= 20) | (turn >= 20)).mean()),
            "through_wall": float(np.mean(through))}


def draw_episodes(data, episodes, size=256, every=15):
    """One panel per episode: the block every ``every`` steps (light to dark), the agent's path."""
    scale = size / WORLD_SIZE
    panels = []
    for e in episodes:
        s = np.asarray(data.state[data.episode_starts[e]:data.episode_starts[e + 1]], np.float64)
        img = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        draw.polygon(tee_polygon(*GOAL_POSE, scale), outline=(144, 238, 144))
        frames = range(0, len(s), every)
        for k, t in enumerate(frames):
            shade = int(200 - 170 * k / max(len(frames) - 1, 1))
            draw.polygon(tee_polygon(*s[t, 2:5], scale), outline=(shade, shade, min(255, shade + 40)))
        draw.line([(x * scale, y * scale) for x, y in s[:, :2]], fill=(65, 105, 225), width=2)
        x, y = s[0, :2] * scale
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(220, 60, 60))   # where the agent starts
        panels.append(img)
    strip = Image.new("RGB", (size * len(panels) + 4 * (len(panels) - 1), size), (128, 128, 128))
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * (size + 4), 0))
    return strip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="Push-T dataset folders")
    parser.add_argument("--figure", default=None, help="a PNG of the first dataset's first episodes")
    parser.add_argument("--episodes", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        datasets = [load_dataset(path) for path in args.data]
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    print("| data | policy | block moves in % of steps | shift over 25 steps, median / p90 (px) "
          "| turn over 25 steps, median / p90 (deg) | 25-step goals that need a push (%) "
          "| episodes with the block through a wall (%) |")
    print("|---|---|---|---|---|---|---|")
    for path, data in zip(args.data, datasets):
        m = motion_stats(data)
        print(f"| `{path}` | {data.config.policy} | {100 * m['moving']:.1f} | {m['shift_median']:.0f} / "
              f"{m['shift_p90']:.0f} | {m['turn_median_deg']:.0f} / {m['turn_p90_deg']:.0f} | "
              f"{100 * m['needs_push']:.1f} | {100 * m['through_wall']:.1f} |")
    if args.figure:
        draw_episodes(datasets[0], range(min(args.episodes, len(datasets[0].episode_starts) - 1))).save(args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
