"""Collide's questions, every answer computed from simulations (FACTS section 7).

Four kinds, as CLEVRER asks them: descriptive (one-word answer), explanatory, predictive and
counterfactual (each a list of yes / no choices). A video is ``n_observed`` frames the
question-answering model sees, then ``n_future`` held-out frames that only the predictive and
counterfactual answers look at; counterfactual answers compare the factual simulation with
the one re-simulated without an object (``collision.simulate(scene, remove=k)``). Question
files follow the schema of CLEVRER's (without "program" fields), so ``load_questions`` reads
both; the word-level vocabulary is built from them.
"""

import json
import re
from pathlib import Path

import numpy as np

from collision import COLORS, SHAPES


MOVING_SPEED = 5.0              # faster than this (units / s) counts as "moving"
QUESTION_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
CHOICES_PER_SIDE = 2            # at most this many correct and this many wrong choices


def collided_pairs(collisions, start, stop):
    """The set of pairs (a, b) with a logged collision at a frame in [start, stop)."""
    return {(a, b) for frame, a, b in collisions if start <= frame < stop}

DESCRIPTIVE_PER_VIDEO, EXPLANATORY_PER_VIDEO, COUNTERFACTUAL_PER_VIDEO = 4, 2, 2


# ---------------------------------------------------------------------------------------
# Questions, answered by simulation
# ---------------------------------------------------------------------------------------
def _name(obj):
    return f"the {obj['color']} {obj['shape']}"


def _descriptive(rng, objects, factual, n_observed):
    """(question, answer) candidates, at most one per template, about the observed frames.
    A collision is one logged contact; "moving" is faster than MOVING_SPEED at the last
    observed frame."""
    seen = collided_pairs(factual.collisions, 0, n_observed)
    out = [("How many objects are there?", str(len(objects)))]
    color = rng.choice(list(COLORS))
    out.append((f"How many {color} objects are there?",
                str(sum(o["color"] == color for o in objects))))
    out.append(("How many collisions happen?",
                str(sum(frame < n_observed for frame, _, _ in factual.collisions))))
    if rng.random() < 0.5:
        obj = objects[rng.integers(len(objects))]
        out.append((f"Is there a {obj['color']} {obj['shape']}?", "yes"))
    else:
        absent = sorted({(c, s) for c in COLORS for s in SHAPES}
                        - {(o["color"], o["shape"]) for o in objects})
        c, s = absent[rng.integers(len(absent))]
        out.append((f"Is there a {c} {s}?", "no"))
    unique = [c for c in COLORS if sum(o["color"] == c for o in objects) == 1]
    if unique:
        c = unique[rng.integers(len(unique))]
        shape = next(o["shape"] for o in objects if o["color"] == c)
        out.append((f"What shape is the {c} object?", shape))
    colliders = []   # (shape, other object, the one object of that shape that hit it)
    for b in range(len(objects)):
        for shape in SHAPES:
            hits = [a for a in range(len(objects)) if a != b and objects[a]["shape"] == shape
                    and (min(a, b), max(a, b)) in seen]
            if len(hits) == 1:
                colliders.append((shape, b, hits[0]))
    if colliders:
        shape, b, a = colliders[rng.integers(len(colliders))]
        out.append((f"What color is the {shape} that collides with {_name(objects[b])}?",
                    objects[a]["color"]))
    speed = np.hypot(*factual.velocity[n_observed - 1].T)
    out.append(("How many objects are moving when the video ends?",
                str(int((speed > MOVING_SPEED).sum()))))
    return out


def _pick_choices(rng, correct, wrong, must=None):
    """Shuffled choices [(item, is_correct)]: n correct and n wrong items, n = the smaller
    side's size up to CHOICES_PER_SIDE, or one item when a side is empty. ``must``, an
    (item, is_correct) pair whose item is in ``correct`` or ``wrong``, is always chosen."""
    sides = {True: list(correct), False: list(wrong)}
    n = min(CHOICES_PER_SIDE, len(correct), len(wrong)) or 1
    picked = []
    if must is not None:
        sides[must[1]].remove(must[0])
        picked.append(must)
    for ok, items in sides.items():
        need = n - sum(p[1] == ok for p in picked)
        picked += [(items[i], ok) for i in rng.permutation(len(items))[:need]]
    return [picked[i] for i in rng.permutation(len(picked))]


