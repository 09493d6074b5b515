"""The masking test's numbers as one markdown table: mean +/- std over seeds, one row per M.

    python diagnostics/masking_table.py runs/mtest-m*-s*

Reads each run's masking-test.json (diagnostics/masking_test.py) and groups the runs by M.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

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
]


def dig(result, path):
    """The number at ``path`` in a masking-test.json, or None where an older one lacks it."""
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def cell(values):
    """'mean' for one seed, 'mean +/- std' for several; '-' where no run has it."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    spread = 0.0 if np.allclose(values, values[0], rtol=1e-9, atol=0) else np.std(values)  # no 3.6e-15
    return f"{np.mean(values):.3g} +/- {spread:.2g}"


def rows(results):
    """Markdown rows, one per M, from {M: [masking-test.json dicts]}."""
    return ["| " + " | ".join([f"{m}", f"{len(results[m])}"] + [
        " / ".join(cell([dig(r, path) for r in results[m]]) for path in paths) for _, paths in COLUMNS]) + " |"
        for m in sorted(results)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders of masking_test.py")
    args = parser.parse_args(argv)
    results = defaultdict(list)
    for run in args.runs:
        path = Path(run) / "masking-test.json"
        if not path.is_file():
            sys.exit(f"error: {path} is missing: run diagnostics/masking_test.py --out {run} first")
        result = json.loads(path.read_text())
        results[result["masked"]].append(result)
    print("| M | seeds | " + " | ".join(h for h, _ in COLUMNS) + " |")
    print("|" + "---|" * (2 + len(COLUMNS)))
    print("\n".join(rows(results)))


if __name__ == "__main__":
    main()
