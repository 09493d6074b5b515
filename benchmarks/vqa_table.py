"""Per-type VQA accuracy, mean +/- std over seeds, from the JSON files ``vqa.py`` wrote.

    python benchmarks/vqa_table.py runs/collide-cpu-m0 runs/collide-cpu-m4 [--split val]

Each argument is a run folder holding ``vqa-seed<k>.json`` files (``vqa.py --run RUN
--seed k``) or one such file. Prints a markdown table: descriptive per question;
explanatory, predictive and counterfactual per option / per question; the pooled average.
"""

import argparse
import json
from pathlib import Path

import numpy as np

TYPES = ("descriptive", "explanatory", "predictive", "counterfactual", "all")


def result_files(path):
    path = Path(path)
    files = sorted(path.glob("vqa-seed*.json")) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"no vqa-seed*.json in {path}: run python vqa.py --run {path} --seed 0")
    return files


def cell(values):
    values = 100 * np.asarray(values, dtype=float)
    return f"{values.mean():.1f} +/- {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or vqa JSON files")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args()
    print("| run | seeds | " + " | ".join(TYPES) + " |")
    print("|---|---|" + "---|" * len(TYPES))
    for run in args.runs:
        results = [json.loads(f.read_text())[args.split] for f in result_files(run)]
        cells = []
        for kind in TYPES:
            per_question = cell([r[kind]["question"] for r in results])
            if kind == "descriptive":
                cells.append(per_question)
            else:
                cells.append(f"{cell([r[kind]['option'] for r in results])} / {per_question}")
        print(f"| {run} | {len(results)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