def _multiple_choice(kind, question, picked, render):
    return {"question_type": kind, "question": question,
            "choices": [{"choice_id": j, "choice": render(item),
                         "answer": "correct" if ok else "wrong"}
                        for j, (item, ok) in enumerate(picked)]}


def make_questions(rng, scene, factual, removed, n_observed):
    """The questions of one video, each answered from the simulations.

    factual: ``simulate(scene)``; removed[k]: ``simulate(scene, remove=k)``.
    - explanatory: "the collision between A and B" happens iff the pair has a logged
      collision in the observed frames; object X is responsible iff that collision does
      not happen in the observed frames of the simulation without X.
    - predictive: "A collides with B" is correct iff the pair has a logged collision in
      the future frames (whether or not it also collided while observed).
    - counterfactual: "A and B collide" without X is correct iff the pair has a logged
      collision anywhere in the simulation without X; each question has at least one
      choice whose answer differs from the factual video's.
    A question that cannot be made valid for this video is skipped.
    """
    objects, n_frames = scene["objects"], scene["n_frames"]
    names = [_name(o) for o in objects]
    pairs = [(a, b) for a in range(len(objects)) for b in range(a + 1, len(objects))]
    questions = []
    candidates = _descriptive(rng, objects, factual, n_observed)
    for i in rng.permutation(len(candidates))[:DESCRIPTIVE_PER_VIDEO]:
        question, answer = candidates[i]
        questions.append({"question_type": "descriptive", "question": question, "answer": answer})

    seen = collided_pairs(factual.collisions, 0, n_observed)
    seen_pairs = sorted(seen)
    made = 0
    for i in rng.permutation(len(seen_pairs)):
        if made == EXPLANATORY_PER_VIDEO:
            break
        a, b = seen_pairs[i]
        others = [x for x in range(len(objects)) if x not in (a, b)]
        correct = [x for x in others
                   if (a, b) not in collided_pairs(removed[x].collisions, 0, n_observed)]
        if not correct:
            continue
        picked = _pick_choices(rng, correct, [x for x in others if x not in correct])
        questions.append(_multiple_choice(
            "explanatory", "Which of the following is responsible for the collision between "
            f"{names[a]} and {names[b]}?", picked, lambda x: f"The presence of {names[x]}"))
        made += 1

    future = collided_pairs(factual.collisions, n_observed, n_frames)
    if future:
        picked = _pick_choices(rng, sorted(future), [p for p in pairs if p not in future])
        questions.append(_multiple_choice(
            "predictive", "Which of the following will happen next?", picked,
            lambda p: f"{names[p[0]]} collides with {names[p[1]]}".capitalize()))

    everything = collided_pairs(factual.collisions, 0, n_frames)
    made = 0
    for x in rng.permutation(len(objects)):
        if made == COUNTERFACTUAL_PER_VIDEO:
            break
        without = collided_pairs(removed[x].collisions, 0, n_frames)
        rest = [p for p in pairs if x not in p]
        changed = [p for p in rest if (p in without) != (p in everything)]
        if not changed:
            continue
        must = changed[rng.integers(len(changed))]
        picked = _pick_choices(rng, [p for p in rest if p in without],
                               [p for p in rest if p not in without], (must, must in without))
        questions.append(_multiple_choice(
            "counterfactual", f"Without {names[x]}, which of the following will happen?",
            picked, lambda p: f"{names[p[0]]} and {names[p[1]]} collide".capitalize()))
        made += 1
    return [{"question_id": i, **q} for i, q in enumerate(questions)]


