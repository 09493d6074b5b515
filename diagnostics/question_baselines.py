"""How far the collide questions can be answered without simulating anything.

    python diagnostics/question_baselines.py --data data/collide-<hash> [--split val]

Scores rule-based answerers of the multiple-choice questions with vqa.py's scorer, each
reading only the factual video's collision log (what a perfect perception model could
extract from the frames it sees):
- "prior": every choice answered with its type's more common answer in the train split.
- "factual": counterfactual "without X, A and B collide" is answered yes iff A and B
  collide in the factual video; explanatory "X is responsible for the A-B collision" yes
  iff X touched A or B before it; predictive "A collides with B" yes iff they collided
  while observed.
- "causal chain": counterfactual yes iff A and B collide in the factual video and that
  collision is not downstream of X (X, or an object X has touched, touched A or B
  before it); no new collisions are ever predicted. Explanatory yes iff X is upstream of
  the A-B collision along the same chains. Predictive as "factual".
A gap between these and the oracle head (diagnostics/oracle_slots.py) is what a head has
to learn beyond reading the collision log: the changed trajectories of the world
without X.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from questions import load_questions  # noqa: E402
from vqa_model import MULTIPLE_CHOICE, Choice, format_table, score  # noqa: E402


def names_of(scene):
    return [f"the {o['color']} {o['shape']}" for o in scene["objects"]]


def downstream(collisions, source, until):
    """Objects touched, directly or through a chain of contacts, by ``source`` up to frame
    ``until``: {object: frame it was first reached}, ``source`` at -1. Contacts logged at
    the same frame may have happened in either order, so they count as a chain."""
    reached = {source: -1}
    for frame, a, b in sorted(collisions):
        if frame > until:
            break
        for u, v in ((a, b), (b, a)):
            if u in reached and reached[u] <= frame and v not in reached:
                reached[v] = frame
    return reached


def first_collision(collisions, pair, start=0, stop=None):
    frames = [f for f, a, b in collisions if (a, b) == pair and f >= start and (stop is None or f < stop)]
    return min(frames) if frames else None


def parse_pair(text, names):
    """'The red circle and the blue square collide' / '... collides with ...' -> (a, b), a < b."""
    text = text.lower().rstrip(".?")
    for sep, tail in ((" and ", " collide"), (" collides with ", "")):
        if sep in text:
            left, right = text.removesuffix(tail).split(sep)
            a, b = names.index(left), names.index(right)
            return (min(a, b), max(a, b))
    raise ValueError(f"not a collision event: {text!r}")


def answer(rule, question, choice, scene, n_observed):
    """True (correct) or False (wrong) for one choice, by ``rule`` (factual | causal)."""
    names, collisions = names_of(scene), [tuple(c) for c in scene["collisions"]]
    kind = question["question_type"]
    if kind == "predictive":
        return first_collision(collisions, parse_pair(choice, names), 0, n_observed) is not None
    if kind == "explanatory":
        text = question["question"].lower().rstrip("?")
        pair = parse_pair(text.split("the collision between ")[1] + " collide", names)
        x = names.index(choice.lower().removeprefix("the presence of ").rstrip("."))
        when = first_collision(collisions, pair, 0, n_observed)
        if when is None:
            return False
        if rule == "factual":
            return any(first_collision(collisions, tuple(sorted((x, o))), 0, when) is not None for o in pair)
        reached = downstream(collisions, x, when)
        return any(o in reached for o in pair)
    x = names.index(question["question"].lower().removeprefix("without ").split(",")[0])
    pair = parse_pair(choice, names)
    when = first_collision(collisions, pair)
    if when is None:
        return False
    if rule == "factual":
        return True
    reached = downstream(collisions, x, when)
    return not any(o in reached for o in pair)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a collide dataset folder (collide_data.py)")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    path = Path(args.data)
    meta = json.loads((path / "meta.json").read_text())
    scenes = json.loads((path / "scenes.json").read_text())
    question_scenes = load_questions(path / f"questions_{args.split}.json")

    counts = Counter()
    for scene in load_questions(path / "questions_train.json"):
        for q in scene["questions"]:
            for c in q.get("choices", []):
                counts[q["question_type"], c["answer"] == "correct"] += 1
    prior = {t: counts[t, True] > counts[t, False] for t in MULTIPLE_CHOICE}

    examples = {"descriptive": [], "choice": []}
    predictions = {rule: [] for rule in ("prior", "factual", "causal")}
    for qs in question_scenes:
        video = int(qs["scene_index"])
        for q in qs["questions"]:
            if q["question_type"] == "descriptive":
                continue
            for c in q["choices"]:
                examples["choice"].append(Choice(video, q["question_id"], q["question_type"], (), c["choice_id"],
                                                 (), int(c["answer"] == "correct")))
                predictions["prior"].append(int(prior[q["question_type"]]))
                for rule in ("factual", "causal"):
                    predictions[rule].append(int(answer(rule, q, c["choice"], scenes[video], meta["n_observed"])))
    for rule, name in (("prior", "prior"), ("factual", "factual"), ("causal", "causal chain")):
        print(f"{name} ({args.split}, multiple-choice only):")
        print(format_table(score({"descriptive": [], "choice": predictions[rule]}, examples)))
        print()


if __name__ == "__main__":
    main()
