"""The masking test's numbers as one markdown table: mean +/- std over seeds, one row per M.

    python diagnostics/masking_table.py runs/mtest-m*-s*
    python diagnostics/masking_table.py runs/mtest-m[01]-s* runs/mtest30-m[01]-s* runs/mtest60-m*-s* \
        --plot docs/masking_budget.png

Reads each run's masking-test.json (diagnostics/masking_test.py) and groups the runs by M, and
by training budget where the runs have more than one: epochs, or videos and epochs where the
runs were trained on datasets of different sizes; a run with a probe (config.PROBES, such as
--history-weight) gets a row of its own. ``--plot`` also draws three of the numbers
against the budget, one line per M through the seeds' mean, each seed a dot.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from config import PROBE_DEFAULTS  # noqa: E402
from files import atomic_write_png  # noqa: E402

COLUMNS = [  # (header, the key path of each number in a masking-test.json)
    ("in a collision: model / const. velocity / no motion (px)", [("interaction_px", "model, collision"),
     ("interaction_px", "constant velocity, collision"), ("interaction_px", "no motion, collision")]),
    ("no collision: model / const. velocity (px)", [("interaction_px", "model, no collision"),
                                                     ("interaction_px", "constant velocity, no collision")]),
    ("counterfactual: intervened / not intervened / no motion (px)", [("counterfactual_px", k) for k in
                                                                      ("intervened", "not intervened", "no motion")]),
    ("attention AUROC, A in the future / in the history", [("attention", "future", "auroc"),
                                                           ("attention", "history", "auroc")]),
    ("future AUROC: closeness alone / closeness, attention at a like distance", [
        ("attention", "future", "closeness auroc"), ("attention", "future", "closeness at a like distance"),
        ("attention", "future", "distance-matched auroc")]),
    ("partner share, future / uniform", [("attention", "future", "partner share"),
                                         ("attention", "future", "uniform share")]),
    ("A hidden in the history, its contacts there: attention AUROC / closeness, attention at a like "
     "distance", [("attention", "history contacts", "auroc"),
                  ("attention", "history contacts", "closeness at a like distance"),
                  ("attention", "history contacts", "distance-matched auroc")]),
    ("A's history hidden, A in a contact there: hidden frames filled in / by frame 0 velocity; forecast, "
     "hidden / visible (px)", [("hidden_history_px", f"{part}, history contact") for part in (
         "hidden frames, filled in", "hidden frames, frame 0 velocity", "forecast, hidden", "forecast, visible")]),
]


def dig(result, path):
    """The number at ``path`` in a masking-test.json, or None where an older one lacks it."""
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def cell(values):
    """'mean +/- std' over the seeds; the number alone for one seed or where every seed gives
    the same one (the baselines, which see the same data); '-' where no run has it."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if np.allclose(values, values[0], rtol=1e-9, atol=0):  # equal but for rounding: no "+/- 3.6e-15"
        return f"{values[0]:.3g}"
    return f"{np.mean(values):.3g} +/- {np.std(values):.2g}"


def budget_cells(budget):
    """A budget's table cells: [epochs], or [videos, epochs] where the runs' data sizes differ."""
    return [f"{budget[0]:,}", f"{budget[1]}"] if isinstance(budget, tuple) else [f"{budget}"]


def group(result):
    """The row a run belongs in besides its budget: its M, and the probes it sets (config.PROBES;
    an older run has none)."""
    probed = {name: result["config"][name] for name, paper in PROBE_DEFAULTS.items()
              if result["config"].get(name, paper) != paper}
    probes = [f"{name.replace('_', ' ')} {f'{v:g}' if isinstance(v, float) else v}" for name, v in probed.items()]
    return f"{result['masked']} ({', '.join(probes)})" if probes else result["masked"]


def in_order(keys):
    """(budget, group) keys sorted; a group is an M or an M with its probe."""
    return sorted(keys, key=lambda key: (key[0], str(key[1])))


def rows(results, budgets=False):
    """Markdown rows, one per M (and budget), from {(budget, M): [masking-test.json dicts]}; a
    budget is the epochs, or (videos, epochs)."""
    return ["| " + " | ".join((budget_cells(budget) if budgets else []) + [f"{m}", f"{len(results[budget, m])}"] + [
        " / ".join(cell([dig(r, path) for r in results[budget, m]]) for path in paths) for _, paths in COLUMNS])
        + " |" for budget, m in in_order(results)]


PLOTTED = [  # (panel title, key path, reference lines: (a number or a key path, label))
    ("attention AUROC, future frames", ("attention", "future", "auroc"), [(0.5, "chance")]),
    ("the same at a like distance", ("attention", "future", "distance-matched auroc"),
     [(0.5, "chance"), (("attention", "future", "closeness at a like distance"), "closeness")]),
    ("forecast without a collision (px)", ("interaction_px", "model, no collision"), []),
]
M_COLOURS = [(40, 40, 40), (200, 60, 40), (40, 110, 200), (120, 160, 40), (150, 70, 170)]
PANEL_W, PANEL_H, MARGIN = 250, 190, 70