# ---------------------------------------------------------------------------------------
# Question files (CLEVRER's schema) and a word-level vocabulary
# ---------------------------------------------------------------------------------------
def load_questions(path, require_answers=True):
    """Read and validate a question file: ours or one of CLEVRER's (same schema).

    A JSON list of scenes {"scene_index", "video_filename", "questions"}; a question has
    "question_id", "question_type" (one of QUESTION_TYPES), "question" and, when
    ``require_answers``, "answer" (descriptive) or "choices": [{"choice_id", "choice",
    "answer": "correct" | "wrong"}]. Extra fields are kept. Raises ValueError naming the
    scene and question at fault.
    """
    path = Path(path)
    try:
        scenes = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(scenes, list):
        raise ValueError(f"{path}: expected a JSON list of scenes, found {type(scenes).__name__}")
    for i, scene in enumerate(scenes):
        missing = [k for k in ("scene_index", "video_filename", "questions") if k not in scene]
        if missing:
            raise ValueError(f"{path}: scene at position {i} lacks fields {missing}")
        for q in scene["questions"]:
            where = f"{path}: scene {scene['scene_index']} question {q.get('question_id', '?')}"
            missing = [k for k in ("question_id", "question_type", "question") if k not in q]
            if missing:
                raise ValueError(f"{where} lacks fields {missing}")
            if q["question_type"] not in QUESTION_TYPES:
                raise ValueError(f"{where}: expected question_type in {QUESTION_TYPES}, "
                                 f"found {q['question_type']!r}")
            if q["question_type"] == "descriptive":
                if require_answers and "answer" not in q:
                    raise ValueError(f"{where}: a descriptive question needs an 'answer'")
                continue
            if not q.get("choices"):
                raise ValueError(f"{where}: a {q['question_type']} question needs 'choices'")
            for c in q["choices"]:
                missing = [k for k in ("choice_id", "choice") if k not in c]
                if missing:
                    raise ValueError(f"{where}: choice lacks fields {missing}")
                if require_answers and c.get("answer") not in ("correct", "wrong"):
                    raise ValueError(f"{where} choice {c['choice_id']}: expected answer "
                                     f"'correct' or 'wrong', found {c.get('answer')!r}")
    return scenes


def tokenize(text):
    """Lower-case words and single punctuation marks: "Is it red?" -> [is, it, red, ?]."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def build_vocab(scenes):
    """Word -> id over every question and choice text of ``scenes``; "<pad>" is 0."""
    words = {w for scene in scenes for q in scene["questions"]
             for text in [q["question"], *(c["choice"] for c in q.get("choices", []))]
             for w in tokenize(text)}
    return {"<pad>": 0, **{w: i + 1 for i, w in enumerate(sorted(words))}}


def build_answer_vocab(scenes):
    """The sorted list of descriptive answers of ``scenes`` (the classifier's classes)."""
    return sorted({q["answer"] for scene in scenes for q in scene["questions"]
                   if q["question_type"] == "descriptive"})


def encode(text, vocab):
    """Token ids (list of int) of ``text``; a word not in ``vocab`` is an error."""
    ids = []
    for word in tokenize(text):
        if word not in vocab:
            raise ValueError(f"word {word!r} in {text!r} is not in the vocabulary of "
                             f"{len(vocab)} words (build it from the training questions)")
        ids.append(vocab[word])
    return ids


def question_stats(scenes):
    """Per question type: number of questions, of choices, and the share of correct choices."""
    stats = {t: {"questions": 0, "choices": 0, "correct": 0} for t in QUESTION_TYPES}
    for scene in scenes:
        for q in scene["questions"]:
            s = stats[q["question_type"]]
            s["questions"] += 1
            s["choices"] += len(q.get("choices", []))
            s["correct"] += sum(c["answer"] == "correct" for c in q.get("choices", []))
    for s in stats.values():
        correct = s.pop("correct")
        s["correct_share"] = correct / s["choices"] if s["choices"] else None
    return stats
