"""A trained VQA head's descriptive accuracy per kind of question.

    python diagnostics/vqa_templates.py --run runs/collide20k-sres-m4 [RUN ...] --seed 0 [--split val]

The collide world asks a few kinds of descriptive question ("How many objects are there?",
"What shape is the blue object?", ...). This scores the finished head RUN/vqa-seed<S>.pt
on each kind apart, beside that kind's prior (its most common answer in the train split),
so one sees which kinds the head learned beyond guessing; each further ``--run`` adds a
column for its own head (e.g. the M = 0 run beside M = 4). A question's kind is its text
with every colour, shape and number word replaced by a placeholder.
"""

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from collision import COLORS, SHAPES  # noqa: E402
from vqa import build_model, head_input, predict, run_slots  # noqa: E402
from vqa_model import question_examples  # noqa: E402
from vqa_future import load_head  # noqa: E402


def kind_of(words, names):
    """A question's kind: its words (names[id] for each id) with colours, shapes and numbers
    replaced by <colour>, <shape> and <n>."""
    out = []
    for word in (names[i] for i in words):
        out.append("<colour>" if word in COLORS else "<shape>" if word in SHAPES else
                   "<n>" if word.isdigit() else word)
    return " ".join(out)


def kind_scores(guesses, examples, train_examples, names):
    """{kind: (questions, head accuracy, prior accuracy)} over descriptive ``examples``, with
    guesses[i] the head's answer id for examples[i] and the prior the kind's most common
    training answer (a kind unseen in training has prior accuracy 0)."""
    common = defaultdict(Counter)
    for e in train_examples:
        common[kind_of(e.question, names)][e.answer] += 1
    hits = defaultdict(list)
    for guess, e in zip(guesses, examples):
        kind = kind_of(e.question, names)
        prior = common[kind].most_common(1)[0][0] if common[kind] else None
        hits[kind].append((guess == e.answer, prior == e.answer))
    return {kind: (len(h), sum(a for a, _ in h) / len(h), sum(b for _, b in h) / len(h))
            for kind, h in sorted(hits.items())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, nargs="+",
                        help="train.py --dataset collide runs with a finished VQA head")
    parser.add_argument("--seed", type=int, default=0, help="the head: RUN/vqa-seed<seed>.pt")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args(argv)
    table = {}
    try:
        for run in args.run:
            head = Path(run) / f"vqa-seed{args.seed}.pt"
            cfg, ckpt = load_head(head)
            slots, data, n_observed = run_slots(run, every_offset=cfg.every_offset)
            vocab, answers, examples = question_examples(data, cfg.max_words)
            slots, observed = head_input(cfg, slots, n_observed)   # read as the head was trained
            if list(slots.shape) != ckpt["config"].get("slots_shape"):
                raise ValueError(f"{head} was trained on slots of shape {ckpt['config'].get('slots_shape')}, "
                                 f"but {run} gives {list(slots.shape)}")
            model = build_model(cfg, slots.shape[-1], len(vocab), len(answers), slots.shape[1], slots.shape[2])
            model.load_state_dict(ckpt["model"])
            wanted = {"descriptive": examples[args.split]["descriptive"], "choice": []}
            guesses = predict(model, slots, wanted, cfg.batch_size, "cpu", cfg.precision, observed,
                              cfg.sample_frames)["descriptive"]
            names = {i: w for w, i in vocab.items()}
            table[run] = kind_scores(guesses, wanted["descriptive"], examples["train"]["descriptive"], names)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    kinds = sorted({k for scores in table.values() for k in scores})
    print(f"descriptive questions of {args.split}, heads vqa-seed{args.seed}, accuracy %")
    print("| kind | questions | prior | " + " | ".join(args.run) + " |")
    print("|---|---|---|" + "---|" * len(args.run))
    for kind in kinds:
        first = next(scores[kind] for scores in table.values() if kind in scores)
        cells = [f"{scores[kind][1]:.1%}" if kind in scores else "-" for scores in table.values()]
        print(f"| {kind} | {first[0]} | {first[2]:.1%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
