"""Collide: a collision world with video question answering by re-simulation (FACTS section 7).

The paper's VQA benchmark asks four kinds of questions about videos of colliding objects:
descriptive (one-word answer), explanatory, predictive and counterfactual (each a list of
yes/no choices). Counterfactual answers come from re-simulating the video with one object
removed. This file builds such a benchmark from scratch, named "collide":

- A top-down 512 x 512 pymunk arena (y down, the walls are the frame's border), zero
  gravity, light damping, near-elastic contacts; 3-6 objects, each a unique (shape, color)
  pair out of {circle, square, triangle} x 8 colors, some at rest and some launched, most
  of those aimed at another object. Every object-object contact that begins is logged as
  (frame, a, b) with a < b; contacts with the walls are not logged.
- ``simulate(scene, remove=k)`` rebuilds the world from the scene's initial spec in a
  fixed creation order, so it is bit-exact: the same scene gives the same trajectory
  every time. Removing object k takes it out of every contact (it stays behind as a
  ghost, see ``simulate``), so removing an object that touches nothing changes nothing.
- Every answer is computed from simulations, never annotated by hand. A video is
  ``n_observed`` frames the question-answering model sees, then ``n_future`` held-out
  frames that only the predictive and counterfactual answers look at.

Question files follow the schema of CLEVRER's question files (without "program" fields),
so ``load_questions`` reads both.
"""

import json
import math
import multiprocessing as mp
import os
import re
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymunk
from PIL import Image, ImageDraw
from tqdm import tqdm

from common import (DatasetError, atomic_write_json, build_parser, check_replaceable, config_from_args,
                    config_to_dict, load_array, publish_dataset, read_dataset_meta)

# ---------------------------------------------------------------------------------------
# The world's constants
# ---------------------------------------------------------------------------------------
WORLD_SIZE = 512
DT = 0.01                       # physics step (s); a frame is ``frame_substeps`` of them
DAMPING = 0.8                   # share of its velocity a body keeps after one second
ELASTICITY, FRICTION = 0.95, 0.2
WALL_RADIUS = 4                 # wall segments just outside the frame: the border is a wall
WALLS = [((-4, -4), (516, -4)), ((516, -4), (516, 516)),
         ((516, 516), (-4, 516)), ((-4, 516), (-4, -4))]
CIRCLE_RADIUS = 32
SQUARE_HALF = 28
TRIANGLE_RADIUS = 40            # circumradius of the equilateral triangle
BOUND_RADIUS = 40               # no part of any shape is farther than this from its centre
MIN_GAP = 2 * BOUND_RADIUS + 8  # minimum distance between the centres of two objects
SPEED = (180.0, 320.0)          # launch speed (units / s), uniform
AIM_PROB, AIM_NOISE = 0.7, 0.2  # a launched object is aimed at another one (+/- 0.2 rad)
MOVING_SPEED = 5.0              # faster than this (units / s) counts as "moving"

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "gray": (128, 128, 128), "red": (220, 40, 40), "blue": (40, 80, 230),
    "green": (30, 160, 60), "brown": (140, 85, 40), "purple": (140, 60, 200),
    "cyan": (40, 200, 210), "yellow": (240, 205, 30),
}
BACKGROUND = (240, 240, 240)
OBJECT_TYPE, WALL_TYPE = 1, 2   # pymunk collision types
OBJECT_BIT, GHOST_BIT, WALL_BIT = 1, 2, 4   # pymunk collision-filter categories

QUESTION_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
DESCRIPTIVE_PER_VIDEO, EXPLANATORY_PER_VIDEO, COUNTERFACTUAL_PER_VIDEO = 4, 2, 2
CHOICES_PER_SIDE = 2            # at most this many correct and this many wrong choices