def numbers(group, path):
    """The finite numbers at ``path`` in a list of masking-test.json dicts (an AUROC with no pair
    to rank is NaN; an older file may lack the key)."""
    return [float(v) for r in group if (v := dig(r, path)) is not None and np.isfinite(v)]


def plot(results, out):
    """One panel per PLOTTED number: x the budgets (evenly spaced), y the number; per M a line
    through the seeds' means and a dot per seed. Returns {(panel, M): [(budget, mean), ...]}."""
    budgets = sorted({budget for budget, _ in results})
    masked = sorted({m for _, m in results}, key=str)
    every = [r for group in results.values() for r in group]
    image = Image.new("RGB", (len(PLOTTED) * (PANEL_W + MARGIN) + MARGIN, PANEL_H + 2 * MARGIN + 20), "white")
    draw = ImageDraw.Draw(image)
    means = {}
    for i, (title, path, references) in enumerate(PLOTTED):
        x0, y0 = MARGIN + i * (PANEL_W + MARGIN), MARGIN
        draw.text((x0, y0 - 28), title, fill=(0, 0, 0))
        draw.rectangle([x0, y0, x0 + PANEL_W, y0 + PANEL_H], outline=(160, 160, 160))
        values = numbers(every, path)
        if not values:
            draw.text((x0 + 8, y0 + PANEL_H / 2), "no run has this number", fill=(120, 120, 120))
            continue
        lines = [(ref, label) if isinstance(ref, (int, float)) else (np.mean(numbers(every, ref)), label)
                 for ref, label in references if isinstance(ref, (int, float)) or numbers(every, ref)]
        low, high = min(values + [v for v, _ in lines]), max(values + [v for v, _ in lines])
        pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
        low, high = low - pad, high + pad
        x_at = {b: x0 + (j + 0.5) * PANEL_W / len(budgets) for j, b in enumerate(budgets)}
        y_at = lambda v: y0 + PANEL_H * (high - v) / (high - low)  # noqa: E731
        for v in (low, high):
            draw.text((x0 - 44, y_at(v) - 6), f"{v:.3g}", fill=(90, 90, 90))
        for b in budgets:
            label = " x ".join(budget_cells(b))
            draw.text((x_at[b] - 3 * len(label), y0 + PANEL_H + 4), label, fill=(90, 90, 90))
        axis = "videos x epochs" if isinstance(budgets[0], tuple) else "epochs"
        draw.text((x0 + PANEL_W / 2 - 3 * len(axis), y0 + PANEL_H + 16), axis, fill=(90, 90, 90))
        for value, label in lines:   # dashed
            y = y_at(value)
            for x in range(int(x0), int(x0 + PANEL_W), 8):
                draw.line([x, y, x + 4, y], fill=(160, 160, 160))
            draw.text((x0 + 4, y - 12), f"{label} {value:.3g}", fill=(120, 120, 120))
        for k, m in enumerate(masked):
            colour = M_COLOURS[k % len(M_COLOURS)]
            means[i, m] = []
            for b in budgets:
                seeds = numbers(results.get((b, m), []), path)
                for v in seeds:
                    draw.ellipse([x_at[b] - 2, y_at(v) - 2, x_at[b] + 2, y_at(v) + 2], fill=colour)
                if seeds:
                    means[i, m].append((b, float(np.mean(seeds))))
            points = [(x_at[b], y_at(v)) for b, v in means[i, m]]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.rectangle([x - 4, y - 1, x + 4, y + 1], fill=colour)
    for k, m in enumerate(masked):   # the legend
        x = MARGIN + k * 70
        draw.rectangle([x, PANEL_H + 2 * MARGIN + 6, x + 14, PANEL_H + 2 * MARGIN + 8], fill=M_COLOURS[k % len(M_COLOURS)])
        draw.text((x + 18, PANEL_H + 2 * MARGIN + 1), f"M = {m}", fill=(0, 0, 0))
    atomic_write_png(Path(out), image)
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders of masking_test.py")
    parser.add_argument("--plot", help="also draw the numbers against the training budget into this PNG")
    args = parser.parse_args(argv)
    found = []
    for run in args.runs:
        path = Path(run) / "masking-test.json"
        if not path.is_file():
            sys.exit(f"error: {path} is missing: run diagnostics/masking_test.py --out {run} first")
        found.append(json.loads(path.read_text()))
    sizes = len({r["config"]["episodes"] for r in found}) > 1
    results = defaultdict(list)
    for r in found:
        budget = (r["config"]["episodes"], r["config"]["epochs"]) if sizes else r["config"]["epochs"]
        results[budget, group(r)].append(r)
    budgets = len({budget for budget, _ in results}) > 1
    print("| " + ("videos | " if sizes else "") + ("epochs | " if budgets else "") + "M | seeds | "
          + " | ".join(h for h, _ in COLUMNS) + " |")
    print("|" + "---|" * (sizes + budgets + 2 + len(COLUMNS)))
    print("\n".join(rows(results, budgets)))
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
