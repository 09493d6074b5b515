"""Per-type VQA accuracy, mean +/- std over seeds, from the files ``vqa.py`` wrote.

    python diagnostics/vqa_table.py runs/collide-cpu-m0 runs/collide-cpu-m4 [--split val]
    python diagnostics/vqa_table.py runs/collide-cpu-m4/vqa-seed0.pt --curve

Each argument is a run folder holding ``vqa-seed<k>.json`` files (``vqa.py --run RUN
--seed k``) or one such file. Prints a markdown table: descriptive per question;
explanatory, predictive and counterfactual per option / per question; the pooled average.
The std is over seeds (population std, numpy's default).

``--curve`` prints instead the validation scores logged every ``--val-every`` steps of each
training, with the mean multiple-choice and descriptive training losses of the steps since
the previous row. It also reads a ``vqa-seed<k>.pt`` training state, so an unfinished run
can be followed.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from files import load_weights  # noqa: E402

TYPES = ("descriptive", "explanatory", "predictive", "counterfactual", "all")


def result_files(path, curve=False):
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("vqa-seed*.json"))
        if curve:  # unfinished runs have only their training state
            files += [f for f in sorted(path.glob("vqa-seed*.pt")) if not f.with_suffix(".json").is_file()]
    else:
        files = [path]
    if not files:
        kinds = "vqa-seed*.json or .pt" if curve else "vqa-seed*.json"
        raise SystemExit(f"no {kinds} in {path}: run python vqa.py --run {path} --seed 0")
    if not curve and any(f.suffix != ".json" for f in files):
        raise SystemExit(f"{path}: scores are read from vqa.py's .json results (a .pt only with --curve)")
    return files


def read_log(path):
    """The training log of a vqa.py result (.json) or training state (.pt)."""
    path = Path(path)
    if path.suffix == ".pt":
        return load_weights(path)["log"]
    return json.loads(path.read_text())["log"]


def cell(values):
    values = 100 * np.asarray(values, dtype=float)
    return f"{values.mean():.1f} +/- {values.std():.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def score_cells(results):
    """One table cell per type over a list of ``vqa_model.score`` dicts (one per seed)."""
    cells = []
    for kind in TYPES:
        per_question = cell([r[kind]["question"] for r in results])
        if kind == "descriptive":
            cells.append(per_question)
        else:
            cells.append(f"{cell([r[kind]['option'] for r in results])} / {per_question}")
    return cells


def curve_rows(log):
    """(step, choice loss, descriptive loss, score cells) at each validation entry of a log;
    the losses are means over the training steps since the previous validation (nan if the
    kind was not trained)."""
    rows, since = [], []
    for entry in log:
        if "val" in entry:
            losses = [np.mean([e.get(k, np.nan) for e in since]) if since else np.nan
                      for k in ("choice_loss", "descriptive_loss")]
            rows.append((entry["step"], *losses, score_cells([entry["val"]])))
            since = []
        else:
            since.append(entry)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or vqa JSON files (.pt too with --curve)")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--curve", action="store_true", help="validation scores during training")
    args = parser.parse_args()
    if args.curve:
        print("| file | step | choice loss | descriptive loss | " + " | ".join(TYPES) + " |")
        print("|---|---|---|---|" + "---|" * len(TYPES))
        for run in args.runs:
            for f in result_files(run, curve=True):
                for step, choice, descriptive, cells in curve_rows(read_log(f)):
                    print(f"| {f} | {step} | {choice:.3f} | {descriptive:.3f} | " + " | ".join(cells) + " |")
        return
    print("| run | seeds | " + " | ".join(TYPES) + " |")
    print("|---|---|" + "---|" * len(TYPES))
    for run in args.runs:
        results = [json.loads(f.read_text())[args.split] for f in result_files(run)]
        print(f"| {run} | {len(results)} | " + " | ".join(score_cells(results)) + " |")


if __name__ == "__main__":
    main()