def _local_outline(shape):
    """Polygon vertices of a square or triangle in body coordinates (centroid at 0)."""
    if shape == "square":
        h = SQUARE_HALF
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    angles = (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
    return [(TRIANGLE_RADIUS * math.cos(a), TRIANGLE_RADIUS * math.sin(a)) for a in angles]


# ---------------------------------------------------------------------------------------
# Scenes and exact re-simulation
# ---------------------------------------------------------------------------------------
def sample_scene(rng, n_objects, n_frames, frame_substeps):
    """Draw a scene spec: the objects' initial state plus the video's timing.

    Returns {"objects": [{"shape", "color", "position": [x, y], "velocity": [vx, vy],
    "angle", "angular_velocity"}], "n_frames", "frame_substeps"}, plain JSON values.
    """
    if not 2 <= n_objects <= len(SHAPES) * len(COLORS):
        raise ValueError(f"expected 2 to {len(SHAPES) * len(COLORS)} objects, got {n_objects}")
    kinds = rng.choice(len(SHAPES) * len(COLORS), n_objects, replace=False)
    positions = []
    for _ in range(10_000):
        p = rng.uniform(BOUND_RADIUS + 8, WORLD_SIZE - BOUND_RADIUS - 8, 2)
        if all(np.hypot(*(p - q)) >= MIN_GAP for q in positions):
            positions.append(p)
            if len(positions) == n_objects:
                break
    else:
        raise ValueError(f"could not place {n_objects} objects {MIN_GAP} units apart")
    velocities = np.zeros((n_objects, 2))
    for k in rng.choice(n_objects, int(rng.integers(1, n_objects)), replace=False):
        if rng.random() < AIM_PROB:
            target = rng.choice([j for j in range(n_objects) if j != k])
            dx, dy = positions[target] - positions[k]
            heading = math.atan2(dy, dx) + rng.uniform(-AIM_NOISE, AIM_NOISE)
        else:
            heading = rng.uniform(0, 2 * math.pi)
        velocities[k] = rng.uniform(*SPEED) * np.array([math.cos(heading), math.sin(heading)])
    colors = list(COLORS)
    objects = [{"shape": SHAPES[int(kind) // len(colors)], "color": colors[int(kind) % len(colors)],
                "position": [float(v) for v in p], "velocity": [float(v) for v in vel],
                "angle": float(rng.uniform(0, 2 * math.pi)), "angular_velocity": 0.0}
               for kind, p, vel in zip(kinds, positions, velocities)]
    return {"objects": objects, "n_frames": int(n_frames), "frame_substeps": int(frame_substeps)}


@dataclass
class Trajectory:
    """One simulation of a scene over its T frames, K = number of objects in the spec.

    position float64 (T, K, 2), angle float64 (T, K), velocity float64 (T, K, 2); the rows
    of a removed object are NaN. collisions: [(frame, a, b)] with a < b indices into the
    spec's object list, in the order the contacts began; a contact that begins while
    stepping from frame t - 1 to frame t is logged at frame t.
    """
    position: np.ndarray
    angle: np.ndarray
    velocity: np.ndarray
    collisions: list


def _log_begin(arbiter, space, log):
    a, b = sorted(log["index"][s] for s in arbiter.shapes)
    event = (log["frame"], a, b)
    if event not in log["seen"]:
        log["seen"].add(event)
        log["events"].append(event)


def simulate(scene, remove=None):
    """Run a scene spec from its initial state; ``remove``: index of an object to take out.

    The space is rebuilt from scratch every call (walls, then the objects in spec order),
    so two calls with the same arguments give bit-identical trajectories.

    A removed object stays in the space as a ghost that collides with the walls only: it
    pushes nothing and is not reported, but it keeps its place in pymunk's broadphase, so
    the order in which the solver visits the other contacts is the factual run's. Left out
    altogether, that order can change, and the round-off of a reordered solve grows
    chaotically: in a sample of 300 videos, 4 of the 513 objects that touch nothing then
    appeared to change other trajectories. With the ghost, removing an object that touches
    no other object changes nothing, bit for bit.
    """
    for key in ("objects", "n_frames", "frame_substeps"):
        if key not in scene:
            raise ValueError(f"scene spec is missing {key!r}; found keys {sorted(scene)}")
    objects, n_frames = scene["objects"], scene["n_frames"]
    if remove is not None and not 0 <= remove < len(objects):
        raise ValueError(f"remove must index one of the {len(objects)} objects, got {remove}")
    space = pymunk.Space()
    space.gravity = (0, 0)
    space.damping = DAMPING
    for a, b in WALLS:
        wall = pymunk.Segment(space.static_body, a, b, WALL_RADIUS)
        wall.elasticity, wall.friction, wall.collision_type = ELASTICITY, FRICTION, WALL_TYPE
        wall.filter = pymunk.ShapeFilter(categories=WALL_BIT, mask=OBJECT_BIT | GHOST_BIT)
        space.add(wall)
    log = {"frame": 0, "index": {}, "seen": set(), "events": []}
    bodies = {}
    for k, obj in enumerate(objects):
        if obj["shape"] == "circle":
            body = pymunk.Body(1.0, pymunk.moment_for_circle(1.0, 0, CIRCLE_RADIUS))
            shape = pymunk.Circle(body, CIRCLE_RADIUS)
        elif obj["shape"] in SHAPES:
            outline = _local_outline(obj["shape"])
            body = pymunk.Body(1.0, pymunk.moment_for_poly(1.0, outline))
            shape = pymunk.Poly(body, outline)
        else:
            raise ValueError(f"object {k}: expected a shape in {SHAPES}, got {obj['shape']!r}")
        body.angle = obj["angle"]
        body.position = tuple(obj["position"])
        body.velocity = tuple(obj["velocity"])
        body.angular_velocity = obj["angular_velocity"]
        shape.elasticity, shape.friction, shape.collision_type = ELASTICITY, FRICTION, OBJECT_TYPE
        if k == remove:
            shape.filter = pymunk.ShapeFilter(categories=GHOST_BIT, mask=WALL_BIT)
        else:
            shape.filter = pymunk.ShapeFilter(categories=OBJECT_BIT, mask=OBJECT_BIT | WALL_BIT)
            bodies[k], log["index"][shape] = body, k
        space.add(body, shape)
    space.on_collision(OBJECT_TYPE, OBJECT_TYPE, begin=_log_begin, data=log)

    shape3 = (n_frames, len(objects))
    position, velocity = np.full((*shape3, 2), np.nan), np.full((*shape3, 2), np.nan)
    angle = np.full(shape3, np.nan)
    for t in range(n_frames):
        if t > 0:
            log["frame"] = t
            for _ in range(scene["frame_substeps"]):
                space.step(DT)
        for k, body in bodies.items():
            position[t, k] = body.position
            velocity[t, k] = body.velocity
            angle[t, k] = body.angle
    return Trajectory(position, angle, velocity, log["events"])


def collided_pairs(collisions, start, stop):
    """The set of pairs (a, b) with a logged collision at a frame in [start, stop)."""
    return {(a, b) for frame, a, b in collisions if start <= frame < stop}


# ---------------------------------------------------------------------------------------
# Rendering: pillow on a supersampled canvas, box-filtered down (anti-aliased)
# ---------------------------------------------------------------------------------------
def render_frame(objects, position, angle, size=64, supersample=4):
    """Draw one frame: pixels uint8 (size, size, 3) and object ids uint8 (size, size).

    objects: the spec's object list; position (K, 2) and angle (K,) at this frame (NaN
    rows, removed objects, are skipped). Ids: 0 background, k + 1 for object k. Both are
    drawn on the same canvas; pixels are box-filtered down, ids sampled nearest.
    """
    canvas = size * supersample
    scale = canvas / WORLD_SIZE
    rgb = Image.new("RGB", (canvas, canvas), BACKGROUND)
    ids = Image.new("L", (canvas, canvas), 0)
    draws = (ImageDraw.Draw(rgb), ImageDraw.Draw(ids))
    for k, obj in enumerate(objects):
        x, y = position[k]
        if math.isnan(x):
            continue
        fills = (COLORS[obj["color"]], k + 1)
        if obj["shape"] == "circle":
            r = CIRCLE_RADIUS
            box = [(x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale]
            for draw, fill in zip(draws, fills):
                draw.ellipse(box, fill=fill)
        else:
            c, s = math.cos(angle[k]), math.sin(angle[k])
            outline = [((x + c * px - s * py) * scale, (y + s * px + c * py) * scale)
                       for px, py in _local_outline(obj["shape"])]
            for draw, fill in zip(draws, fills):
                draw.polygon(outline, fill=fill)
    return (np.asarray(rgb.reduce(supersample)),
            np.asarray(ids.resize((size, size), Image.NEAREST)))


def render_video(scene, trajectory, size=64):
    """Every frame of a trajectory: pixels uint8 (T, H, W, 3), ids uint8 (T, H, W)."""
    frames = [render_frame(scene["objects"], p, a, size)
              for p, a in zip(trajectory.position, trajectory.angle)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


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
    scenes = json.loads((path / "scenes.json").read_text())
    if len(scenes) != meta["n_videos"]:
        raise DatasetError(f"{path}/scenes.json: expected {meta['n_videos']} scenes, "
                           f"found {len(scenes)}")
    questions = {split: load_questions(path / f"questions_{split}.json") for split in SPLITS}
    return CollideData(path=path, config=cfg, episode_starts=starts, splits=meta["splits"],
                       n_observed=meta["n_observed"], n_future=meta["n_future"],
                       scenes=scenes, questions=questions, **arrays)


# ---------------------------------------------------------------------------------------
# Command line: python collision.py --preset cpu --out data/collide-cpu
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
    except (ValueError, OSError) as err:  # DatasetError is a ValueError, FileExistsError an OSError
        sys.exit(f"error: {err}")
    print(f"wrote {data.path}: {len(data.scenes)} videos, {len(data.pixels)} frames, "
          f"{data.pixels.nbytes / 2**20:.0f} MiB of pixels")
    for split, scenes in data.questions.items():
        counts = {t: s["questions"] for t, s in question_stats(scenes).items()}
        print(f"{split}: {counts}")


if __name__ == "__main__":
    main()
